"""Local OCI registries for the integration tests: Debian's ``docker-registry`` on loopback.

Two registries can run per state directory:

- the public one (``start``/``stop``): anonymous push and pull, deletes enabled;
- the private one (``start_private``): the same, behind HTTP basic auth (htpasswd with bcrypt, the only
  hash the registry accepts), for tests that need "a private image with and without its secret".

Each registry lives in ``<state_dir>/<name>/``: ``config.yml``, ``data/`` (the blob store), ``registry.log``,
``pid`` and ``address``. Processes run in their own session so they outlive the Python process that started
them (``make cluster-up`` starts the cluster in the background); ``stop`` ends them by recorded pid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REGISTRY_BINARY = "docker-registry"
PUBLIC_NAME = "registry"
PRIVATE_NAME = "registry-private"
PRIVATE_USERNAME = "mlops-test"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class RegistryError(RuntimeError):
    """A registry could not be started or stopped; the message says why."""


def start(state_dir: str) -> str:
    """Start the anonymous registry (or reuse the one already running) and return ``127.0.0.1:<port>``."""
    return _start(_registry_dir(state_dir, PUBLIC_NAME), htpasswd_line=None)


def start_private(state_dir: str) -> tuple[str, str, str]:
    """Start the basic-auth registry (or reuse it) and return ``(host:port, username, password)``."""
    directory = _registry_dir(state_dir, PRIVATE_NAME)
    credentials_file = directory / "credentials.json"
    if credentials_file.exists():
        credentials = json.loads(credentials_file.read_text())
    else:
        credentials = {"username": PRIVATE_USERNAME, "password": secrets.token_urlsafe(18)}
        directory.mkdir(parents=True, exist_ok=True)
        _write_private_file(credentials_file, json.dumps(credentials))
    htpasswd_line = f"{credentials['username']}:{bcrypt_hash(credentials['password'])}\n"
    address = _start(directory, htpasswd_line=htpasswd_line)
    return address, credentials["username"], credentials["password"]


def stop(state_dir: str) -> None:
    """Stop every registry started under ``state_dir``; their data stays until the directory is removed."""
    for name in (PUBLIC_NAME, PRIVATE_NAME):
        _stop(_registry_dir(state_dir, name))


def address_of(state_dir: str, private: bool = False) -> str | None:
    """The address of a running registry under ``state_dir``, or None."""
    directory = _registry_dir(state_dir, PRIVATE_NAME if private else PUBLIC_NAME)
    pid = _running_pid(directory)
    if pid is None:
        return None
    return (directory / "address").read_text().strip()


def private_of(state_dir: str) -> tuple[str, str, str] | None:
    """``(host:port, username, password)`` of the running private registry under ``state_dir``, or None."""
    address = address_of(state_dir, private=True)
    if address is None:
        return None
    credentials = json.loads((_registry_dir(state_dir, PRIVATE_NAME) / "credentials.json").read_text())
    return address, credentials["username"], credentials["password"]


def _registry_dir(state_dir: str | os.PathLike[str], name: str) -> Path:
    """A registry's directory as an absolute path: the registry's command line names its config by this path,
    which is how ``stop`` recognises the process, whatever the caller's working directory."""
    return Path(state_dir).resolve() / name


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file.

    Uses the ``bcrypt`` package when installed, else the system's libxcrypt through ctypes (Python's ``crypt``
    module is gone in 3.13, libxcrypt is part of every Debian system).
    """
    try:
        import bcrypt  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    library_name = ctypes.util.find_library("crypt")
    if library_name is None:
        raise RegistryError("cannot hash the registry password: neither the bcrypt package nor libcrypt is available")
    libcrypt = ctypes.CDLL(library_name)
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    # A NULL random-bytes argument makes libxcrypt read the salt from the OS's random source.
    setting = libcrypt.crypt_gensalt(b"$2b$", 10, None, 0)
    hashed = libcrypt.crypt(password.encode(), setting) if setting else None
    if not hashed or not hashed.startswith(b"$2"):
        raise RegistryError("cannot hash the registry password: libcrypt has no bcrypt support")
    return hashed.decode()


def _start(directory: Path, htpasswd_line: str | None) -> str:
    if shutil.which(REGISTRY_BINARY) is None:
        raise RegistryError(
            f"{REGISTRY_BINARY} is not installed; run `scripts/bootstrap.sh images` (Debian package docker-registry)"
        )
    if _running_pid(directory) is not None:
        address = (directory / "address").read_text().strip()
        _wait_until_serving(address, directory, pid=None)
        return address
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    if htpasswd_line is not None:
        _write_private_file(directory / "htpasswd", htpasswd_line)
    last_error: RegistryError | None = None
    # A free port found by binding port 0 can be taken by someone else before the registry binds it: retry.
    for _attempt in range(3):
        address = f"127.0.0.1:{_free_port()}"
        _write_private_file(directory / "config.yml", json.dumps(_config(directory, address, htpasswd_line is not None), indent=2))
        with open(directory / "registry.log", "ab") as log:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(directory / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (directory / "pid").write_text(f"{process.pid}\n")
        (directory / "address").write_text(f"{address}\n")
        try:
            _wait_until_serving(address, directory, pid=process.pid, process=process)
            return address
        except RegistryError as error:
            last_error = error
            _stop(directory)
    assert last_error is not None
    raise last_error


def _config(directory: Path, address: str, with_auth: bool) -> dict:
    # JSON is valid YAML, so the registry reads this file without us needing a YAML writer.
    config: dict = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "fields": {"service": directory.name}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": address,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if with_auth:
        config["auth"] = {"htpasswd": {"realm": "mlops-notebooks-test", "path": str(directory / "htpasswd")}}
    return config


def _wait_until_serving(address: str, directory: Path, pid: int | None, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RegistryError(
                f"{REGISTRY_BINARY} exited with status {process.returncode}; last log lines:\n{_log_tail(directory)}"
            )
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code == 401:  # the private registry answers, asking for credentials
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RegistryError(
        f"{REGISTRY_BINARY} did not answer on http://{address}/v2/ within {STARTUP_TIMEOUT_SECONDS:.0f} s; "
        f"last log lines:\n{_log_tail(directory)}"
    )


def _stop(directory: Path) -> None:
    pid = _running_pid(directory)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and _pid_is_registry(pid, directory):
            _reap(pid)
            time.sleep(0.05)
        if _pid_is_registry(pid, directory):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    (directory / "pid").unlink(missing_ok=True)


def _running_pid(directory: Path) -> int | None:
    try:
        pid = int((directory / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_is_registry(pid, directory) else None


def _pid_is_registry(pid: int, directory: Path) -> bool:
    # Guards against a recycled pid: the process must be the registry serving this directory's config.
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state == "Z":
        return False
    wanted = os.path.normpath(directory.resolve() / "config.yml")
    for argument in command_line:
        if not argument.endswith(b"config.yml"):
            continue
        config = os.fsdecode(argument)
        if not os.path.isabs(config):  # started with a relative path (by an older version): from its cwd
            try:
                config = os.path.join(os.readlink(f"/proc/{pid}/cwd"), config)
            except OSError:
                return False
        if os.path.normpath(config) == wanted:
            return True
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its own parent (or init) reaps it
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(directory: Path, lines: int = 15) -> str:
    try:
        return "\n".join((directory / "registry.log").read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _write_private_file(path: Path, content: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(content)


def main(argv: list[str]) -> int:
    """``python tests/cluster/registry.py start|stop|start-private STATE_DIR`` for manual use."""
    if len(argv) != 2 or argv[0] not in ("start", "stop", "start-private"):
        print("usage: registry.py start|start-private|stop STATE_DIR", file=sys.stderr)
        return 2
    command, state_dir = argv
    try:
        if command == "start":
            print(f"REGISTRY={start(state_dir)}")
        elif command == "start-private":
            address, username, password = start_private(state_dir)
            print(f"PRIVATE_REGISTRY={address}\nPRIVATE_REGISTRY_USERNAME={username}\nPRIVATE_REGISTRY_PASSWORD={password}")
        else:
            stop(state_dir)
    except RegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
