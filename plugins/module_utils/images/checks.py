# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of a notebook image, run inside the image, and the parsing of its result.

``check_command(settings)`` is a container command (``/bin/sh -c <script>``) that a validation pod or
``buildah run`` executes under an arbitrary non-root UID. The POSIX-sh part finds ``python3`` or ``python``
(a result saying Python is missing when there is none); the Python part (kept compatible with Python 2.7 and
3.4+, so old interpreters still report their version) checks:

- the Python version is at least ``min_python_version``;
- each of ``required_modules`` imports, each of ``required_commands`` is on ``PATH``;
- ``$HOME`` is set and writable (a file is created and removed);
- the installed packages (``pip list --not-required``, else ``pip list``, else ``importlib.metadata``), for the
  dependency annotation; failing to list them is a warning, not a failure.

The result is one JSON document, written to ``result_path`` (the pod's termination message, so at most
``message_limit`` bytes: when the full document is larger, the package list is left out and
``packages_complete`` is false) and, complete, to stdout between ``FRAME_BEGIN`` / ``FRAME_END`` lines.
The script exits 0 whenever it produced a result; the result says whether the image passed.
Settings travel as environment variables exported at the top of the script: no credentials are involved.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

SCHEMA_KEY = "mlops_image_check"
SCHEMA_VERSION = 1
FRAME_BEGIN = "----- BEGIN MLOPS.NOTEBOOKS IMAGE CHECK RESULT -----"
FRAME_END = "----- END MLOPS.NOTEBOOKS IMAGE CHECK RESULT -----"
DEFAULT_RESULT_PATH = "/dev/termination-log"
# Kubernetes keeps at most 4096 bytes of a container's termination message.
DEFAULT_MESSAGE_LIMIT = 4096
DEFAULT_MIN_PYTHON_VERSION = "3.8"
DEFAULT_REQUIRED_MODULES = ("jupyterlab",)
DEFAULT_COMMAND_TIMEOUT = 120

CHECK_PYTHON = "python"
CHECK_HOME = "home"
CHECK_PACKAGES = "packages"
CHECK_RESULT = "result"
CHECK_SHELL = "shell"
MODULE_CHECK_PREFIX = "import:"
COMMAND_CHECK_PREFIX = "command:"

_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,2}$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_COMMAND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

# The Python part. Runs on whatever interpreter the image has: no f-strings, no Python-3-only syntax or
# names (nonlocal, FileNotFoundError, subprocess.DEVNULL), ASCII-only JSON so a C locale cannot break output.
_PYTHON_PROGRAM = r'''
import json
import os
import sys
import tempfile
import threading
import subprocess

BEGIN = "@FRAME_BEGIN@"
END = "@FRAME_END@"
SCHEMA_KEY = "@SCHEMA_KEY@"
DISPLAY_NAMES = {"jupyterlab": "JupyterLab", "jupyterhub": "JupyterHub", "notebook": "Notebook",
                 "ipykernel": "IPykernel", "nbclient": "nbclient"}


def setting(name, default):
    value = os.environ.get(name)
    return default if value is None else value


def words(text):
    return [word for word in text.replace(",", " ").split() if word]


def version_tuple(text):
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def shorten(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def find_executable(name):
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(argv, timeout):
    """(exit status or None on timeout, stdout, stderr) with a deadline that works on Python 2 as well."""
    environment = dict(os.environ)
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    environment["PIP_NO_INPUT"] = "1"
    environment["PYTHONWARNINGS"] = "ignore"
    devnull = open(os.devnull, "rb")
    try:
        process = subprocess.Popen(argv, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=environment)
    except (OSError, IOError) as error:
        devnull.close()
        return -1, "", str(error)
    outputs = {}

    def collect():
        outputs["both"] = process.communicate()

    reader = threading.Thread(target=collect)
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        try:
            process.kill()
        except OSError:
            pass
        reader.join(5)
        devnull.close()
        return None, "", "timed out after %d s" % timeout
    devnull.close()
    stdout, stderr = outputs.get("both", (b"", b""))
    return process.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


def parse_pip_json(text):
    text = text.strip()
    candidates = [text] + [line for line in text.splitlines() if line.strip().startswith("[")]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, list):
            return [{"name": str(item.get("name", "")), "version": str(item.get("version", ""))}
                    for item in value if isinstance(item, dict) and item.get("name")]
    return None


def list_packages(timeout):
    """(packages, source, problem): pip's top-level packages, else all of pip's, else importlib.metadata."""
    problems = []
    attempts = (("pip list --not-required", ["--not-required"]), ("pip list", []))
    for source, extra in attempts:
        status, stdout, stderr = run([sys.executable, "-m", "pip", "list"] + extra
                                     + ["--format", "json", "--disable-pip-version-check"], timeout)
        if status == 0:
            packages = parse_pip_json(stdout)
            if packages is not None:
                return packages, source, None
            problems.append("%s printed no JSON list" % source)
        else:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            reason = "timed out" if status is None else "exit status %s" % status
            problems.append("%s: %s%s" % (source, reason, (" (" + shorten(lines[-1], 160) + ")") if lines else ""))
    try:
        from importlib import metadata
        packages = []
        for distribution in metadata.distributions():
            name = distribution.metadata["Name"]
            if name:
                packages.append({"name": str(name), "version": str(distribution.version)})
        return packages, "importlib.metadata", None
    except Exception as error:
        problems.append("importlib.metadata: %s" % shorten(error, 120))
    return [], None, "; ".join(problems)


def main():
    checks = []
    software = []
    packages = []
    packages_source = None

    def add(name, passed, message, required=True):
        checks.append({"name": name, "passed": bool(passed), "message": shorten(message, 500),
                       "required": bool(required)})

    minimum_text = setting("MLOPS_CHECK_MIN_PYTHON", "3.8") or "3.8"
    modules = words(setting("MLOPS_CHECK_MODULES", "jupyterlab"))
    commands = words(setting("MLOPS_CHECK_COMMANDS", ""))
    check_home = setting("MLOPS_CHECK_HOME", "1") == "1"
    want_packages = setting("MLOPS_CHECK_PACKAGES", "1") == "1"
    try:
        timeout = max(1, int(setting("MLOPS_CHECK_TIMEOUT", "120")))
    except ValueError:
        timeout = 120

    version = "%d.%d.%d" % tuple(sys.version_info[:3])
    software.append({"name": "Python", "version": version})
    minimum = version_tuple(minimum_text)
    if minimum is None:
        add("python", False, "invalid minimum Python version %r" % minimum_text)
    elif tuple(sys.version_info[:len(minimum)]) >= minimum:
        add("python", True, "Python %s at %s (at least %s required)" % (version, sys.executable, minimum_text))
    else:
        add("python", False, "Python %s at %s is older than the required %s" % (version, sys.executable, minimum_text))

    for name in modules:
        try:
            import importlib
            module = importlib.import_module(name)
            module_version = getattr(module, "__version__", None)
            if isinstance(module_version, str) and module_version:
                software.append({"name": DISPLAY_NAMES.get(name, name), "version": module_version})
            add("import:" + name, True, "module %s imports%s" % (
                name, (" (version %s)" % module_version) if isinstance(module_version, str) else ""))
        except BaseException as error:
            add("import:" + name, False, "module %s does not import: %s: %s" % (
                name, type(error).__name__, shorten(error, 300)))

    for name in commands:
        path = find_executable(name)
        if path:
            add("command:" + name, True, "%s is on PATH at %s" % (name, path))
        else:
            add("command:" + name, False, "%s is not on PATH (%s)" % (name, os.environ.get("PATH", "")))

    home = os.environ.get("HOME", "")
    if check_home:
        identity = "uid %d, gid %d" % (os.getuid(), os.getgid())
        if not home:
            add("home", False, "HOME is not set (%s)" % identity)
        elif not os.path.isdir(home):
            add("home", False, "HOME=%s is not a directory (%s)" % (home, identity))
        else:
            try:
                handle, probe = tempfile.mkstemp(prefix=".mlops-home-check-", dir=home)
                os.write(handle, b"ok")
                os.close(handle)
                os.remove(probe)
                add("home", True, "HOME=%s is writable (%s)" % (home, identity))
            except (OSError, IOError) as error:
                add("home", False, "HOME=%s is not writable (%s): %s" % (home, identity, shorten(error, 200)))

    r_path = find_executable("R")
    if r_path:
        status, stdout, stderr = run([r_path, "--version"], min(timeout, 30))
        first = (stdout or stderr).strip().splitlines()
        if status == 0 and first and first[0].startswith("R version "):
            software.append({"name": "R", "version": first[0].split()[2]})

    if want_packages:
        packages, packages_source, problem = list_packages(timeout)
        if problem:
            add("packages", False, "cannot list the installed Python packages: " + shorten(problem, 400),
                required=False)
        else:
            add("packages", True, "%d packages listed with %s" % (len(packages), packages_source), required=False)
    packages = sorted(packages, key=lambda item: item["name"].lower())

    report = {
        SCHEMA_KEY: 1,
        "passed": all(check["passed"] for check in checks if check["required"]),
        "checks": checks,
        "python": {"version": version, "executable": sys.executable},
        "software": software,
        "packages": packages,
        "packages_complete": want_packages and packages_source is not None,
        "packages_source": packages_source,
        "user": {"uid": os.getuid(), "gid": os.getgid(), "home": home},
    }
    return report


def dumps(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fit(report, limit):
    """The report as JSON in at most ``limit`` bytes if it can be: shorter messages, then no packages, then only
    the verdict and the checks' names. Never a cut JSON document: the complete one is in the output frame."""
    smaller = dict(report)
    smaller["checks"] = [dict(check, message=shorten(check["message"], 160)) for check in report["checks"]]
    without_packages = dict(smaller, packages=[], packages_complete=False, packages_count=len(report["packages"]))
    bare = {SCHEMA_KEY: 1, "passed": report["passed"], "truncated": True, "python": report["python"],
            "software": [], "packages": [], "packages_complete": False,
            "checks": [dict(check, message="" if check["passed"] else shorten(check["message"], 100))
                       for check in report["checks"]]}
    text = dumps(report)
    for candidate in (smaller, without_packages, bare):
        if limit <= 0 or len(text) <= limit:
            return text
        text = dumps(candidate)
    return text


def emit(report):
    sys.stdout.write("\n%s\n%s\n%s\n" % (BEGIN, dumps(report), END))
    sys.stdout.flush()
    path = os.environ.get("MLOPS_CHECK_RESULT_PATH", "")
    if path:
        try:
            limit = int(setting("MLOPS_CHECK_MESSAGE_LIMIT", "4096"))
        except ValueError:
            limit = 4096
        try:
            handle = open(path, "w")
            try:
                handle.write(fit(report, limit))
            finally:
                handle.close()
        except (OSError, IOError):
            pass


try:
    RESULT = main()
except BaseException as error:
    RESULT = {SCHEMA_KEY: 1, "passed": False, "software": [], "packages": [], "packages_complete": False,
              "python": {"version": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable},
              "checks": [{"name": "result", "passed": False, "required": True,
                          "message": "the image check itself failed: %s: %s" % (type(error).__name__,
                                                                                shorten(error, 300))}]}
emit(RESULT)
sys.exit(0)
'''

# The shell part: settings, the search for an interpreter, and a result even when there is none or it crashes.
_SHELL_SCRIPT = r'''
@SETTINGS@
mlops_check_emit() {
  printf '\n%s\n%s\n%s\n' '@FRAME_BEGIN@' "$1" '@FRAME_END@'
  if [ -n "${MLOPS_CHECK_RESULT_PATH:-}" ]; then
    { printf '%s' "$1" > "$MLOPS_CHECK_RESULT_PATH"; } 2>/dev/null || :
  fi
}
mlops_check_fail() {
  mlops_check_emit '{"@SCHEMA_KEY@":1,"passed":false,"python":null,"software":[],"packages":[],'\
'"packages_complete":false,"checks":[{"name":"python","passed":false,"required":true,"message":"'"$1"'"}]}'
}
mlops_check_python=''
for mlops_check_candidate in python3 python; do
  if mlops_check_found=$(command -v "$mlops_check_candidate" 2>/dev/null) && [ -n "$mlops_check_found" ]; then
    mlops_check_python=$mlops_check_found
    break
  fi
done
if [ -z "$mlops_check_python" ]; then
  mlops_check_fail 'no python3 or python on PATH: a notebook image needs Python'
  exit 0
fi
"$mlops_check_python" -c @PROGRAM@
mlops_check_status=$?
if [ "$mlops_check_status" -ne 0 ]; then
  mlops_check_fail "the image's Python interpreter did not run the check (exit status $mlops_check_status)"
fi
exit 0
'''


@dataclass(frozen=True)
class CheckSettings:
    """What the in-image check requires. Lists may be given as lists or tuples."""

    min_python_version: str = DEFAULT_MIN_PYTHON_VERSION
    required_modules: tuple = DEFAULT_REQUIRED_MODULES
    required_commands: tuple = ()
    check_home: bool = True
    list_packages: bool = True
    result_path: str = DEFAULT_RESULT_PATH
    message_limit: int = DEFAULT_MESSAGE_LIMIT
    command_timeout: int = DEFAULT_COMMAND_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_python_version", str(self.min_python_version).strip())
        object.__setattr__(self, "required_modules", _as_tuple(self.required_modules, "required_modules"))
        object.__setattr__(self, "required_commands", _as_tuple(self.required_commands, "required_commands"))
        if not _VERSION.match(self.min_python_version):
            raise ValueError(f"min_python_version must look like 3 or 3.8 or 3.8.1, not {self.min_python_version!r}")
        for module in self.required_modules:
            if not _MODULE.match(module):
                raise ValueError(f"required_modules: {module!r} is not a Python module name")
        for command in self.required_commands:
            if not _COMMAND.match(command):
                raise ValueError(f"required_commands: {command!r} is not a command name (no paths or spaces)")
        if self.result_path and (not self.result_path.startswith("/") or "\n" in self.result_path):
            raise ValueError(f"result_path must be an absolute path or empty, not {self.result_path!r}")
        for name in ("message_limit", "command_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "message_limit" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'message_limit' else 'positive'} "
                                 f"integer, not {value!r}")

    @classmethod
    def from_options(cls, options: Optional[Mapping[str, Any]]) -> "CheckSettings":
        """Settings from a module's option dict; keys that are None or absent keep their defaults."""
        known = {name: value for name, value in (options or {}).items()
                 if name in cls.__dataclass_fields__ and value is not None}
        unknown = sorted(set(options or {}) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown validation settings: {', '.join(unknown)}")
        return cls(**known)

    def environment(self) -> dict[str, str]:
        """The environment variables the check program reads."""
        return {
            "MLOPS_CHECK_MIN_PYTHON": self.min_python_version,
            "MLOPS_CHECK_MODULES": " ".join(self.required_modules),
            "MLOPS_CHECK_COMMANDS": " ".join(self.required_commands),
            "MLOPS_CHECK_HOME": "1" if self.check_home else "0",
            "MLOPS_CHECK_PACKAGES": "1" if self.list_packages else "0",
            "MLOPS_CHECK_RESULT_PATH": self.result_path,
            "MLOPS_CHECK_MESSAGE_LIMIT": str(self.message_limit),
            "MLOPS_CHECK_TIMEOUT": str(self.command_timeout),
        }


def _as_tuple(value: Any, name: str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of names, not {value!r}")
    return tuple(str(item).strip() for item in value if str(item).strip())


def python_program() -> str:
    """The Python part of the check (for running it directly with an interpreter, as the tests do)."""
    return (_PYTHON_PROGRAM.replace("@FRAME_BEGIN@", FRAME_BEGIN).replace("@FRAME_END@", FRAME_END)
            .replace("@SCHEMA_KEY@", SCHEMA_KEY))


def check_script(settings: Optional[CheckSettings] = None) -> str:
    """The POSIX-sh script of ``check_command``."""
    settings = settings or CheckSettings()
    exports = "\n".join(f"{name}={shlex.quote(value)}; export {name}" for name, value in settings.environment().items())
    return (_SHELL_SCRIPT.replace("@SETTINGS@", exports).replace("@FRAME_BEGIN@", FRAME_BEGIN)
            .replace("@FRAME_END@", FRAME_END).replace("@SCHEMA_KEY@", SCHEMA_KEY)
            .replace("@PROGRAM@", shlex.quote(python_program())))


def check_command(settings: Optional[CheckSettings] = None) -> list[str]:
    """The container command that validates the image: ``["/bin/sh", "-c", <script>]``, self-contained."""
    return ["/bin/sh", "-c", check_script(settings)]


@dataclass
class CheckReport:
    """The verdict of the in-image check.

    ``checks``: ``[{"name", "passed", "message", "required"}]``; ``passed`` is true only when the result was read
    and every required check passed. ``error`` says why no result could be read (then ``passed`` is false).
    ``packages_complete`` is false when the package list was left out (termination message too small) or could
    not be made.
    """

    passed: bool
    checks: list[dict] = field(default_factory=list)
    python_version: Optional[str] = None
    python_executable: Optional[str] = None
    packages: list[dict] = field(default_factory=list)
    software: list[dict] = field(default_factory=list)
    packages_complete: bool = False
    packages_source: Optional[str] = None
    user: dict = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def failed_checks(self) -> list[dict]:
        return [check for check in self.checks if not check["passed"]]

    def to_dict(self) -> dict:
        """The report as a module returns it (``validation``)."""
        return {
            "passed": self.passed,
            "checks": [dict(check) for check in self.checks],
            "python_version": self.python_version,
            "python_executable": self.python_executable,
            "software": [dict(entry) for entry in self.software],
            "packages": [dict(entry) for entry in self.packages],
            "packages_complete": self.packages_complete,
            "packages_source": self.packages_source,
            "user": dict(self.user),
            "error": self.error,
        }


def failed_report(name: str, message: str) -> CheckReport:
    """A report for an image that could not run the check at all (no shell, the container did not start...)."""
    return CheckReport(passed=False, checks=[{"name": name, "passed": False, "message": message, "required": True}],
                       error=message)


def parse_check_result(text: Optional[str]) -> CheckReport:
    """Read the check's result from a termination message or from output holding its frame.

    The last complete frame wins; without a frame, the text itself or any JSON object in it carrying the schema
    key is accepted (the last such object). Anything else (no output, garbage, a truncated document) gives a
    failed report whose ``error`` says what was found, never an exception.
    """
    if text is None or not str(text).strip():
        return failed_report(CHECK_RESULT, "the image check produced no result")
    text = str(text)
    document = _document_from_frames(text) or _document_from_text(text)
    if document is None:
        excerpt = " ".join(text.strip().split())
        excerpt = excerpt if len(excerpt) <= 300 else excerpt[:300] + "..."
        return failed_report(CHECK_RESULT, f"no image check result in the output ({len(text)} characters): {excerpt}")
    return _report_from_document(document)


def _is_result(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SCHEMA_KEY) == SCHEMA_VERSION


def _document_from_frames(text: str) -> Optional[dict]:
    found = None
    position = 0
    while True:
        begin = text.find(FRAME_BEGIN, position)
        if begin < 0:
            return found
        start = begin + len(FRAME_BEGIN)
        end = text.find(FRAME_END, start)
        next_begin = text.find(FRAME_BEGIN, start)
        if end >= 0 and (next_begin < 0 or end < next_begin):
            try:
                value = json.loads(text[start:end])
            except ValueError:
                value = None
            if _is_result(value):
                found = value
            position = end + len(FRAME_END)
        else:
            position = start


def _document_from_text(text: str) -> Optional[dict]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if _is_result(value):
        return value
    decoder = json.JSONDecoder()
    found = None
    position = text.find("{")
    while position >= 0:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if _is_result(value):
            found = value
            position = text.find("{", end)
        else:
            position = text.find("{", position + 1)
    return found


def _report_from_document(document: dict) -> CheckReport:
    checks = []
    for entry in document.get("checks") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        checks.append({
            "name": str(entry["name"]),
            "passed": entry.get("passed") is True,
            "message": str(entry.get("message", "")),
            "required": entry.get("required", True) is not False,
        })
    python = document.get("python") if isinstance(document.get("python"), dict) else {}
    required_passed = all(check["passed"] for check in checks if check["required"])
    error = None
    if not checks:
        error = "the image check result lists no checks"
    elif document.get("passed") is True and not required_passed:
        error = "the image check result says passed, but a required check failed"
    elif document.get("passed") is not True and required_passed:
        error = "the image check result says failed, but lists no failed required check"
    passed = bool(checks) and required_passed and document.get("passed") is True
    packages_complete = document.get("packages_complete") is True
    return CheckReport(
        passed=passed,
        checks=checks,
        python_version=_optional_str(python.get("version")),
        python_executable=_optional_str(python.get("executable")),
        packages=_name_versions(document.get("packages")) if packages_complete else [],
        software=_name_versions(document.get("software")),
        packages_complete=packages_complete,
        packages_source=_optional_str(document.get("packages_source")),
        user=document.get("user") if isinstance(document.get("user"), dict) else {},
        error=error,
    )


def _optional_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _name_versions(entries: Any) -> list[dict]:
    result = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name"):
            result.append({"name": str(entry["name"]), "version": str(entry.get("version", ""))})
    return result


def report_messages(report: CheckReport) -> list[dict]:
    """``[{"severity", "message"}]`` for the ODH ``-messages`` annotation: each failed required check is an error,
    each failed optional check a warning; a report that could not be read is an error too."""
    messages = []
    for check in report.failed_checks:
        text = check["message"] or f"the image check {check['name']} failed"
        messages.append({"severity": "error" if check["required"] else "warning", "message": text})
    if report.error and not any(message["message"] == report.error for message in messages):
        messages.append({"severity": "error", "message": report.error})
    return messages
