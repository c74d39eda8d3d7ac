# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fork server for ipykernel kernels: fresh kernel processes without the import cost.

A fresh ipykernel spends about 0.3 of its 0.55 CPU-seconds importing
ipykernel, IPython, zmq and jupyter_client. Per batch, one long-lived "zygote"
process (this file run with ``python -c``) imports them once, creates no zmq
context, thread or event loop, and forks one new process per notebook. Each
kernel is still a process of its own, forked from the pristine zygote: nothing
of one notebook is seen by another, and no kernel is reused.

Engine side, a jupyter_client kernel provisioner (``forking_provisioner``)
asks the zygote for a kernel instead of running the kernel command. A
provisioner, not a launcher shim as the kernel command, because a shim would
be one more interpreter start per kernel (the cost this module removes) and
would have to proxy signals and exit statuses; the provisioner gives
jupyter_client a Popen-like object (``ForkedKernelProcess``) that signals the
kernel's process group directly and learns its exit status from the zygote.

Protocol, over a unix socket in a private temporary directory: the engine
sends a length-prefixed JSON request (argv, cwd, env) with the kernel's stdout
and stderr file descriptors attached (SCM_RIGHTS); the zygote forks, replies
``pid N`` and, when the kernel has exited, ``exit N`` (negative: killed by
signal N). The forked child starts a new session, takes the descriptors as its
stdout and stderr, /dev/null as stdin, moves to the notebook's directory,
takes the notebook's environment and starts IPKernelApp with the kernel
command's arguments.

Lifetime: the zygote exits, killing any kernel it still has, when its stdin
(a pipe from the engine) closes: at the end of a batch, and also when the
engine dies. A kernel whose request connection closes early is killed. The
kernels watch their parent (ipykernel's parent poller), so they go too if the
zygote is killed.

Only the plain case forks: the kernel command is ``<python> -m
ipykernel_launcher ...``, the launch has nothing beyond env, cwd, stdout and
stderr, and the environment variables read at interpreter start (``PYTHON*``,
``LD_*``, locale, ``HOME``, ...) equal the zygote's. Anything else, and any
trouble with the zygote, returns None so that the caller launches the kernel
the normal way. Only the standard library is imported here (plain POSIX:
fork, unix sockets; no root needed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# What the zygote imports: what a kernel imports at start (measured against a
# running kernel's sys.modules), debugpy included because ipykernel's debugger
# imports it at start.
ZYGOTE_IMPORTS = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "IPython.core.completer", "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
    "IPython.core.logger", "IPython.extensions.storemagic", "IPython.utils.wildcard",
    "tornado.platform.asyncio", "zmq.asyncio", "sqlite3", "faulthandler",
)

# Environment variables read when an interpreter starts or while the zygote
# imports: a kernel forked from a zygote with other values would differ from a
# freshly started one, so such a kernel is launched normally.
STARTUP_ENV_PREFIXES = ("PYTHON", "LD_", "LC_", "JUPYTER", "IPYTHON", "PYDEVD", "DEBUGPY")
STARTUP_ENV_NAMES = ("LANG", "LANGUAGE", "HOME", "TMPDIR", "TZ")

# Launch arguments the fork server honours; anything else means a normal launch.
_FORKABLE_LAUNCH_ARGS = frozenset(("env", "cwd", "stdout", "stderr", "kernel_id", "extra_arguments"))

READY_TIMEOUT = 30.0                     # seconds for the zygote's imports
_REQUEST_TIMEOUT = 10.0                  # seconds for one fork request
_SOCKET_NAME = "zygote.sock"
_SOCKET_PATH_MAX = 100                   # sun_path is 108 bytes on Linux
_LENGTH = struct.Struct("!I")

_LOG = logging.getLogger("mlops.notebooks.forkserver")
_LOG.addHandler(logging.NullHandler())


class ForkServerError(Exception):
    """The zygote could not fork a kernel."""


def supported() -> bool:
    """Whether this platform has what the fork server needs."""
    return hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")


def startup_env(env: Mapping[str, str]) -> Dict[str, str]:
    """The part of ``env`` that must match the zygote's for a forked kernel to equal a fresh one."""
    return {name: value for name, value in env.items()
            if name.startswith(STARTUP_ENV_PREFIXES) or name in STARTUP_ENV_NAMES}


def unforkable_reason(cmd: Sequence[str], launch_args: Mapping[str, Any]) -> Optional[str]:
    """Why a kernel launch must not go through the fork server; None when it may."""
    if len(cmd) < 3 or list(cmd[1:3]) != ["-m", "ipykernel_launcher"]:
        return "the kernel command is not '<python> -m ipykernel_launcher'"
    if not os.path.isabs(cmd[0]):
        return "the kernel's python is not an absolute path: %s" % cmd[0]
    extra = sorted(set(launch_args) - _FORKABLE_LAUNCH_ARGS)
    if extra:
        return "launch arguments the fork server does not handle: %s" % ", ".join(extra)
    if not isinstance(launch_args.get("env"), Mapping) or not launch_args.get("cwd"):
        return "no explicit environment or working directory"
    for stream in ("stdout", "stderr"):
        if _fileno(launch_args.get(stream)) is None:
            return "the kernel's %s is not a file" % stream
    return None


def _fileno(stream: Any) -> Optional[int]:
    if isinstance(stream, int) and stream >= 0:
        return stream
    try:
        return stream.fileno() if stream is not None else None
    except (AttributeError, OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- zygote side


def _zygote_main(socket_path: str, imports: Sequence[str]) -> int:
    """Import, listen, report ready on stdout, then fork kernels until stdin closes."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]                  # as ipykernel_launcher does; IPython puts '' back in each kernel
    for name in imports:
        __import__(name)
    if threading.active_count() != 1:
        sys.stderr.write("the zygote's imports started threads: forking would be unsafe\n")
        return 3
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    sys.stdout.write("ready %d\n" % os.getpid())
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)                     # the engine's pipe is closed: kernels get their own stdout anyway
    os.close(null)
    return _serve(listener, sys.stdin.fileno())


def _serve(listener: socket.socket, control: int) -> int:
    selector = selectors.DefaultSelector()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)   # wakes select() through the wakeup fd
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    kernels: Dict[int, Optional[socket.socket]] = {}    # live kernel pid -> its request connection
    inherited: List[Any] = [listener, selector, control, wake_read, wake_write]   # what a kernel must not keep

    def report_exits() -> None:
        while kernels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = kernels.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(b"exit %d\n" % os.waitstatus_to_exitcode(status))
                except OSError:
                    pass
                selector.unregister(conn)
                conn.close()

    while True:
        for key, unused_events in selector.select():
            if key.data == "control":
                if not os.read(control, 4096):
                    for pid in kernels:
                        _kill_group(pid)
                    return 0
            elif key.data == "child":
                while True:
                    try:
                        if not os.read(wake_read, 512):
                            break
                    except BlockingIOError:
                        break
                report_exits()
            elif key.data == "accept":
                conn = listener.accept()[0]
                try:
                    pid = _fork_kernel(conn, inherited + [c for c in kernels.values() if c is not None])
                except Exception as exc:  # pylint: disable=broad-except
                    try:
                        conn.sendall(("error %s: %s\n" % (type(exc).__name__, exc)).encode("utf-8", "replace"))
                    except OSError:
                        pass
                    conn.close()
                    continue
                kernels[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            else:
                # the engine closed (or wrote to) a kernel's connection: it no longer
                # wants that kernel, so none is left behind
                pid, conn = key.data, key.fileobj
                selector.unregister(conn)
                conn.close()
                if pid in kernels:
                    kernels[pid] = None
                    _kill_group(pid)
        report_exits()   # a SIGCHLD that arrived during a fork


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _receive_request(conn: socket.socket) -> Tuple[Dict[str, Any], List[int]]:
    conn.settimeout(_REQUEST_TIMEOUT)
    data, fds, unused_flags, unused_address = socket.recv_fds(conn, 65536, 2)
    try:
        while len(data) < _LENGTH.size:
            data += _recv_some(conn)
        size = _LENGTH.unpack_from(data)[0]
        while len(data) < _LENGTH.size + size:
            data += _recv_some(conn)
        request = json.loads(data[_LENGTH.size:_LENGTH.size + size].decode("utf-8"))
        if len(fds) != 2:
            raise ForkServerError("expected 2 file descriptors, got %d" % len(fds))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _recv_some(conn: socket.socket) -> bytes:
    chunk = conn.recv(65536)
    if not chunk:
        raise ForkServerError("the request was cut short")
    return chunk


def _fork_kernel(conn: socket.socket, inherited: List[Any]) -> int:
    request, fds = _receive_request(conn)
    ready_read, ready_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                             # the kernel
        code = 1
        try:
            os.close(ready_read)
            code = _become_kernel(request, fds, ready_write, inherited + [conn])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # pylint: disable=broad-except
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)  # never return into the zygote's loop
    os.close(ready_write)
    for fd in fds:
        os.close(fd)
    os.read(ready_read, 1)          # the child is in its own session: the engine may signal its group
    os.close(ready_read)
    conn.settimeout(None)
    conn.sendall(b"pid %d\n" % pid)
    return pid


def _become_kernel(request: Dict[str, Any], fds: List[int], ready: int, inherited: List[Any]) -> int:
    zygote = os.getppid()
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for resource in inherited:          # through its object, so that no finalizer closes a reused fd later
        try:
            if isinstance(resource, int):
                os.close(resource)
            else:
                resource.close()
        except OSError:
            pass
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in set(fds + [null]):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.write(ready, b"1")
    os.close(ready)
    # the kernel exits when the zygote goes away, as a normal kernel does when the engine does
    sys.argv = list(request["argv"]) + ["--IPKernelApp.parent_handle=%d" % zygote]
    from ipykernel import kernelapp  # pylint: disable=import-outside-toplevel
    kernelapp.launch_new_instance()
    return 0


# ----------------------------------------------------------------------------- engine side


class ForkedKernelProcess:
    """What jupyter_client's local provisioner needs of a Popen, for a kernel forked by the zygote.

    The kernel is the zygote's child, so its exit status comes from the zygote
    (``exit N`` on the request connection). Signals go to the kernel's process
    group only while the kernel is known to be running: once the zygote has
    reaped it, its pid may belong to someone else.
    """

    stdin = None
    stdout = None
    stderr = None

    def __init__(self, pid: int, conn: socket.socket, buffered: bytes = b""):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._conn: Optional[socket.socket] = conn
        self._buffer = buffered
        self._lock = threading.Lock()

    def _consume(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer and self.returncode is None:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.startswith(b"exit "):
                self.returncode = int(line[5:])
                self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _zygote_gone(self) -> None:
        """The connection closed without an exit status: the zygote died (it kills its kernels on exit)."""
        self._close()
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            self.returncode = -signal.SIGKILL
        except OSError:
            pass

    def _read(self, timeout: Optional[float]) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            if self._conn is None:
                self._zygote_gone()
                return
            self._conn.settimeout(timeout)
            try:
                data = self._conn.recv(4096)
            except (BlockingIOError, socket.timeout):
                return
            except OSError:
                data = b""
            if data:
                self._consume(data)
            else:
                self._zygote_gone()

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("forked kernel %d" % self.pid, timeout or 0)
            self._read(1.0 if left is None else min(left, 1.0))
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Drop the connection (the zygote kills the kernel if it still runs)."""
        with self._lock:
            self._close()


def _own_source() -> Optional[str]:
    """This file's text, run by the zygote with ``python -c`` (works from a zip too, as in an Ansible module)."""
    spec = globals().get("__spec__")
    loader = getattr(spec, "loader", None)
    try:
        if loader is not None and hasattr(loader, "get_source"):
            return loader.get_source(spec.name)
        with open(__file__, encoding="utf-8") as handle:
            return handle.read()
    except (ImportError, OSError, NameError):
        return None


class ForkServer:
    """One zygote for one python interpreter; thread-safe."""

    def __init__(self, python: str):
        self.python = python
        # the engine's environment as a kernel launch gets it (jupyter_client drops PYTHONEXECUTABLE);
        # each kernel then takes its notebook's environment
        self.env = {name: value for name, value in os.environ.items() if name != "PYTHONEXECUTABLE"}
        self.env["JPY_PARENT_PID"] = str(os.getpid())
        self.startup_env = startup_env(self.env)
        self.pid: Optional[int] = None
        self.error: Optional[str] = None
        self._directory: Optional[str] = None
        self._process: Optional[subprocess.Popen] = None
        self._stderr_path = ""
        self._ready = False
        self._lock = threading.Lock()

    @property
    def socket_path(self) -> str:
        return os.path.join(self._directory or "", _SOCKET_NAME)

    def start(self) -> None:
        """Start the zygote (returns at once; ``wait_ready`` waits for its imports)."""
        source = _own_source()
        if source is None:
            self.error = "the fork server's source is not readable"
            return
        self._directory = tempfile.mkdtemp(prefix="nbzygote-")
        if len(self.socket_path) >= _SOCKET_PATH_MAX:
            self.error = "the temporary directory's path is too long for a unix socket"
            return
        self._stderr_path = os.path.join(self._directory, "zygote.stderr")
        try:
            with open(self._stderr_path, "wb") as stderr:
                self._process = subprocess.Popen(  # pylint: disable=consider-using-with
                    [self.python, "-c", source, self.socket_path, ",".join(ZYGOTE_IMPORTS)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=self._directory,
                    env=self.env, start_new_session=True,   # no terminal signals: its life is the stdin pipe
                )
        except OSError as exc:
            self.error = "cannot start the fork server: %s" % exc

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Block until the zygote has imported everything; False when it failed (``error`` says why)."""
        with self._lock:
            if self._ready or self.error:
                return self._ready
            process = self._process
            if process is None or process.stdout is None:
                self.error = self.error or "the fork server was not started"
                return False
            line = b""
            selector = selectors.DefaultSelector()
            selector.register(process.stdout, selectors.EVENT_READ)
            end = time.monotonic() + timeout
            while not line.endswith(b"\n"):
                left = end - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                chunk = os.read(process.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
            selector.close()
            if line.startswith(b"ready "):
                self.pid = int(line.split()[1])
                self._ready = True
            else:
                self.error = "the fork server did not start: %s" % (self._stderr_tail() or "no output")
                self._stop_process()
            return self._ready

    def _stderr_tail(self) -> str:
        try:
            with open(self._stderr_path, "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def fork(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, stdout: int, stderr: int
             ) -> ForkedKernelProcess:
        """Ask the zygote for a kernel running ``argv`` (sys.argv of the kernel); raises ForkServerError."""
        if not self._ready:
            raise ForkServerError(self.error or "the fork server is not ready")
        payload = json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode("utf-8")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(_REQUEST_TIMEOUT)
            conn.connect(self.socket_path)
            socket.send_fds(conn, [_LENGTH.pack(len(payload)) + payload], [stdout, stderr])
            reply = b""
            while b"\n" not in reply:
                chunk = conn.recv(4096)
                if not chunk:
                    raise ForkServerError("the fork server closed the connection")
                reply += chunk
            line, rest = reply.split(b"\n", 1)
            if not line.startswith(b"pid "):
                raise ForkServerError(line.decode("utf-8", "replace"))
            process = ForkedKernelProcess(int(line[4:]), conn)
            if rest:
                process._consume(rest)  # pylint: disable=protected-access
            return process
        except (OSError, ValueError) as exc:
            conn.close()
            raise ForkServerError("fork request failed: %s" % exc) from exc
        except ForkServerError:
            conn.close()
            raise

    def fail(self, reason: str) -> None:
        """Stop using this zygote (later launches go the normal way)."""
        with self._lock:
            self.error = reason
            self._ready = False

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        try:
            process.wait(5)             # closing stdin makes it kill its kernels and exit
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        with self._lock:
            self._ready = False
            self._stop_process()
            if self._directory:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None


class ForkServers:
    """The zygotes of one batch, one per python interpreter, started on first use."""

    def __init__(self) -> None:
        self._servers: Dict[str, ForkServer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _server(self, python: str) -> Optional[ForkServer]:
        with self._lock:
            if self._closed:
                return None
            server = self._servers.get(python)
            if server is None:
                server = self._servers[python] = ForkServer(python)
                server.start()
            return server

    async def launch(self, cmd: Sequence[str], launch_args: Mapping[str, Any]) -> Optional[ForkedKernelProcess]:
        """A forked kernel for this launch, or None: launch it the normal way."""
        reason = unforkable_reason(cmd, launch_args)
        if reason:
            _LOG.debug("normal kernel launch: %s", reason)
            return None
        env = dict(launch_args["env"])
        env.setdefault("JPY_PARENT_PID", str(os.getpid()))  # as jupyter_client's launcher sets it
        server = self._server(cmd[0])
        if server is None or not await asyncio.to_thread(server.wait_ready):
            if server is not None:
                _LOG.debug("normal kernel launch: %s", server.error)
            return None
        if startup_env(env) != server.startup_env:
            _LOG.debug("normal kernel launch: its startup environment differs from the fork server's")
            return None
        argv = [_launcher_path(cmd[0])] + list(cmd[3:])
        try:
            return await asyncio.to_thread(server.fork, argv, env, str(launch_args["cwd"]),
                                           _fileno(launch_args["stdout"]) or 0, _fileno(launch_args["stderr"]) or 0)
        except ForkServerError as exc:
            _LOG.warning("fork server failed, kernels start the normal way: %s", exc)
            server.fail(str(exc))
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers = list(self._servers.values())
        for server in servers:
            server.close()


def _launcher_path(python: str) -> str:
    """sys.argv[0] of a kernel started as ``python -m ipykernel_launcher`` (the launcher's file)."""
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        spec = __import__("importlib.util").util.find_spec("ipykernel_launcher")
        if spec is not None and spec.origin:
            return spec.origin
    return "ipykernel_launcher"


_PROVISIONER_CLASS: Any = None


def forking_provisioner(kernel_manager: Any, servers: ForkServers) -> Any:
    """A kernel provisioner for ``kernel_manager`` that forks through ``servers`` when it can.

    Set it as ``kernel_manager.provisioner`` before the kernel starts
    (jupyter_client creates a provisioner only when there is none).
    """
    global _PROVISIONER_CLASS  # pylint: disable=global-statement
    if _PROVISIONER_CLASS is None:
        from jupyter_client.provisioning import LocalProvisioner  # pylint: disable=import-outside-toplevel

        class ForkingProvisioner(LocalProvisioner):  # pylint: disable=too-many-ancestors
            """LocalProvisioner whose kernel comes from the fork server when the launch allows it."""

            fork_servers: Optional[ForkServers] = None

            async def launch_kernel(self, cmd: List[str], **kwargs: Any) -> Any:
                process = await self.fork_servers.launch(cmd, kwargs) if self.fork_servers else None
                if process is None:
                    return await super().launch_kernel(cmd, **kwargs)
                self.process = process
                self.pid = self.pgid = process.pid   # the kernel leads its own session
                self.cwd = kwargs.get("cwd")
                return self.connection_info

            async def send_signal(self, signum: int) -> None:
                if isinstance(self.process, ForkedKernelProcess):
                    self.process.send_signal(signum)   # only while the kernel is known to run
                    return
                await super().send_signal(signum)

            async def cleanup(self, restart: bool = False) -> None:
                if isinstance(self.process, ForkedKernelProcess):
                    self.process.close()
                await super().cleanup(restart=restart)

        _PROVISIONER_CLASS = ForkingProvisioner
    provisioner = _PROVISIONER_CLASS(kernel_id=kernel_manager.kernel_id, kernel_spec=kernel_manager.kernel_spec,
                                     parent=kernel_manager)
    provisioner.fork_servers = servers
    return provisioner


if __name__ == "__main__":
    raise SystemExit(_zygote_main(sys.argv[1], [name for name in sys.argv[2].split(",") if name]))
