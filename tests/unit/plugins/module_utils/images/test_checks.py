"""The in-image check: parsing its result robustly, and running the real script with this machine's Python."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images import checks, odh
from ansible_collections.mlops.notebooks.plugins.module_utils.images.checks import (
    FRAME_BEGIN,
    FRAME_END,
    CheckSettings,
    check_command,
    parse_check_result,
    report_messages,
)

RUN_TIMEOUT = 120


def _document(passed=True, checks_=None, **extra):
    document = {
        "mlops_image_check": 1,
        "passed": passed,
        "checks": checks_ if checks_ is not None else [
            {"name": "python", "passed": True, "message": "Python 3.11.2", "required": True},
            {"name": "import:jupyterlab", "passed": True, "message": "module jupyterlab imports", "required": True},
        ],
        "python": {"version": "3.11.2", "executable": "/opt/app-root/bin/python3"},
        "software": [{"name": "Python", "version": "3.11.2"}],
        "packages": [{"name": "jupyterlab", "version": "4.2.1"}],
        "packages_complete": True,
        "packages_source": "pip list --not-required",
        "user": {"uid": 1000920000, "gid": 0, "home": "/opt/app-root/src"},
    }
    document.update(extra)
    return document


def _framed(document) -> str:
    return f"\n{FRAME_BEGIN}\n{json.dumps(document)}\n{FRAME_END}\n"


FAILED_JUPYTERLAB = {"name": "import:jupyterlab", "passed": False, "required": True,
                     "message": "module jupyterlab does not import: ModuleNotFoundError: No module named 'jupyterlab'"}


# --- parsing -----------------------------------------------------------------------------------------------------

def test_parse_a_passing_termination_message():
    report = parse_check_result(json.dumps(_document()))
    assert report.passed is True
    assert report.error is None
    assert report.python_version == "3.11.2"
    assert report.python_executable == "/opt/app-root/bin/python3"
    assert report.packages == [{"name": "jupyterlab", "version": "4.2.1"}]
    assert report.software == [{"name": "Python", "version": "3.11.2"}]
    assert report.packages_complete is True
    assert report.user["uid"] == 1000920000
    assert [check["name"] for check in report.checks] == ["python", "import:jupyterlab"]
    assert report_messages(report) == []
    assert report.to_dict()["passed"] is True


def test_parse_a_failed_result_and_its_messages():
    document = _document(passed=False, checks_=[
        {"name": "python", "passed": True, "message": "Python 3.11.2", "required": True},
        FAILED_JUPYTERLAB,
        {"name": "packages", "passed": False, "message": "cannot list the installed Python packages: x",
         "required": False},
    ])
    report = parse_check_result("some log line\n" + _framed(document) + "trailing output")
    assert report.passed is False
    assert report.error is None
    assert [check["name"] for check in report.failed_checks] == ["import:jupyterlab", "packages"]
    assert report_messages(report) == [
        {"severity": "error", "message": FAILED_JUPYTERLAB["message"]},
        {"severity": "warning", "message": "cannot list the installed Python packages: x"},
    ]


def test_an_optional_check_failing_does_not_fail_the_image():
    document = _document(checks_=[
        {"name": "python", "passed": True, "message": "ok", "required": True},
        {"name": "packages", "passed": False, "message": "no pip", "required": False},
    ], packages=[], packages_complete=False, packages_source=None)
    report = parse_check_result(json.dumps(document))
    assert report.passed is True
    assert report_messages(report) == [{"severity": "warning", "message": "no pip"}]


@pytest.mark.parametrize("text", [None, "", "   \n", "garbage", "{not json}", "[1, 2, 3]", '{"passed": true}',
                                  '{"mlops_image_check": 2, "passed": true, "checks": []}'])
def test_no_result_is_a_failure_with_a_reason_never_an_exception(text):
    report = parse_check_result(text)
    assert report.passed is False
    assert report.error
    assert report_messages(report) == [{"severity": "error", "message": report.error}]


def test_the_last_complete_frame_wins():
    first = _document()
    second = _document(passed=False, checks_=[FAILED_JUPYTERLAB])
    report = parse_check_result(_framed(first) + "log output in between\n" + _framed(second))
    assert report.passed is False
    assert report.failed_checks == [FAILED_JUPYTERLAB]


def test_a_truncated_frame_does_not_hide_a_complete_one_and_alone_is_no_result():
    complete = _framed(_document(passed=False, checks_=[FAILED_JUPYTERLAB]))
    truncated = f"{FRAME_BEGIN}\n" + json.dumps(_document())[:80]
    report = parse_check_result(complete + truncated)
    assert report.passed is False and report.error is None
    assert report.failed_checks == [FAILED_JUPYTERLAB]
    alone = parse_check_result(truncated)
    assert alone.passed is False
    assert "no image check result" in alone.error


def test_other_json_blocks_around_the_result_are_ignored():
    # The predecessor took the text from the first "{" to the last "}": two JSON blocks broke it.
    text = ('{"level": "info", "msg": "starting"}\n' + json.dumps(_document()) + '\n{"level": "info", "msg": "done"}')
    report = parse_check_result(text)
    assert report.passed is True
    assert report.error is None


def test_a_frame_with_broken_json_is_skipped():
    text = f"{FRAME_BEGIN}\n{{broken\n{FRAME_END}\n" + _framed(_document())
    assert parse_check_result(text).passed is True


def test_inconsistent_results_fail():
    claims_pass = parse_check_result(json.dumps(_document(passed=True, checks_=[FAILED_JUPYTERLAB])))
    assert claims_pass.passed is False
    assert "required check failed" in claims_pass.error
    no_checks = parse_check_result(json.dumps(_document(passed=True, checks_=[])))
    assert no_checks.passed is False
    assert "no checks" in no_checks.error
    missing_verdict = _document()
    del missing_verdict["passed"]
    assert parse_check_result(json.dumps(missing_verdict)).passed is False


def test_an_incomplete_package_list_is_not_reported_as_the_packages():
    report = parse_check_result(json.dumps(_document(packages_complete=False, packages_count=250)))
    assert report.passed is True
    assert report.packages == []
    assert report.packages_complete is False


# --- settings ------------------------------------------------------------------------------------------------------

def test_settings_defaults_and_environment():
    settings = CheckSettings()
    assert settings.environment() == {
        "MLOPS_CHECK_MIN_PYTHON": "3.8",
        "MLOPS_CHECK_MODULES": "jupyterlab",
        "MLOPS_CHECK_COMMANDS": "",
        "MLOPS_CHECK_HOME": "1",
        "MLOPS_CHECK_PACKAGES": "1",
        "MLOPS_CHECK_RESULT_PATH": "/dev/termination-log",
        "MLOPS_CHECK_MESSAGE_LIMIT": "4096",
        "MLOPS_CHECK_TIMEOUT": "120",
    }
    assert CheckSettings(required_modules=["jupyterlab", "jupyterhub"]).required_modules == ("jupyterlab", "jupyterhub")
    assert CheckSettings(required_modules="a, b.c").required_modules == ("a", "b.c")
    assert CheckSettings.from_options({"min_python_version": 3.9, "required_modules": None}).min_python_version == "3.9"


@pytest.mark.parametrize("options, message", [
    ({"min_python_version": "3.x"}, "min_python_version"),
    ({"required_modules": ["jupyterlab; rm -rf /"]}, "not a Python module name"),
    ({"required_modules": ["has space"]}, "not a Python module name"),
    ({"required_commands": ["/usr/bin/start.sh"]}, "not a command name"),
    ({"result_path": "relative/path"}, "absolute path"),
    ({"message_limit": -1}, "non-negative"),
    ({"command_timeout": 0}, "positive"),
    ({"required_modules": 5}, "list of names"),
    ({"surprise": True}, "unknown validation settings: surprise"),
])
def test_invalid_settings(options, message):
    with pytest.raises(ValueError, match=message):
        CheckSettings.from_options(options)


def test_the_python_part_parses_as_python_3_4():
    # Old interpreters must still run the program far enough to report their version.
    ast.parse(checks.python_program(), feature_version=(3, 4))


def test_command_is_self_contained_and_quoted():
    command = check_command(CheckSettings(result_path="/tmp/a dir/it's here"))
    assert command[:2] == ["/bin/sh", "-c"]
    assert "MLOPS_CHECK_RESULT_PATH='/tmp/a dir/it'\"'\"'s here'; export MLOPS_CHECK_RESULT_PATH" in command[2]


# --- running the real script ---------------------------------------------------------------------------------------

def _bin_dir(tmp_path: Path, python: bool = True) -> Path:
    """A PATH directory with only this machine's Python as ``python3`` (or nothing)."""
    directory = tmp_path / ("bin" if python else "empty-bin")
    directory.mkdir(exist_ok=True)
    if python and not (directory / "python3").exists():
        (directory / "python3").symlink_to(os.path.realpath(sys.executable))
    return directory


def _run(settings: CheckSettings, path: str, home: str | None) -> subprocess.CompletedProcess:
    environment = ["env", "-i", f"PATH={path}", "LANG=C"]
    if home is not None:
        environment.append(f"HOME={home}")
    return subprocess.run(environment + check_command(settings), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)


def test_the_script_passes_with_this_machines_python(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    termination = tmp_path / "termination-log"
    settings = CheckSettings(required_modules=["json", "sqlite3"], list_packages=False, result_path=str(termination))
    completed = _run(settings, str(_bin_dir(tmp_path)), str(home))
    assert completed.returncode == 0, completed.stderr
    report = parse_check_result(completed.stdout)
    assert report.error is None, report.error
    assert report.passed is True
    assert [check["name"] for check in report.checks] == ["python", "import:json", "import:sqlite3", "home"]
    assert report.python_version == "%d.%d.%d" % sys.version_info[:3]
    assert report.software[0] == {"name": "Python", "version": report.python_version}
    assert report.user == {"uid": os.getuid(), "gid": os.getgid(), "home": str(home)}
    assert list(home.iterdir()) == []  # the probe file was removed again
    from_termination_message = parse_check_result(termination.read_text())
    assert from_termination_message.to_dict() == report.to_dict()


def test_the_script_reports_each_failure(tmp_path):
    settings = CheckSettings(min_python_version="99", required_modules=["json", "surely_not_installed_module"],
                             required_commands=["sh", "surely-not-a-command"], list_packages=False, result_path="")
    completed = _run(settings, f"{_bin_dir(tmp_path)}:/usr/bin:/bin", str(tmp_path / "missing-home"))
    report = parse_check_result(completed.stdout)
    assert report.error is None
    assert report.passed is False
    failed = {check["name"]: check["message"] for check in report.failed_checks}
    assert set(failed) == {"python", "import:surely_not_installed_module", "command:surely-not-a-command", "home"}
    assert "older than the required 99" in failed["python"]
    assert "No module named" in failed["import:surely_not_installed_module"]
    assert "is not on PATH" in failed["command:surely-not-a-command"]
    assert "is not a directory" in failed["home"]
    assert [message["severity"] for message in report_messages(report)] == ["error"] * 4


def test_an_unwritable_or_unset_home_fails(tmp_path):
    settings = CheckSettings(required_modules=[], list_packages=False, result_path="")
    unwritable = parse_check_result(_run(settings, str(_bin_dir(tmp_path)), "/proc").stdout)
    assert unwritable.passed is False
    assert "HOME=/proc is not writable" in unwritable.failed_checks[0]["message"]
    unset = parse_check_result(_run(settings, str(_bin_dir(tmp_path)), None).stdout)
    assert unset.passed is False
    assert "HOME is not set" in unset.failed_checks[0]["message"]


def test_packages_are_listed_and_the_termination_message_stays_small(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    termination = tmp_path / "termination-log"
    # Run the virtual environment's own interpreter, whose packages pip lists.
    venv_bin = tmp_path / "venv-bin"
    venv_bin.mkdir()
    (venv_bin / "python3").symlink_to(sys.executable)
    settings = CheckSettings(required_modules=["pytest"], result_path=str(termination), message_limit=700)
    completed = _run(settings, str(venv_bin), str(home))
    full = parse_check_result(completed.stdout)
    assert full.passed is True, full.to_dict()
    assert full.packages_source in ("pip list --not-required", "pip list", "importlib.metadata")
    assert full.packages_complete is True
    names = {package["name"].lower() for package in full.packages}
    assert "pytest" in names or "pip" in names
    dependencies = json.loads(odh.dependencies_json(full.packages))
    assert dependencies and all(set(entry) == {"name", "version", "visible"} for entry in dependencies)
    message = termination.read_text()
    assert len(message.encode()) <= 700
    small = parse_check_result(message)
    assert small.passed is True
    assert small.packages_complete is False and small.packages == []


def test_no_python_on_path_is_reported_by_the_shell(tmp_path):
    termination = tmp_path / "termination-log"
    completed = _run(CheckSettings(result_path=str(termination)), str(_bin_dir(tmp_path, python=False)), "/tmp")
    assert completed.returncode == 0
    for text in (completed.stdout, termination.read_text()):
        report = parse_check_result(text)
        assert report.error is None
        assert report.passed is False
        assert report.failed_checks[0]["name"] == "python"
        assert "no python3 or python on PATH" in report.failed_checks[0]["message"]


def test_a_python_that_does_not_run_is_reported(tmp_path):
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    (broken / "python3").write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    (broken / "python3").chmod(0o755)
    report = parse_check_result(_run(CheckSettings(result_path=""), str(broken), "/tmp").stdout)
    assert report.passed is False
    assert "did not run the check (exit status 3)" in report.failed_checks[0]["message"]


def test_a_python_that_prints_garbage_gives_no_result(tmp_path):
    impostor = tmp_path / "impostor-bin"
    impostor.mkdir()
    (impostor / "python").write_text('#!/bin/sh\necho \'{"passed": true}\'\n')
    (impostor / "python").chmod(0o755)
    report = parse_check_result(_run(CheckSettings(result_path=""), str(impostor), "/tmp").stdout)
    assert report.passed is False
    assert "no image check result" in report.error
