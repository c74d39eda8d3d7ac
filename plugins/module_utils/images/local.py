# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local backend: inspect, validate and copy images on this machine with skopeo and buildah (no cluster).

- ``inspect``: ``skopeo inspect`` (digest, creation time, labels, platform, environment);
- ``run_checks``: ``buildah from`` (pull) + ``buildah run --user <uid>:0`` of ``checks.check_command`` in the
  image, as OpenShift would run it (arbitrary UID, group 0); the working container is always removed;
- ``copy``: ``skopeo copy`` to another registry.

Tools run with argument lists (never a shell), with a deadline each; credentials reach them only through an
authfile (see ``authfile.dockerconfigjson_to_authfile``). Failures raise ``errors.ImageError`` with a reason.

buildah uses its own storage (vfs driver, chroot isolation: no daemon, no overlay or user namespaces needed)
under ``$MLOPS_NOTEBOOKS_CACHE`` or ``$XDG_CACHE_HOME/mlops-notebooks`` (``~/.cache/mlops-notebooks``), in
``buildah/storage`` and ``buildah/run``. ``MLOPS_NOTEBOOKS_BUILDAH_ROOT``, ``MLOPS_NOTEBOOKS_BUILDAH_RUNROOT``,
buildah's own ``STORAGE_DRIVER`` and ``BUILDAH_ISOLATION`` override these choices.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Mapping, Optional

from . import checks
from .authfile import dockerconfigjson_to_authfile
from .errors import TIMEOUT, TOOL_FAILED, TOOL_MISSING, ImageError, InvalidPullSecret, registry_error, tool_message
from .reference import ImageReference, InvalidImageReference, parse

__all__ = ["LocalTools", "inspect", "run_checks", "copy", "dockerconfigjson_to_authfile", "ARBITRARY_UID"]

# A UID from the range OpenShift assigns to a namespace: the image must work for a user it has never heard of.
ARBITRARY_UID = 1000920000
DEFAULT_INSPECT_TIMEOUT = 120.0
DEFAULT_CHECK_TIMEOUT = 1200.0
DEFAULT_COPY_TIMEOUT = 1800.0
# Cleanup gets its own short deadline, so a timed-out check still removes its container.
CLEANUP_TIMEOUT = 120.0
CONTAINER_PREFIX = "mlops-nbcheck-"
_INSTALL_HINT = {
    "skopeo": "install the skopeo package (Debian/Ubuntu/Fedora: skopeo; in this repository: scripts/bootstrap.sh images)",
    "buildah": "install the buildah package (Debian/Ubuntu/Fedora: buildah; in this repository: scripts/bootstrap.sh images)",
}
_NO_SHELL_MARKERS = ("fork/exec /bin/sh", "exec: \"/bin/sh\"", "/bin/sh: no such file")


@dataclasses.dataclass(frozen=True)
class LocalTools:
    """How skopeo and buildah are called: buildah's storage, driver and isolation, and the retries on pulls."""

    storage_root: str
    run_root: str
    storage_driver: str = "vfs"
    isolation: str = "chroot"
    retries: int = 1

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> "LocalTools":
        environ = os.environ if environ is None else environ
        cache = environ.get("MLOPS_NOTEBOOKS_CACHE") or os.path.join(
            environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlops-notebooks")
        return cls(
            storage_root=environ.get("MLOPS_NOTEBOOKS_BUILDAH_ROOT") or os.path.join(cache, "buildah", "storage"),
            run_root=environ.get("MLOPS_NOTEBOOKS_BUILDAH_RUNROOT") or os.path.join(cache, "buildah", "run"),
            storage_driver=environ.get("STORAGE_DRIVER") or "vfs",
            isolation=environ.get("BUILDAH_ISOLATION") or "chroot",
        )

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", "--root", self.storage_root, "--runroot", self.run_root,
                "--storage-driver", self.storage_driver, *args]


def _reference(image: "str | ImageReference") -> ImageReference:
    return image if isinstance(image, ImageReference) else parse(image)


def _check_authfile(authfile: Optional[str]) -> None:
    if authfile is not None and not os.path.isfile(authfile):
        raise InvalidPullSecret(f"the authfile {authfile} does not exist")


def _tls(flag: str, tls_verify: bool) -> str:
    return f"{flag}={'true' if tls_verify else 'false'}"


def _run(argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run a tool with a deadline; on expiry its whole process group is killed and ``Timeout`` raised."""
    tool = argv[0]
    if shutil.which(tool) is None:
        raise ImageError(TOOL_MISSING, f"{tool} is needed to {what} on this machine but is not installed: "
                         f"{_INSTALL_HINT.get(tool, 'install it')}", temporary=False)
    if timeout <= 0:
        raise ImageError(TIMEOUT, f"no time left to {what}")
    # Own session: buildah run's children (the command in the chroot) die with it on a timeout.
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise ImageError(TIMEOUT, f"{what} did not finish within {timeout:.0f} s") from None
    except BaseException:
        _kill_group(process)
        process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout.decode("utf-8", errors="replace"),
                                       stderr.decode("utf-8", errors="replace"))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def inspect(image: "str | ImageReference", authfile: Optional[str] = None, tls_verify: bool = True,
            timeout: float = DEFAULT_INSPECT_TIMEOUT, tools: Optional[LocalTools] = None) -> dict:
    """Resolve ``image`` in its registry.

    Returns ``{"reference", "name", "digest", "image" (pull spec pinned by digest), "created", "labels",
    "architecture", "os", "env", "layers"}``. Raises ``ImageError`` (ImageNotFound, AuthenticationFailed,
    RegistryUnreachable, Timeout, ToolMissing, ToolFailed).
    """
    reference = _reference(image)
    _check_authfile(authfile)
    tools = tools or LocalTools.from_environment()
    argv = ["skopeo", "inspect", "--no-tags", "--retry-times", str(tools.retries), _tls("--tls-verify", tls_verify)]
    if authfile:
        argv += ["--authfile", authfile]
    argv.append(f"docker://{reference.pull_spec}")
    completed = _run(argv, timeout, f"inspect {reference.pull_spec}")
    if completed.returncode != 0:
        raise registry_error(reference.pull_spec, tool_message(completed.stderr))
    try:
        details = json.loads(completed.stdout)
        digest = details["Digest"]
    except (ValueError, KeyError, TypeError):
        raise ImageError(TOOL_FAILED, f"skopeo inspect of {reference.pull_spec} printed no image digest: "
                         f"{completed.stdout[:300]}", temporary=False) from None
    return {
        "reference": reference.pull_spec,
        "name": reference.name,
        "digest": digest,
        "image": reference.by_digest(digest),
        "created": details.get("Created"),
        "labels": details.get("Labels") or {},
        "architecture": details.get("Architecture"),
        "os": details.get("Os"),
        "env": details.get("Env") or [],
        "layers": details.get("Layers") or [],
    }


def run_checks(image: "str | ImageReference", settings: Optional[checks.CheckSettings] = None,
               authfile: Optional[str] = None, tls_verify: bool = True, uid: int = ARBITRARY_UID,
               home: Optional[str] = None, keep_image: bool = False, timeout: float = DEFAULT_CHECK_TIMEOUT,
               tools: Optional[LocalTools] = None) -> checks.CheckReport:
    """Validate ``image`` by running the check program in it as ``uid`` with group 0.

    Returns the ``CheckReport`` whether the image passed or not (``report.passed``); an image that cannot run the
    check at all (no ``/bin/sh``) gives a failed report too. Pull failures and timeouts raise ``ImageError``.
    ``home`` sets ``$HOME`` (by default the image's own, as a pod would get it). The pulled image is removed
    afterwards unless it was in the storage before or ``keep_image`` is set; the container always is.
    """
    reference = _reference(image)
    _check_authfile(authfile)
    tools = tools or LocalTools.from_environment()
    # buildah's chroot binds the host's /dev read-only: the result comes back through the output frame only.
    settings = dataclasses.replace(settings or checks.CheckSettings(), result_path="")
    deadline = time.monotonic() + timeout
    os.makedirs(tools.storage_root, exist_ok=True)
    os.makedirs(tools.run_root, exist_ok=True)
    present_before = _image_present(tools, reference, deadline)
    container = f"{CONTAINER_PREFIX}{uuid.uuid4().hex[:12]}"
    argv = tools.buildah("from", "--quiet", "--pull=true", "--retry", str(tools.retries), "--name", container,
                         _tls("--tls-verify", tls_verify))
    if authfile:
        argv += ["--authfile", authfile]
    argv.append(f"docker://{reference.pull_spec}")
    created = False
    try:
        completed = _run(argv, deadline - time.monotonic(), f"pull {reference.pull_spec}")
        if completed.returncode != 0:
            raise registry_error(reference.pull_spec, tool_message(completed.stderr))
        created = True
        run_argv = tools.buildah("run", "--isolation", tools.isolation, "--user", f"{int(uid)}:0")
        if home is not None:
            run_argv += ["--env", f"HOME={home}"]
        run_argv += [container, "--", *checks.check_command(settings)]
        completed = _run(run_argv, deadline - time.monotonic(), f"validate {reference.pull_spec}")
        return _report_from_run(completed)
    finally:
        if created or _container_exists(tools, container):
            _cleanup(tools.buildah("rm", container))
        if not keep_image and not present_before:
            _cleanup(tools.buildah("rmi", reference.pull_spec))


def _report_from_run(completed: subprocess.CompletedProcess) -> checks.CheckReport:
    report = checks.parse_check_result(completed.stdout)
    if report.error is None or checks.FRAME_BEGIN in completed.stdout:
        return report
    message = tool_message(completed.stderr)
    if any(marker in completed.stderr for marker in _NO_SHELL_MARKERS):
        return checks.failed_report(checks.CHECK_SHELL, "the image has no /bin/sh: the validation (and the ODH "
                                    "notebook start scripts) need a POSIX shell")
    return checks.failed_report(checks.CHECK_RESULT, f"the image check printed no result (exit status "
                                f"{completed.returncode}): {message or completed.stdout.strip()[-300:]}")


def _image_present(tools: LocalTools, reference: ImageReference, deadline: float) -> bool:
    completed = _run(tools.buildah("inspect", "--type", "image", reference.pull_spec),
                     min(CLEANUP_TIMEOUT, deadline - time.monotonic()), "look up the image in buildah's storage")
    return completed.returncode == 0


def _container_exists(tools: LocalTools, container: str) -> bool:
    try:
        completed = _run(tools.buildah("inspect", "--type", "container", container), CLEANUP_TIMEOUT,
                         "look up a working container")
    except ImageError:
        return False
    return completed.returncode == 0


def _cleanup(argv: list[str]) -> None:
    # Best effort: a failed cleanup must not hide the result or the original error.
    try:
        _run(argv, CLEANUP_TIMEOUT, "clean up")
    except ImageError:
        pass


def copy(source: "str | ImageReference", destination: "str | ImageReference", src_authfile: Optional[str] = None,
         dest_authfile: Optional[str] = None, tls_verify: bool = True, dest_tls_verify: Optional[bool] = None,
         all_platforms: bool = True, timeout: float = DEFAULT_COPY_TIMEOUT,
         tools: Optional[LocalTools] = None) -> dict:
    """Copy ``source`` to ``destination`` (registry to registry) with skopeo.

    ``tls_verify`` applies to both ends unless ``dest_tls_verify`` is given; ``all_platforms`` copies every
    image of a multi-platform list (keeping the list's digest). Returns ``{"source", "destination", "digest",
    "image"}`` where ``image`` is the destination pinned by digest.
    """
    source_ref, destination_ref = _reference(source), _reference(destination)
    if destination_ref.digest is not None:
        raise InvalidImageReference(f"cannot copy to {destination_ref.pull_spec}: a copy destination needs a tag, "
                                    "not a digest")
    _check_authfile(src_authfile)
    _check_authfile(dest_authfile)
    tools = tools or LocalTools.from_environment()
    with tempfile.TemporaryDirectory(prefix="mlops-notebooks-copy-") as work_dir:
        digest_file = os.path.join(work_dir, "digest")
        argv = ["skopeo", "copy", "--quiet", "--retry-times", str(tools.retries), "--digestfile", digest_file,
                _tls("--src-tls-verify", tls_verify),
                _tls("--dest-tls-verify", tls_verify if dest_tls_verify is None else dest_tls_verify)]
        if all_platforms:
            argv.append("--all")
        if src_authfile:
            argv += ["--src-authfile", src_authfile]
        if dest_authfile:
            argv += ["--dest-authfile", dest_authfile]
        argv += [f"docker://{source_ref.pull_spec}", f"docker://{destination_ref.pull_spec}"]
        completed = _run(argv, timeout, f"copy {source_ref.pull_spec} to {destination_ref.pull_spec}")
        if completed.returncode != 0:
            message = tool_message(completed.stderr)
            # skopeo says which side failed: "initializing source ...", "... at destination", "writing ...".
            at_destination = "initializing source" not in completed.stderr and any(
                word in message for word in ("destination", "writing", "uploading"))
            failed_side = destination_ref if at_destination else source_ref
            raise registry_error(failed_side.pull_spec, message,
                                 context=f"copying {source_ref.pull_spec} to {destination_ref.pull_spec}")
        try:
            with open(digest_file, encoding="utf-8") as file:
                digest = file.read().strip()
        except FileNotFoundError:
            digest = ""
    if not digest:
        raise ImageError(TOOL_FAILED, f"skopeo copied {source_ref.pull_spec} but reported no digest", temporary=False)
    return {"source": source_ref.pull_spec, "destination": destination_ref.pull_spec, "digest": digest,
            "image": destination_ref.by_digest(digest)}
