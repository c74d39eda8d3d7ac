"""Start and stop the control plane's Python components (aggregator, simulator) as background processes.

Each runs as ``python -m <name> --state-dir ... --kubeconfig ... --certs ... --registry ...`` in its own session,
logs to ``STATE/logs/<name>.log``, records its pid in ``STATE/<name>/pid`` and touches ``STATE/<name>/ready`` once
it serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLUSTER_DIR = Path(__file__).resolve().parent
READY_TIMEOUT_SECONDS = 120.0


def python_executable() -> str:
    venv_python = CLUSTER_DIR.parent.parent / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def start_component(name: str, state_dir: str, kubeconfig: str, registry: str | None, stop_timeout: float) -> int:
    """Start component ``name`` and wait until it says it is ready; return its pid."""
    state = Path(state_dir).resolve()  # the command line carries it: absolute, so stop recognises the process
    own_dir = state / name
    own_dir.mkdir(parents=True, exist_ok=True)
    (own_dir / "ready").unlink(missing_ok=True)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLUSTER_DIR), env.get("PYTHONPATH")]))
    argv = [python_executable(), "-m", name, "--state-dir", str(state), "--kubeconfig", str(Path(kubeconfig).resolve()),
            "--certs", str(state / "certs.json"), "--registry", registry or ""]
    with open(logs / f"{name}.log", "ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, cwd=state)
    (own_dir / "pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if (own_dir / "ready").exists():
            return process.pid
        if process.poll() is not None:
            raise RuntimeError(f"the {name} exited with status {process.returncode}:\n{_log_tail(logs / f'{name}.log')}")
        time.sleep(0.2)
    stop_component(name, state_dir, stop_timeout)
    raise RuntimeError(f"the {name} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(logs / f'{name}.log')}")


def stop_component(name: str, state_dir: str, stop_timeout: float) -> None:
    """End the process ``start_component`` started for this state directory (SIGTERM, then SIGKILL)."""
    pid_file = Path(state_dir).resolve() / name / "pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    if _is_ours(name, pid, state_dir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        while time.monotonic() < deadline and _is_ours(name, pid, state_dir):
            _reap(pid)
            time.sleep(0.1)
        if _is_ours(name, pid, state_dir):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)


def _is_ours(name: str, pid: int, state_dir: str) -> bool:
    # Guards against a reused pid: the process must be this component, started for this state directory.
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return name.encode() in command_line and str(Path(state_dir).resolve()).encode() in command_line


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
