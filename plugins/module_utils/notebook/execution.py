# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running notebooks in Jupyter kernels with nbclient.

``execute_notebook`` runs one notebook; ``execute_many`` runs a batch, several
at once, and starts each notebook's kernel while earlier notebooks are still
running, because a kernel start (about half a CPU-second) dominates the time
of a small notebook.

What this module adds to nbclient:

- every code cell gets a status (``CellRun``): an execute reply with status
  ``error`` counts even when the kernel sent no error output, a dead kernel is
  told apart from a timeout, and the cells after a failure are ``NOT_RUN``;
- a per-cell timeout and a whole-notebook deadline (``ExecutionOptions.timeout``,
  counted from the moment the kernel is ready to run the first cell);
- kernel start retries, with the attempts and the seconds they took;
- the kernel process's own stderr (a crash report, an import error at start),
  which never reaches the notebook's outputs;
- cell policies (``skip-execution``, ``raises-exception`` and nbval's markers).

Kernels built on ipykernel talk over IPC sockets in a private temporary
directory (no TCP ports to race for, no unencrypted-TCP warning) and have
faulthandler enabled on the real stderr, so a segfault leaves a traceback.
In a batch of two or more notebooks they are forked from a zygote that has
already imported ipykernel (``kernel_forkserver``): a fresh process per
notebook still, without the import cost; any kernel the fork server cannot
serve starts the normal way. ``MLOPS_NB_FORK_SERVER=0`` in the engine's
environment turns the fork server off.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import kernel_forkserver
from .model import CellRun, CellStatus, EngineError, ExecutionOptions, ExecutionOutcome
from .nbio import cell_source
from .parameters import inject_parameters
from .policies import cell_policy

DEFAULT_KERNEL = "python3"
KERNEL_STDERR_LIMIT = 64 * 1024          # bytes of kernel stderr kept (the end, where crashes are)
_KERNEL_INFO_TIMEOUT = 5.0
_SHUTDOWN_TIMEOUT = 10.0
_UNIX_SOCKET_PATH_MAX = 100              # sun_path is 108 bytes on Linux; keep a margin for "-<port>"
# a zygote costs about one kernel's imports: worth it from the second kernel of a batch on
FORK_SERVER_MIN_JOBS = 2
FORK_SERVER_SWITCH = "MLOPS_NB_FORK_SERVER"  # "0" in the engine's environment: never fork kernels

# Enables faulthandler on the kernel's original stderr: ipykernel redirects fd 2
# into a pipe read by a thread, which dies with the process before forwarding a
# crash report. Binds no names in the user namespace.
_FAULTHANDLER_LINE = (
    "(lambda f, s: f.enable(file=getattr(s.stderr, '_original_stdstream_copy', 2), all_threads=False))"
    "(__import__('faulthandler'), __import__('sys'))"
)

_LOG = logging.getLogger("mlops.notebooks.execution")
_LOG.addHandler(logging.NullHandler())   # nbclient/jupyter_client log to it; callers decide what to show

Job = Tuple[Any, ExecutionOptions, Optional[str]]


# ----------------------------------------------------------------------------- helpers


def _describe_exit(returncode: Optional[int]) -> str:
    if returncode is None:
        return "the kernel stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        hint = " (the out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return "the kernel process was killed by %s%s" % (name, hint)
    return "the kernel process exited with status %d" % returncode


def _tail(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _positive(value: Optional[float]) -> Optional[float]:
    return float(value) if value is not None and value > 0 else None


def _is_ipykernel(argv: Sequence[str]) -> bool:
    return any("ipykernel" in os.path.basename(str(arg)) or str(arg).startswith("ipykernel") for arg in argv)


def _first_error_output(outputs: Iterable[Any]) -> Optional[Dict[str, Any]]:
    for output in outputs:
        if output.get("output_type") == "error":
            return {
                "ename": output.get("ename", ""),
                "evalue": output.get("evalue", ""),
                "traceback": list(output.get("traceback") or []),
            }
    return None


def cell_error(outputs: Sequence[Any], reply: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The error of an executed cell, from its outputs or its execute reply; None when it succeeded.

    An ``error`` (or ``aborted``) reply without an error output still is an
    error: nbclient with ``allow_errors`` lets it pass silently (it happens,
    e.g., when a custom exception handler swallows the traceback).
    """
    from_output = _first_error_output(outputs)
    if from_output is not None:
        return from_output
    content = (reply or {}).get("content") or {}
    status = content.get("status")
    if status in ("error", "aborted"):
        return {
            "ename": content.get("ename") or ("ExecutionAborted" if status == "aborted" else "ExecutionError"),
            "evalue": content.get("evalue") or "",
            "traceback": list(content.get("traceback") or []),
            "note": "the kernel replied '%s' but sent no error output" % status,
        }
    return None


# ----------------------------------------------------------------------------- one job


@dataclass
class _Kernel:
    """A kernel process being started (or started) for one notebook."""

    workdir: str
    stderr_path: str
    stderr_sink: Any = None              # append-mode handle the kernel writes to
    client: Any = None                   # nbclient.NotebookClient (owns km / kc)
    attempts: int = 0
    seconds: float = 0.0
    error: Optional[str] = None


@dataclass
class _Job:
    index: int
    nb: Any
    options: ExecutionOptions
    path: Optional[str]
    outcome: ExecutionOutcome
    cwd: str = ""
    kernel_argv: List[str] = field(default_factory=list)
    kernel_task: Optional["asyncio.Future[_Kernel]"] = None


def _copy_notebook(nb: Any) -> Any:
    try:
        import nbformat  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise EngineError("the Python package 'nbformat' is required to execute notebooks: %s" % exc) from exc
    copied = nbformat.from_dict(copy.deepcopy(dict(nb)))
    for cell in copied.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["source"] = cell_source(cell)   # nbclient expects a string
    return copied


def _prepare(index: int, job: Job) -> _Job:
    """Copy, parameterize and resolve the kernel of one job; errors land in outcome.error."""
    nb, options, path = job
    options = options or ExecutionOptions()
    outcome = ExecutionOutcome(notebook=nb)
    prepared = _Job(index=index, nb=nb, options=options, path=path, outcome=outcome)
    try:
        prepared.nb = outcome.notebook = _copy_notebook(nb)
        outcome.parameters_injected = inject_parameters(prepared.nb, options.parameters)
        metadata = prepared.nb.get("metadata") or {}
        outcome.kernel_name = (options.kernel_name or (metadata.get("kernelspec") or {}).get("name")
                               or DEFAULT_KERNEL)
        prepared.kernel_argv = _kernel_argv(outcome.kernel_name)
        cwd = options.cwd or (os.path.dirname(os.path.abspath(path)) if path else os.getcwd())
        if not os.path.isdir(cwd):
            raise EngineError("working directory does not exist: %s" % cwd)
        prepared.cwd = cwd
    except EngineError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a malformed notebook object must not stop a batch
        outcome.error = "cannot prepare notebook for execution: %s: %s" % (type(exc).__name__, exc)
    if outcome.error:
        outcome.cells = _all_not_run(outcome.notebook)
    return prepared


def _kernel_argv(name: str) -> List[str]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # pylint: disable=import-outside-toplevel
        import nbclient  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError as exc:
        raise EngineError("the Python packages 'nbclient' and 'jupyter_client' are required to execute notebooks: %s"
                          % exc) from exc
    manager = KernelSpecManager()
    try:
        return list(manager.get_kernel_spec(name).argv)
    except NoSuchKernel as exc:
        known = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise EngineError("unknown kernel '%s' (installed kernels: %s)" % (name, known)) from exc


def _all_not_run(nb: Any) -> List[CellRun]:
    cells = nb.get("cells", []) if hasattr(nb, "get") else []
    return [CellRun(index=i, status=CellStatus.NOT_RUN) for i, c in enumerate(cells)
            if isinstance(c, dict) and c.get("cell_type") == "code"]


def _kernel_env(options: ExecutionOptions) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({str(key): str(value) for key, value in (options.env or {}).items()})
    return env


async def _start_kernel(job: _Job, fork_servers: Optional[kernel_forkserver.ForkServers] = None) -> _Kernel:
    """Start the job's kernel, retrying failed starts; never raises (errors go to _Kernel.error).

    With ``fork_servers``, an ipykernel kernel is forked from a zygote when the
    fork server can serve its launch, and started the normal way otherwise.
    """
    from jupyter_client.kernelspec import NoSuchKernel  # pylint: disable=import-outside-toplevel
    from jupyter_client.manager import AsyncKernelManager  # pylint: disable=import-outside-toplevel
    from nbclient import NotebookClient  # pylint: disable=import-outside-toplevel

    options = job.options
    workdir = tempfile.mkdtemp(prefix="nbkernel-")
    kernel = _Kernel(workdir=workdir, stderr_path=os.path.join(workdir, "kernel.stderr"))
    kernel.stderr_sink = open(kernel.stderr_path, "ab")  # pylint: disable=consider-using-with
    ipykernel = _is_ipykernel(job.kernel_argv)
    ipc_prefix = os.path.join(workdir, "ipc")
    use_ipc = ipykernel and len(ipc_prefix) < _UNIX_SOCKET_PATH_MAX
    extra_arguments: List[str] = []
    if ipykernel:
        extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.exec_lines=%s" % _FAULTHANDLER_LINE]

    client = NotebookClient(
        job.nb,
        kernel_name=job.outcome.kernel_name,
        startup_timeout=max(1, int(round(options.startup_timeout or 60))),
        allow_errors=True,              # this module decides what an error means
        shutdown_kernel="immediate",    # nbclient's own cleanup only runs after a failed start
        resources={"metadata": {"path": job.cwd}},
        extra_arguments=extra_arguments,
        log=_LOG,
    )
    kernel.client = client
    max_attempts = 1 + max(0, int(options.kernel_start_retries or 0))
    started = monotonic()
    failures: List[str] = []
    try:
        for attempt in range(1, max_attempts + 1):
            kernel.attempts = attempt
            manager_args: Dict[str, Any] = {
                "kernel_name": job.outcome.kernel_name,
                "connection_file": os.path.join(workdir, "kernel-%d.json" % attempt),
                "log": _LOG,
            }
            if use_ipc:
                manager_args.update(transport="ipc", ip="%s%d" % (ipc_prefix, attempt))
            client.km = AsyncKernelManager(**manager_args)
            client.kc = None
            if fork_servers is not None and ipykernel:
                # jupyter_client creates a provisioner only when the manager has none
                client.km.kernel_id = str(uuid.uuid4())
                client.km.provisioner = kernel_forkserver.forking_provisioner(client.km, fork_servers)
            try:
                await client.async_start_new_kernel(
                    stdout=kernel.stderr_sink, stderr=kernel.stderr_sink,
                    env=_kernel_env(options), cwd=job.cwd,
                )
                await client.async_start_new_kernel_client()
                return kernel
            except NoSuchKernel:
                kernel.error = "unknown kernel '%s'" % job.outcome.kernel_name
                return kernel
            except (FileNotFoundError, PermissionError) as exc:
                # the kernel command itself cannot run: retrying cannot help
                kernel.error = "cannot launch kernel '%s' (%s): %s" % (
                    job.outcome.kernel_name, " ".join(job.kernel_argv[:3]), exc)
                await _discard_kernel(client)
                return kernel
            except asyncio.CancelledError:
                await _discard_kernel(client)   # the batch was stopped: leave no kernel behind
                kernel.stderr_sink.close()
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            except Exception as exc:  # died before replying, did not reply in time, zmq trouble
                failures.append("attempt %d: %s" % (attempt, str(exc) or type(exc).__name__))
                _LOG.warning("kernel start attempt %d failed: %s", attempt, exc)
                await _discard_kernel(client)
        stderr = _tail(_read_stderr(kernel))
        kernel.error = "kernel '%s' did not start after %d attempt(s): %s%s" % (
            job.outcome.kernel_name, max_attempts, "; ".join(failures),
            ("; kernel stderr: " + stderr) if stderr else "")
        return kernel
    finally:
        kernel.seconds = monotonic() - started


async def _discard_kernel(client: Any) -> None:
    """Kill whatever a failed start left behind (nbclient may already have done it)."""
    km, kc = client.km, client.kc
    client.km = client.kc = None
    try:
        if kc is not None:
            kc.stop_channels()
        if km is not None:
            if km.has_kernel:
                await asyncio.wait_for(km.shutdown_kernel(now=True), _SHUTDOWN_TIMEOUT)
            else:
                await km.cleanup_resources()
    except Exception as exc:  # best effort; the process group is already gone in most cases
        _LOG.debug("cleanup after failed kernel start: %s", exc)


def _read_stderr(kernel: _Kernel) -> str:
    try:
        with open(kernel.stderr_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - KERNEL_STDERR_LIMIT))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > KERNEL_STDERR_LIMIT:
        text = "[... %d earlier bytes not kept]\n%s" % (size - KERNEL_STDERR_LIMIT, text)
    return text


def _kernel_returncode(client: Any) -> Optional[int]:
    provisioner = getattr(getattr(client, "km", None), "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None:
        return None
    try:
        return process.poll()
    except Exception:  # pylint: disable=broad-except
        return None


async def _language_info(client: Any, nb: Any) -> None:
    """Record the kernel's language_info in the notebook metadata, as nbclient does."""
    try:
        reply = await client.kc.kernel_info(reply=True, timeout=_KERNEL_INFO_TIMEOUT)
    except Exception:  # pylint: disable=broad-except
        return  # a dead or slow kernel shows up on the first cell
    info = (reply or {}).get("content", {}).get("language_info")
    if info:
        nb.metadata["language_info"] = info


async def _run_cells(job: _Job, kernel: _Kernel, stopping: Callable[[], bool] = lambda: False) -> None:
    """Execute the code cells in order, recording each cell's status in ``job.outcome``.

    ``stopping`` is checked after every cell: nbclient turns a cancellation of
    a running cell into DeadKernelError, so cancelling alone cannot stop a batch.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError  # pylint: disable=import-outside-toplevel

    client, nb, options, outcome = kernel.client, job.nb, job.options, job.outcome
    replies: Dict[int, Dict[str, Any]] = {}

    def remember_reply(cell: Any = None, cell_index: int = -1, execute_reply: Any = None, **_: Any) -> None:
        replies[cell_index] = execute_reply

    client.on_cell_executed = remember_reply
    await _language_info(client, nb)

    cell_limit = _positive(options.cell_timeout)
    total = _positive(options.timeout)
    deadline = monotonic() + total if total is not None else None
    stopped = False
    kernel_unusable = False   # timed out, died or unreachable: nothing more runs
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        if cell_policy(cell).skip:
            outcome.cells.append(CellRun(index=index, status=CellStatus.SKIPPED))
            continue
        if stopped:
            cell["outputs"] = []              # an unexecuted cell shows no stale outputs
            cell["execution_count"] = None
            outcome.cells.append(CellRun(index=index, status=CellStatus.NOT_RUN))
            continue

        limit, by_deadline = cell_limit, False
        if deadline is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                outcome.cells.append(CellRun(index=index, status=CellStatus.TIMEOUT, duration=0.0, error={
                    "ename": "DeadlineExceeded",
                    "evalue": "the notebook deadline of %g s passed before this cell started" % total,
                    "traceback": []}))
                cell["outputs"] = []
                cell["execution_count"] = None
                stopped = True
                continue
            if limit is None or remaining < limit:
                limit, by_deadline = remaining, True
        # timeout_func, not the Integer trait `timeout`: the deadline's remainder is fractional
        client.timeout_func = lambda _cell, seconds=limit: seconds

        run = CellRun(index=index, status=CellStatus.OK)
        started = monotonic()
        try:
            await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            run.error = cell_error(cell.get("outputs") or [], replies.get(index))
            if run.error is not None:
                run.status = CellStatus.ERROR
        except CellTimeoutError:
            run.status = CellStatus.TIMEOUT
            if by_deadline:
                run.error = {"ename": "DeadlineExceeded", "traceback": [],
                             "evalue": "the notebook deadline of %g s passed while this cell ran" % total}
            else:
                run.error = {"ename": "CellTimeoutError", "traceback": [],
                             "evalue": "the cell ran longer than its timeout of %g s" % limit}
            kernel_unusable = True
        except DeadKernelError:
            run.status = CellStatus.KERNEL_DIED
            run.error = {"ename": "DeadKernelError", "traceback": [],
                         "evalue": "%s while running this cell" % _describe_exit(_kernel_returncode(client))}
            kernel_unusable = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # zmq or protocol trouble: the kernel's state is unknown
            run.status = CellStatus.ERROR
            run.error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": [],
                         "note": "the engine could not talk to the kernel"}
            kernel_unusable = True
        run.duration = monotonic() - started
        if stopping():
            raise asyncio.CancelledError()
        outcome.cells.append(run)
        if run.status is CellStatus.ERROR and not kernel_unusable and cell_policy(cell).raises_exception:
            continue
        if run.status is not CellStatus.OK:
            stopped = True
    try:
        client.set_widgets_metadata()
    except Exception:  # pylint: disable=broad-except
        pass


async def _stop_kernel(kernel: _Kernel) -> None:
    """Kill the kernel and wait until its process is gone.

    Killing, not a shutdown request: the notebook is done and nothing of the
    kernel is kept, while a graceful exit (interpreter teardown with IPython
    loaded) costs 0.14-0.19 CPU-s per kernel. The kernel's stderr is read by
    ``_release`` after this returns, when no process writes to the file anymore.
    """
    client = kernel.client
    km, kc = (client.km, client.kc) if client is not None else (None, None)
    if client is not None:
        client.km = client.kc = None
    try:
        if kc is not None:
            kc.stop_channels()
        if km is not None and km.has_kernel:
            await asyncio.wait_for(km.shutdown_kernel(now=True), _SHUTDOWN_TIMEOUT)
    except Exception as exc:  # pylint: disable=broad-except
        _LOG.warning("could not stop kernel cleanly: %s", exc)
    finally:
        if kernel.stderr_sink is not None:
            kernel.stderr_sink.close()
            kernel.stderr_sink = None


def _release(kernel: _Kernel) -> str:
    stderr = _read_stderr(kernel)
    shutil.rmtree(kernel.workdir, ignore_errors=True)
    return stderr


# ----------------------------------------------------------------------------- batches


class _Batch:
    """Runs jobs on an asyncio loop in a worker thread; outcomes go to a queue in completion order.

    ``parallel`` notebooks execute at once, and up to ``parallel`` more have
    their kernels starting (prestart). Prestarted jobs sit in one shared queue,
    so a long notebook never holds back the ones behind it.
    """

    def __init__(self, jobs: Sequence[Job], parallel: int, results: "queue.Queue[Tuple[int, ExecutionOutcome]]"):
        self.jobs = jobs
        self.parallel = parallel
        self.results = results
        self.next_job = 0
        self.ready: Deque[_Job] = collections.deque()
        self.delivered: set = set()
        self.finishing: List["asyncio.Future[None]"] = []
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.main: Optional["asyncio.Future[None]"] = None
        self.cancelled = threading.Event()
        self.fork_servers: Optional[kernel_forkserver.ForkServers] = None
        if (len(jobs) >= FORK_SERVER_MIN_JOBS and kernel_forkserver.supported()
                and os.environ.get(FORK_SERVER_SWITCH, "1") != "0"):
            self.fork_servers = kernel_forkserver.ForkServers()

    # -- thread side
    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pylint: disable=broad-except
            message = "the batch was cancelled" if self.cancelled.is_set() else "internal error: %s: %s" % (
                type(exc).__name__, exc)
            for index in range(len(self.jobs)):
                if index not in self.delivered:
                    self._deliver(index, ExecutionOutcome(notebook=self.jobs[index][0], error=message))

    def cancel(self) -> None:
        self.cancelled.set()
        loop, main = self.loop, self.main
        if loop is not None and main is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(main.cancel)
            except RuntimeError:  # the loop has just finished
                pass

    def _deliver(self, index: int, outcome: ExecutionOutcome) -> None:
        if index not in self.delivered:
            self.delivered.add(index)
            self.results.put((index, outcome))

    # -- loop side
    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        if self.cancelled.is_set():
            raise asyncio.CancelledError()
        try:
            self._refill()
            await asyncio.gather(*(self._worker() for _worker_slot in range(self.parallel)))
            if self.finishing:
                await asyncio.gather(*self.finishing)
        finally:
            # on cancellation: stop every kernel still starting or waiting
            leftovers = list(self.ready)
            self.ready.clear()
            for job in leftovers:
                await self._abandon(job)
            pending = [task for task in self.finishing if not task.done()]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if self.fork_servers is not None:
                self.fork_servers.close()      # every kernel is stopped: the zygotes go too

    def _refill(self) -> None:
        """Keep ``parallel`` jobs prepared with their kernels starting."""
        while len(self.ready) < self.parallel and self.next_job < len(self.jobs):
            index = self.next_job
            self.next_job += 1
            job = _prepare(index, self.jobs[index])
            if job.outcome.error is None:
                job.kernel_task = asyncio.ensure_future(_start_kernel(job, self.fork_servers))
            self.ready.append(job)

    async def _worker(self) -> None:
        while self.ready and not self.cancelled.is_set():
            job = self.ready.popleft()
            self._refill()
            await self._run(job)

    async def _run(self, job: _Job) -> None:
        outcome = job.outcome
        if job.kernel_task is None:          # prepare failed: outcome carries the error
            self._deliver(job.index, outcome)
            return
        kernel: Optional[_Kernel] = None
        try:
            kernel = await job.kernel_task
            outcome.kernel_start_attempts = kernel.attempts
            outcome.kernel_start_seconds = kernel.seconds
            if kernel.error:
                outcome.error = kernel.error
                outcome.cells = _all_not_run(job.nb)
            else:
                started = monotonic()
                await _run_cells(job, kernel, self.cancelled.is_set)
                outcome.duration = kernel.seconds + (monotonic() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not stop the other notebooks
            outcome.error = "internal error while executing: %s: %s" % (type(exc).__name__, exc)
        finally:
            if kernel is not None:
                # shutting down happens beside the next notebook, not before it
                task = asyncio.ensure_future(self._finish(job, kernel))
                self.finishing.append(task)
            elif job.kernel_task is not None and not job.kernel_task.done():
                job.kernel_task.cancel()
        if kernel is None and outcome.error:
            self._deliver(job.index, outcome)

    async def _finish(self, job: _Job, kernel: _Kernel) -> None:
        try:
            await _stop_kernel(kernel)
        finally:
            job.outcome.kernel_stderr = _release(kernel)
            self._deliver(job.index, job.outcome)

    async def _abandon(self, job: _Job) -> None:
        task = job.kernel_task
        if task is None:
            return
        if not task.done():
            task.cancel()
        try:
            kernel = await task
        except BaseException:  # pylint: disable=broad-except
            return
        await _stop_kernel(kernel)
        _release(kernel)


def execute_many(jobs: Iterable[Job], parallel: int = 0) -> Iterator[Tuple[int, ExecutionOutcome]]:
    """Execute notebooks, ``parallel`` at a time (0: one per CPU); yields ``(job_index, outcome)``
    in completion order.

    A job is ``(notebook, ExecutionOptions, path)``; ``path`` (may be None) sets
    the default working directory. Notebooks are not modified: each outcome
    holds an executed copy. A failing notebook never stops the others: its
    outcome says what went wrong. Stopping the iteration early stops the
    kernels still running.
    """
    job_list = list(jobs)
    if not job_list:
        return
    workers = parallel if parallel and parallel > 0 else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(job_list)))
    results: "queue.Queue[Tuple[int, ExecutionOutcome]]" = queue.Queue()
    batch = _Batch(job_list, workers, results)
    thread = threading.Thread(target=batch.run, name="notebook-execution", daemon=True)
    thread.start()
    received = 0
    try:
        while received < len(job_list):
            item = results.get()
            received += 1
            yield item
    finally:
        if received < len(job_list):
            batch.cancel()
        thread.join()


def execute_notebook(nb: Any, options: Optional[ExecutionOptions] = None, path: Optional[str] = None
                     ) -> ExecutionOutcome:
    """Execute one notebook (not modified; the outcome holds the executed copy).

    Problems with this notebook (unknown kernel, kernel that will not start,
    bad parameters) are reported in ``ExecutionOutcome.error``, not raised.
    """
    for _index, outcome in execute_many([(nb, options or ExecutionOptions(), path)], parallel=1):
        return outcome
    raise EngineError("internal error: no execution outcome")  # unreachable: one job, one outcome
