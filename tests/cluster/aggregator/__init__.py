"""An aggregated API server for ``build.openshift.io/v1``, so the local control plane serves builds as OpenShift does.

A CRD cannot serve ``buildconfigs/instantiate`` or ``builds/log``, so this small server does, behind an APIService
``v1.build.openshift.io`` whose Service (``api`` in ``openshift-apiserver``, as on OpenShift) is an ExternalName
Service ``localhost``: Endpoints may not hold loopback addresses, and kube-apiserver's default cluster routing
dials ``https://localhost:<APIService port>``, verifying the certificate for ``api.openshift-apiserver.svc``
against the APIService's caBundle (the cluster CA, from certs.json):

- it trusts only kube-apiserver's front proxy (client certificate from the request-header CA with a name from
  ``requestheader-allowed-names``, both read from kube-system/extension-apiserver-authentication) and takes the
  user from ``X-Remote-User`` / ``X-Remote-Group`` / ``X-Remote-Extra-*``;
- it authorizes every request with a SubjectAccessReview, so RBAC on ``buildconfigs``, ``builds``,
  ``buildconfigs/instantiate`` and ``builds/log`` works as on OpenShift (a denial is a 403 Status);
- it keeps its objects in the real API server as ``buildstore.sim.mlops.test`` custom resources and renames
  group and apiVersion on the way through, so get, list (selectors, paging), watch, create, update, patch (merge,
  JSON, strategic treated as merge, server-side apply), delete and their Status errors are the API server's own;
- it defaults and validates BuildConfigs and Builds as OpenShift does (a 422 Status for a broken one);
- ``POST buildconfigs/<name>/instantiate`` bumps ``status.lastVersion`` and creates Build ``<name>-<n>``;
- ``GET builds/<name>/log`` serves ``STATE/buildlogs/<namespace>/<build>.log``, which the simulator writes while
  it runs the build (``follow=true`` streams until the build ends).

``start(state_dir, kubeconfig, registry, certs)`` runs it in the background (its log: STATE/logs/aggregator.log)
and returns once the APIService is Available; ``stop(state_dir)`` ends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "aggregator"
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def python_executable() -> str:
    venv_python = _PACKAGE_PARENT.parent.parent / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def start(state_dir: str, kubeconfig: str, registry: str | None, certs: dict[str, Any]) -> int:
    """Start the server in its own session and wait until the APIService is Available; return its pid."""
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
