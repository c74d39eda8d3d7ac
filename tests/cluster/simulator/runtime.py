"""Running containers with buildah (chroot isolation, vfs storage): the simulator's container runtime.

buildah's chroot isolation binds the host's /dev read-only into every container, so a file cannot be mounted
under /dev with ``-v``. For those targets (the default terminationMessagePath is /dev/termination-log) each
``buildah run`` starts in a private mount namespace (``unshare -m``) where the per-container file is bound over
an empty placeholder in the host's /dev first; the chroot's recursive /dev bind then carries it in, writable.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

LOG = logging.getLogger("simulator.runtime")
# Hosts the simulator pulls from: this machine's registries. Nothing else is reachable here.
LOCAL_REGISTRY_HOSTS = ("127.0.0.1", "localhost")
_BUILDAH_EXIT_LINES = re.compile(rb"^(subprocess exited (with status \d+|on \w+)|Error: exit status \d+)\s*$")


class RuntimeFailure(RuntimeError):
    """A buildah step failed; ``reason`` is the Kubernetes reason to report (ErrImagePull, ...)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


def image_host(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def is_local_image(image: str) -> bool:
    return image_host(image).split(":")[0] in LOCAL_REGISTRY_HOSTS


def rfc3339_nano() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Buildah:
    """buildah with its own storage; ``instance`` keeps this simulator's working containers apart from those of
    another simulator sharing the storage (two clusters at once)."""

    def __init__(self, root: Path, runroot: Path, instance: str = "0", driver: str = "vfs"):
        self.root = root
        self.runroot = runroot
        self.instance = instance
        self.driver = driver
        root.mkdir(parents=True, exist_ok=True)
        runroot.mkdir(parents=True, exist_ok=True)

    def command(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", self.driver, *args]

    def run(self, *args: str, timeout: float | None = 600) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)

    def from_image(self, image: str, name: str, pull: str = "true", authfile: str | None = None) -> str:
        """Create a working container from ``image`` (pulled from a local registry); return its id."""
        if not is_local_image(image):
            raise RuntimeFailure("ErrImagePull", f'Failed to pull image "{image}": the simulated node pulls only from '
                                 f"this machine's registries ({', '.join(LOCAL_REGISTRY_HOSTS)}); this cluster has no "
                                 "network")
        args = ["from", "--quiet", "--tls-verify=false", f"--pull={pull}", "--name", name]
        if authfile:
            args += ["--authfile", authfile]
        result = self.run(*args, f"docker://{image}")
        if result.returncode != 0:
            reason = "ErrImageNeverPull" if pull == "never" else "ErrImagePull"
            raise RuntimeFailure(reason, f'Failed to pull image "{image}": {_last_line(result.stderr)}')
        return result.stdout.strip().splitlines()[-1]

    def image_config(self, container: str) -> dict:
        result = self.run("inspect", "--type", "container", container)
        if result.returncode != 0:
            return {}
        return (json.loads(result.stdout).get("OCIv1") or {}).get("config") or {}

    def remove(self, container: str) -> None:
        self.run("rm", container, timeout=120)

    def container_name(self, kind: str, suffix: str) -> str:
        return f"sim-{self.instance}-{kind}-{suffix}"

    def remove_all_named(self, prefix: str | None = None) -> None:
        """Remove this instance's working containers (all of them, or those whose name starts with ``prefix``)."""
        prefix = prefix or f"sim-{self.instance}-"
        result = self.run("containers", "--json")
        if result.returncode != 0 or not result.stdout.strip():
            return
        for entry in json.loads(result.stdout) or []:
            if str(entry.get("containername", "")).startswith(prefix):
                self.remove(entry["id"])

    def start(self, container: str, argv: list[str], env: dict[str, str], mounts: list[Mount], user: str | None,
              workdir: str | None, hostname: str | None = None) -> subprocess.Popen:
        """Start ``argv`` in the container; stdout and stderr come merged from the returned process's stdout."""
        run_args = ["run", "--isolation", "chroot"]
        if user:
            run_args += ["--user", user]
        if workdir:
            run_args += ["--workingdir", workdir]
        if hostname:
            run_args += ["--hostname", hostname]
        for key, value in env.items():
            run_args += ["--env", f"{key}={value}"]
        dev_binds = []
        for mount in mounts:
            if mount.container_path.startswith("/dev/") and os.path.isfile(mount.host_path):
                dev_binds.append(mount)
                continue
            run_args += ["-v", f"{mount.host_path}:{mount.container_path}:{'ro' if mount.read_only else 'rw'}"]
        command = self.command(*run_args, container, "--", *argv)
        if dev_binds:
            script = []
            for mount in dev_binds:
                Path(mount.container_path).parent.mkdir(parents=True, exist_ok=True)
                Path(mount.container_path).touch(exist_ok=True)  # an empty placeholder in the host's /dev
                script.append(f"mount --bind {shlex.quote(mount.host_path)} {shlex.quote(mount.container_path)}")
            script.append("exec " + shlex.join(command))
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(script)]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)


def choose_store(cache: Path, instance: str) -> Buildah:
    """An image store in ``cache``: overlay when this kernel mounts it for buildah (a container starts without
    copying its image), else vfs (always works, copies every image per container)."""
    overlay = Buildah(cache / "simulator-storage-overlay", cache / "simulator-run-overlay", instance, "overlay")
    probe = f"sim-{instance}-probe"
    overlay.run("rm", probe, timeout=60)
    created = overlay.run("from", "--quiet", "--name", probe, "scratch", timeout=60)
    works = created.returncode == 0 and overlay.run("mount", probe, timeout=60).returncode == 0
    overlay.run("rm", probe, timeout=60)
    if works:
        return overlay
    LOG.info("overlay storage does not work here (%s); using vfs", _last_line(created.stderr))
    return Buildah(cache / "simulator-storage", cache / "simulator-run", instance, "vfs")


def copy_output(process: subprocess.Popen, log: IO[bytes], on_line: Callable[[bytes], None] | None = None) -> None:
    """Write the process's output to ``log`` in the CRI log format (``<time> stdout F <line>``), without the two
    lines buildah itself adds when the command exits non-zero."""
    assert process.stdout is not None
    pending: list[bytes] = []  # lines held back in case they are buildah's trailer
    for line in iter(process.stdout.readline, b""):
        if _BUILDAH_EXIT_LINES.match(line):
            pending.append(line)
            continue
        for held in pending:
            _write_cri(log, held)
        pending.clear()
        _write_cri(log, line)
        if on_line:
            on_line(line)


def _write_cri(log: IO[bytes], line: bytes) -> None:
    tag = b"F" if line.endswith(b"\n") else b"P"
    log.write(rfc3339_nano().encode() + b" stdout " + tag + b" " + line.rstrip(b"\n") + b"\n")
    log.flush()


def kill(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM the process group, then SIGKILL after the grace period."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    timer = threading.Timer(max(grace_seconds, 0.0), _kill_group, args=(process,))
    timer.daemon = True
    timer.start()
    try:
        process.wait(timeout=grace_seconds + 5)
    except subprocess.TimeoutExpired:
        _kill_group(process)
    timer.cancel()


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
