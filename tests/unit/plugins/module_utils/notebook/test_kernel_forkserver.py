# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel fork server: real kernels forked from a real zygote, and its fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to build notebooks")
pytest.importorskip("nbclient", reason="nbclient is needed to execute notebooks")
pytest.importorskip("ipykernel", reason="a python3 kernel (ipykernel) is needed to execute notebooks")

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import execution  # noqa: E402
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import kernel_forkserver  # noqa: E402
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (  # noqa: E402
    CellStatus,
    ExecutionOptions,
)

pytestmark = [
    pytest.mark.skipif(not kernel_forkserver.supported(), reason="the fork server needs fork and unix sockets"),
    pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the checks look at processes in /proc"),
]

# prints whether the kernel was forked: a forked kernel's parent is the zygote, not this process
WHO_AM_I = "import os\nprint('forked' if os.getppid() != %d else 'normal', os.getpid())" % os.getpid()


def _code(source):
    return nbformat.v4.new_code_cell(source)


def _notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "python3"}
    nb.cells = [_code(source) for source in sources]
    return nb


def _stdout(cell):
    return "".join(output.get("text", "") for output in cell.outputs
                   if output.get("output_type") == "stream" and output.get("name") == "stdout")


def _statuses(outcome):
    return [(run.index, run.status) for run in outcome.cells]


def _run(jobs, parallel=1):
    outcomes = dict(execution.execute_many(jobs, parallel=parallel))
    return [outcomes[index] for index in range(len(jobs))]


def _launch(outcome):
    """('forked' | 'normal', kernel pid) from the WHO_AM_I cell (the first)."""
    kind, pid = _stdout(outcome.notebook.cells[0]).split()
    return kind, int(pid)


def _processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test: where the zygote's socket directory goes."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return str(directory)


# ----------------------------------------------------------------------------- forked kernels


def test_each_notebook_gets_a_fresh_forked_kernel(tmp_path):
    pollute = ("marker = 'from A'\nimport IPython, os, sys\nIPython.nb_marker = 1\nos.environ['NB_LEAK'] = 'x'\n"
               "sys.path.append('/nb-leak')\nimport random\nprint(random.random())")
    check = ("import IPython, os, sys, random\nprint('marker' in globals(), hasattr(IPython, 'nb_marker'), "
             "'NB_LEAK' in os.environ, '/nb-leak' in sys.path)\nprint(random.random())")
    outcomes = _run([(_notebook(WHO_AM_I, pollute), ExecutionOptions(cell_timeout=30), None),
                     (_notebook(WHO_AM_I, check), ExecutionOptions(cell_timeout=30), None)])
    assert [outcome.error for outcome in outcomes] == [None, None]
    (kind_a, pid_a), (kind_b, pid_b) = _launch(outcomes[0]), _launch(outcomes[1])
    assert (kind_a, kind_b) == ("forked", "forked")
    assert pid_a != pid_b
    lines_b = _stdout(outcomes[1].notebook.cells[1]).splitlines()
    assert lines_b[0] == "False False False False"       # nothing of notebook A is in B's kernel
    assert lines_b[1] != _stdout(outcomes[0].notebook.cells[1]).strip()   # random is reseeded per kernel


def test_working_directory_and_environment_per_notebook(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    show = "import os, sys\nprint(os.getcwd())\nprint(os.environ.get('NB_VAR'))\nprint(sys.path)"
    outcomes = _run([
        (_notebook(WHO_AM_I, show), ExecutionOptions(env={"NB_VAR": "one"}), str(first / "a.ipynb")),
        (_notebook(WHO_AM_I, show), ExecutionOptions(env={"NB_VAR": "two"}), str(second / "b.ipynb")),
    ], parallel=2)
    normal = execution.execute_notebook(_notebook(WHO_AM_I, show), ExecutionOptions(env={"NB_VAR": "one"}),
                                        str(first / "a.ipynb"))
    assert [_launch(outcome)[0] for outcome in outcomes + [normal]] == ["forked", "forked", "normal"]
    normal_path = _stdout(normal.notebook.cells[1]).splitlines()[2]
    # sys.path as in a freshly started kernel (the zygote's own start left nothing in it)
    assert _stdout(outcomes[0].notebook.cells[1]).splitlines() == [str(first), "one", normal_path]
    assert _stdout(outcomes[1].notebook.cells[1]).splitlines() == [str(second), "two", normal_path]


def test_kernel_death_detected_with_stderr():
    segfault = "import ctypes\nctypes.string_at(0)"
    outcomes = _run([
        (_notebook(WHO_AM_I, segfault, "print(2)"), ExecutionOptions(cell_timeout=60, timeout=None), None),
        (_notebook(WHO_AM_I, "import os\nos._exit(3)"), ExecutionOptions(cell_timeout=60, timeout=None), None),
    ])
    assert [_launch(outcome)[0] for outcome in outcomes] == ["forked", "forked"]
    crashed, exited = outcomes
    assert _statuses(crashed) == [(0, CellStatus.OK), (1, CellStatus.KERNEL_DIED), (2, CellStatus.NOT_RUN)]
    assert "killed by SIGSEGV" in crashed.cells[1].error["evalue"]
    assert "Fatal Python error: Segmentation fault" in crashed.kernel_stderr
    assert "string_at" in crashed.kernel_stderr           # faulthandler names the crashing frame
    assert _statuses(exited) == [(0, CellStatus.OK), (1, CellStatus.KERNEL_DIED)]
    assert "exited with status 3" in exited.cells[1].error["evalue"]


def test_timeout_and_deadline_detected():
    outcomes = _run([
        (_notebook(WHO_AM_I, "import time\ntime.sleep(60)", "print('next')"),
         ExecutionOptions(cell_timeout=1.5, timeout=None), None),
        (_notebook(WHO_AM_I, "import time\ntime.sleep(60)"), ExecutionOptions(cell_timeout=50, timeout=2), None),
        (_notebook(WHO_AM_I, "print('after')"), ExecutionOptions(cell_timeout=30), None),
    ])
    assert [_launch(outcome)[0] for outcome in outcomes] == ["forked", "forked", "forked"]
    assert _statuses(outcomes[0]) == [(0, CellStatus.OK), (1, CellStatus.TIMEOUT), (2, CellStatus.NOT_RUN)]
    assert outcomes[0].cells[1].error["ename"] == "CellTimeoutError"
    assert _statuses(outcomes[1]) == [(0, CellStatus.OK), (1, CellStatus.TIMEOUT)]
    assert outcomes[1].cells[1].error["ename"] == "DeadlineExceeded"
    assert _stdout(outcomes[2].notebook.cells[1]) == "after\n"


def test_provisioner_interrupts_kills_and_sees_liveness(tmp_path):
    """What jupyter_client does with a forked kernel: interrupt it, tell it is alive, kill it."""
    import asyncio  # pylint: disable=import-outside-toplevel
    from jupyter_client.manager import AsyncKernelManager  # pylint: disable=import-outside-toplevel

    async def scenario():
        servers = kernel_forkserver.ForkServers()
        manager = AsyncKernelManager(kernel_name="python3", connection_file=str(tmp_path / "k.json"),
                                     transport="ipc", ip=str(tmp_path / "ipc"))
        manager.kernel_id = "forked-kernel-test"
        manager.provisioner = kernel_forkserver.forking_provisioner(manager, servers)
        with open(tmp_path / "stderr", "ab") as sink:
            try:
                await manager.start_kernel(env=dict(os.environ), cwd=str(tmp_path), stdout=sink, stderr=sink)
                client = manager.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                assert isinstance(manager.provisioner.process, kernel_forkserver.ForkedKernelProcess)
                client.execute("import time\ntime.sleep(60)")
                await asyncio.sleep(1.0)
                await manager.interrupt_kernel()
                reply = await client.get_shell_msg(timeout=30)
                assert reply["content"]["status"] == "error"
                assert reply["content"]["ename"] == "KeyboardInterrupt"
                assert await manager.is_alive()
                pid = manager.provisioner.process.pid
                client.stop_channels()
                await manager.shutdown_kernel(now=True)
                assert not await manager.is_alive()
                assert not os.path.exists("/proc/%d" % pid)   # reaped by the zygote, not left a zombie
            finally:
                servers.close()

    asyncio.run(scenario())


def test_zygote_gone_after_the_batch(private_tmp):
    parent = "print(%r in open('/proc/%%d/cmdline' %% __import__('os').getppid(), 'rb').read())" % private_tmp.encode()
    outcomes = _run([(_notebook(WHO_AM_I, parent), ExecutionOptions(), None)] * 3, parallel=2)
    assert [_launch(outcome)[0] for outcome in outcomes] == ["forked"] * 3
    assert _stdout(outcomes[0].notebook.cells[1]) == "True\n"   # the kernel's parent is the zygote
    assert _processes_mentioning(private_tmp) == []
    assert os.listdir(private_tmp) == []


def test_zygote_exits_when_the_engine_dies(tmp_path):
    """The zygote's life is its stdin pipe: an engine killed without cleanup takes it along."""
    script = (
        "import os, sys\n"
        "from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import kernel_forkserver as k\n"
        "server = k.ForkServer(sys.executable)\nserver.start()\n"
        "print(server.wait_ready(), server.pid, server.socket_path, flush=True)\nos._exit(0)\n"
    )
    collections = os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5 + ["build", "dev"]))
    runner = "import sys; sys.path.insert(0, %r)\n%s" % (os.path.normpath(collections), script)
    result = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    ready, pid, socket_path = result.stdout.split()
    assert ready == "True"
    for unused_attempt in range(100):        # the pipe's end closes with the engine; give it up to 10 s
        if not os.path.exists("/proc/%s" % pid) or open("/proc/%s/stat" % pid).read().split()[2] == "Z":
            break
        time.sleep(0.1)
    assert not os.path.exists("/proc/%s" % pid) or open("/proc/%s/stat" % pid).read().split()[2] == "Z"
    assert socket_path.endswith("zygote.sock")


# ----------------------------------------------------------------------------- fallbacks


def test_fallback_when_the_zygote_cannot_start(monkeypatch, private_tmp):
    monkeypatch.setattr(kernel_forkserver, "ZYGOTE_IMPORTS", ("no_such_module_for_the_zygote",))
    outcomes = _run([(_notebook(WHO_AM_I, "print('ran')"), ExecutionOptions(), None)] * 2, parallel=2)
    assert [outcome.error for outcome in outcomes] == [None, None]
    assert [_launch(outcome)[0] for outcome in outcomes] == ["normal", "normal"]
    assert [_stdout(outcome.notebook.cells[1]) for outcome in outcomes] == ["ran\n", "ran\n"]
    assert os.listdir(private_tmp) == []


def test_fallback_when_the_startup_environment_differs():
    outcomes = _run([
        (_notebook(WHO_AM_I), ExecutionOptions(), None),
        (_notebook(WHO_AM_I, "import os\nprint(os.environ['PYTHONHASHSEED'])"),
         ExecutionOptions(env={"PYTHONHASHSEED": "123"}), None),
    ])
    assert [_launch(outcome)[0] for outcome in outcomes] == ["forked", "normal"]
    assert _stdout(outcomes[1].notebook.cells[1]) == "123\n"


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(execution.FORK_SERVER_SWITCH, "0")
    outcomes = _run([(_notebook(WHO_AM_I), ExecutionOptions(), None)] * 2)
    assert [_launch(outcome)[0] for outcome in outcomes] == ["normal", "normal"]


def test_single_notebook_starts_normally():
    assert _launch(execution.execute_notebook(_notebook(WHO_AM_I), ExecutionOptions()))[0] == "normal"


# ----------------------------------------------------------------------------- pure logic


@pytest.mark.parametrize("cmd, launch_args, reason", [
    (["/py", "-m", "ipykernel_launcher", "-f", "c.json"], {"env": {}, "cwd": "/", "stdout": 1, "stderr": 2}, None),
    (["/py", "-m", "other_kernel", "-f", "c.json"], {"env": {}, "cwd": "/", "stdout": 1, "stderr": 2}, "not '<python>"),
    (["py", "-m", "ipykernel_launcher"], {"env": {}, "cwd": "/", "stdout": 1, "stderr": 2}, "not an absolute path"),
    (["/py", "-m", "ipykernel_launcher"], {"env": {}, "cwd": "/", "stdout": 1, "stderr": 2, "preexec_fn": 1},
     "preexec_fn"),
    (["/py", "-m", "ipykernel_launcher"], {"cwd": "/", "stdout": 1, "stderr": 2}, "no explicit environment"),
    (["/py", "-m", "ipykernel_launcher"], {"env": {}, "cwd": "/", "stdout": None, "stderr": 2}, "stdout is not a file"),
])
def test_unforkable_reason(cmd, launch_args, reason):
    found = kernel_forkserver.unforkable_reason(cmd, launch_args)
    assert found is None if reason is None else reason in found


def test_startup_env_keeps_what_interpreter_start_reads():
    env = {"PYTHONPATH": "/x", "LD_PRELOAD": "y", "LC_ALL": "C", "HOME": "/h", "PATH": "/bin", "NB_VAR": "1"}
    assert kernel_forkserver.startup_env(env) == {"PYTHONPATH": "/x", "LD_PRELOAD": "y", "LC_ALL": "C", "HOME": "/h"}
