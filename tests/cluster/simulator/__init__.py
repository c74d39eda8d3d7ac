"""The simulator: plays the controllers a real OpenShift cluster has and the local control plane lacks.

It is one Python process (``python -m simulator``) that watches the API like a real controller and writes status:

- **kubelet and scheduler** (kubelet.py): a Node ``mlops-sim-node`` (Ready, InternalIP 127.0.0.1, kubelet port);
  pods are bound to it and run with ``buildah run --isolation chroot`` in their image from this machine's
  registries, as ``runAsUser`` or else the namespace's ``openshift.io/sa.scc.uid-range`` start or else 1000920000,
  group 0; phase, exit codes, termination messages, restarts, activeDeadlineSeconds; ``pods/log`` through the
  API server to the kubelet endpoint. Images from anywhere else fail with ErrImagePull / ImagePullBackOff.
- **image import** (imports.py): ImageStream tags from DockerImage references get ``status.tags`` with digests, or
  the ``ImportSuccess=False`` condition. A plain-HTTP registry (like the local one) needs
  ``importPolicy.insecure: true``, as on OpenShift.
- **builds** (builds.py): Builds run with buildah (Docker strategy with an inline or git Dockerfile; Source
  strategy with the builder's assemble script) and push to the registry; ImageStreamTag outputs land in
  ``<registry>/<namespace>/<stream>`` and the stream's status; logs are served as ``builds/log``.
- **Tekton** (tekton.py): PipelineRuns create TaskRuns; TaskRuns run their steps with buildah.

Scenario hooks: the annotation ``sim.mlops.test/scenario`` makes an object take a failure path:

=========================  ===========================================================================
object                     values
=========================  ===========================================================================
Build                      ``fail`` (Failed, GenericBuildFailed, with a log), ``hang`` (Running until
                           ``status.cancelled: true`` or deletion: then Cancelled)
ImageStream                ``fail-import`` (ImportSuccess=False, InternalError), ``hang`` (never imported)
Pod                        ``fail`` (containers end with exit code 1 at once, phase Failed),
                           ``hang`` (stays Pending/ContainerCreating until deleted),
                           ``image-pull-error`` (ErrImagePull, then ImagePullBackOff)
PipelineRun / TaskRun      ``fail`` (the first step of each TaskRun fails; annotations are copied from the
                           PipelineRun to its TaskRuns), ``hang`` (Running until cancelled or timed out)
=========================  ===========================================================================

``start(state_dir, kubeconfig, registry, certs)`` runs it in the background (log: STATE/logs/simulator.log) and
returns once it is ready; ``stop(state_dir)`` stops it (running pods and builds are killed, buildah containers
removed). The buildah image store lives in the cache directory (``$MLOPS_NOTEBOOKS_CACHE``, else
``~/.cache/mlops-notebooks``), so pulled images are reused across clusters: ``simulator-storage-overlay`` when the
kernel lets buildah mount overlay (containers start without copying their image), else ``simulator-storage`` (vfs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "simulator"
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def python_executable() -> str:
    venv_python = _PACKAGE_PARENT.parent.parent / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def start(state_dir: str, kubeconfig: str, registry: str | None, certs: dict[str, Any]) -> int:
    """Start the simulator in its own session and wait until its controllers run and its Node is Ready."""
    del certs  # read from STATE/certs.json by the process itself
    state = Path(state_dir).resolve()  # the command line carries it: absolute, so stop() recognises the process
    own_dir = state / NAME
    own_dir.mkdir(parents=True, exist_ok=True)
    (own_dir / "ready").unlink(missing_ok=True)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_PARENT), env.get("PYTHONPATH")]))
    argv = [python_executable(), "-m", NAME, "--state-dir", str(state), "--kubeconfig", str(Path(kubeconfig).resolve()),
            "--certs", str(state / "certs.json"), "--registry", registry or ""]
    with open(logs / f"{NAME}.log", "ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, cwd=state)
    (own_dir / "pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if (own_dir / "ready").exists():
            return process.pid
        if process.poll() is not None:
            raise RuntimeError(f"the {NAME} exited with status {process.returncode}:\n{_log_tail(logs / f'{NAME}.log')}")
        time.sleep(0.2)
    stop(state_dir)
    raise RuntimeError(f"the {NAME} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(logs / f'{NAME}.log')}")


def stop(state_dir: str) -> None:
    """End the process started by ``start`` for this state directory (SIGTERM, then SIGKILL)."""
    pid_file = Path(state_dir).resolve() / NAME / "pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    if _is_ours(pid, state_dir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and _is_ours(pid, state_dir):
            _reap(pid)
            time.sleep(0.1)
        if _is_ours(pid, state_dir):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)


def _is_ours(pid: int, state_dir: str) -> bool:
    # Guards against a reused pid: the process must be this component, started for this state directory.
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return NAME.encode() in command_line and str(Path(state_dir).resolve()).encode() in command_line


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
