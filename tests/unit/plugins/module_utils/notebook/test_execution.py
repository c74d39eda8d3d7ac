# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notebook execution against real ipykernel kernels (the python3 kernel of this venv)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to build notebooks")
pytest.importorskip("nbclient", reason="nbclient is needed to execute notebooks")
pytest.importorskip("ipykernel", reason="a python3 kernel (ipykernel) is needed to execute notebooks")

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import execution  # noqa: E402
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (  # noqa: E402
    CellStatus,
    ExecutionOptions,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "exec")


def _code(source, *tags, outputs=None):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    if outputs is not None:
        cell.outputs = outputs
    return cell


def _notebook(*cells, kernel="python3"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "language": "python", "display_name": kernel}
    nb.cells = list(cells)
    return nb


def _stdout(cell):
    return "".join(output.get("text", "") for output in cell.outputs
                   if output.get("output_type") == "stream" and output.get("name") == "stdout")


def _statuses(outcome):
    return [(run.index, run.status) for run in outcome.cells]


# ----------------------------------------------------------------------------- a normal run


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    """One notebook exercising parameters, cwd, env, skip-execution and raises-exception."""
    workdir = tmp_path_factory.mktemp("nbdir")
    path = str(workdir / "normal.ipynb")
    stale = [nbformat.v4.new_output("stream", name="stdout", text="stale\n")]
    nb = _notebook(
        nbformat.v4.new_markdown_cell("# Title"),
        _code("n = 10\nrate = 1.5\nlabel = 'a'\nflag = False", "parameters"),
        _code("import os, sys\nprint(sys.executable)\nprint(os.getcwd())\nprint(os.environ.get('NB_TEST_VAR'))"),
        _code("print(type(n).__name__, n * 2, type(rate).__name__, rate * 2, repr(label), flag)"),
        _code("raise SystemExit('this cell must never run')", "skip-execution", outputs=stale),
        _code("1 / 0", "raises-exception"),
        _code("print('still running')"),
        _code(""),
    )
    original = json.dumps(nb, sort_keys=True)
    options = ExecutionOptions(parameters={"n": "5", "rate": "2", "label": 7, "flag": "true"},
                               env={"NB_TEST_VAR": "from-options"}, cell_timeout=30, timeout=120)
    outcome = execution.execute_notebook(nb, options, path=path)
    return {"outcome": outcome, "workdir": str(workdir), "original": original, "input": nb}


def test_normal_run_outcome(normal_run):
    outcome = normal_run["outcome"]
    assert outcome.error is None
    assert outcome.kernel_name == "python3"
    assert outcome.kernel_start_attempts == 1
    assert outcome.kernel_start_seconds > 0 and outcome.duration >= outcome.kernel_start_seconds
    assert outcome.parameters_injected is True
    # the injected cell is index 2: cells after it moved down by one
    assert _statuses(outcome) == [
        (1, CellStatus.OK), (2, CellStatus.OK), (3, CellStatus.OK), (4, CellStatus.OK),
        (5, CellStatus.SKIPPED), (6, CellStatus.ERROR), (7, CellStatus.OK), (8, CellStatus.OK),
    ]
    assert all(run.duration is not None and run.duration >= 0 for run in outcome.cells
               if run.status is not CellStatus.SKIPPED)
    assert outcome.notebook.metadata.language_info["name"] == "python"


def test_kernel_is_this_venv_python_in_notebook_dir_with_env(normal_run):
    lines = _stdout(normal_run["outcome"].notebook.cells[3]).splitlines()
    assert lines == [sys.executable, normal_run["workdir"], "from-options"]


def test_parameters_typed_like_defaults(normal_run):
    cells = normal_run["outcome"].notebook.cells
    assert cells[2].metadata.tags == ["injected-parameters"]
    assert _stdout(cells[4]) == "int 10 float 4.0 '7' True\n"


def test_skip_execution_and_raises_exception(normal_run):
    outcome = normal_run["outcome"]
    skipped = outcome.notebook.cells[5]
    assert _stdout(skipped) == "stale\n"             # not sent to the kernel: outputs untouched
    error_run = outcome.cells[5]
    assert error_run.error["ename"] == "ZeroDivisionError"
    assert _stdout(outcome.notebook.cells[7]) == "still running\n"


def test_input_notebook_not_modified(normal_run):
    assert json.dumps(normal_run["input"], sort_keys=True) == normal_run["original"]


# ----------------------------------------------------------------------------- failures


def test_error_stops_the_notebook():
    stale = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
    nb = _notebook(_code("x = 1"), _code("raise KeyError('missing')"), _code("print(x)", outputs=stale),
                   nbformat.v4.new_markdown_cell("text"), _code("print(2)"))
    outcome = execution.execute_notebook(nb, ExecutionOptions(cell_timeout=30))
    assert outcome.error is None
    assert _statuses(outcome) == [(0, CellStatus.OK), (1, CellStatus.ERROR), (2, CellStatus.NOT_RUN),
                                  (4, CellStatus.NOT_RUN)]
    assert outcome.cells[1].error["ename"] == "KeyError"
    assert outcome.notebook.cells[2].outputs == []   # a cell that did not run shows no stale output


def test_error_reply_without_error_output():
    """A custom exception handler (IPython's set_custom_exc) swallows the traceback: the kernel
    replies status 'error' but sends no error output, which nbclient with allow_errors lets pass."""
    swallow = ("get_ipython().set_custom_exc((ValueError,), "
               "lambda shell, etype, value, tb, tb_offset=None: None)")
    nb = _notebook(_code(swallow), _code("raise ValueError('swallowed')"), _code("print('after')"))
    outcome = execution.execute_notebook(nb, ExecutionOptions(cell_timeout=30))
    assert outcome.notebook.cells[1].outputs == []   # really no error output
    assert _statuses(outcome) == [(0, CellStatus.OK), (1, CellStatus.ERROR), (2, CellStatus.NOT_RUN)]
    error = outcome.cells[1].error
    assert (error["ename"], error["evalue"]) == ("ValueError", "swallowed")
    assert "no error output" in error["note"]


def test_cell_timeout():
    nb = _notebook(_code("print('before', flush=True)\nimport time\ntime.sleep(60)"), _code("print('next')"))
    outcome = execution.execute_notebook(nb, ExecutionOptions(cell_timeout=1.5, timeout=None))
    assert _statuses(outcome) == [(0, CellStatus.TIMEOUT), (1, CellStatus.NOT_RUN)]
    assert outcome.cells[0].error["ename"] == "CellTimeoutError"
    assert "timeout of 1.5 s" in outcome.cells[0].error["evalue"]
    assert _stdout(outcome.notebook.cells[0]) == "before\n"  # output up to the timeout is kept


def test_notebook_deadline():
    nb = _notebook(_code("import time\ntime.sleep(0.2)"), _code("time.sleep(60)"), _code("print('never')"))
    outcome = execution.execute_notebook(nb, ExecutionOptions(cell_timeout=50, timeout=2))
    assert _statuses(outcome) == [(0, CellStatus.OK), (1, CellStatus.TIMEOUT), (2, CellStatus.NOT_RUN)]
    assert outcome.cells[1].error["ename"] == "DeadlineExceeded"
    assert "deadline of 2 s" in outcome.cells[1].error["evalue"]


@pytest.mark.parametrize(
    "source, reason, stderr",
    [
        ("import ctypes\nctypes.string_at(0)", "killed by SIGSEGV", "Fatal Python error: Segmentation fault"),
        ("import os\nos.kill(os.getpid(), 9)", "killed by SIGKILL", None),
        ("import os\nos._exit(1)", "exited with status 1", None),
    ],
    ids=["segfault", "sigkill", "os_exit"],
)
def test_kernel_death(source, reason, stderr):
    nb = _notebook(_code("print(1)"), _code(source), _code("print(2)"))
    # a long cell timeout: a hang until the timeout would show as TIMEOUT, not KERNEL_DIED
    outcome = execution.execute_notebook(nb, ExecutionOptions(cell_timeout=60, timeout=None))
    assert _statuses(outcome) == [(0, CellStatus.OK), (1, CellStatus.KERNEL_DIED), (2, CellStatus.NOT_RUN)]
    assert reason in outcome.cells[1].error["evalue"]
    if stderr:
        assert stderr in outcome.kernel_stderr
        assert "string_at" in outcome.kernel_stderr      # faulthandler names the crashing frame


def test_unknown_kernel():
    nb = _notebook(_code("print(1)"), kernel="no-such-kernel-xyz")
    outcome = execution.execute_notebook(nb, ExecutionOptions())
    assert "unknown kernel 'no-such-kernel-xyz'" in outcome.error
    assert "python3" in outcome.error                # the installed kernels are listed
    assert _statuses(outcome) == [(0, CellStatus.NOT_RUN)]
    explicit = execution.execute_notebook(_notebook(_code("1")), ExecutionOptions(kernel_name="nope-kernel"))
    assert "unknown kernel 'nope-kernel'" in explicit.error


def test_bad_parameters_and_missing_cwd_are_notebook_errors(tmp_path):
    nb = _notebook(_code("x = 1", "parameters"))
    outcome = execution.execute_notebook(nb, ExecutionOptions(parameters={"not valid": 1}))
    assert "not a valid Python identifier" in outcome.error
    assert outcome.kernel_start_seconds is None      # no kernel was started
    outcome = execution.execute_notebook(nb, ExecutionOptions(cwd=str(tmp_path / "absent")))
    assert "working directory does not exist" in outcome.error


# ----------------------------------------------------------------------------- kernel start retries


@pytest.fixture
def flaky_kernel(tmp_path, monkeypatch):
    """A kernel spec 'flaky' whose first `failures` starts exit at once."""

    def install(failures):
        spec_dir = tmp_path / "share" / "kernels" / "flaky"
        spec_dir.mkdir(parents=True, exist_ok=True)
        counter = str(tmp_path / "starts")
        argv = [sys.executable, os.path.join(FIXTURES, "flaky_kernel.py"), counter, str(failures),
                "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(json.dumps(
            {"argv": argv, "display_name": "flaky", "language": "python"}))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
        return counter

    return install


def test_kernel_start_retried(flaky_kernel):
    counter = flaky_kernel(1)
    nb = _notebook(_code("print('up')"), kernel="flaky")
    outcome = execution.execute_notebook(nb, ExecutionOptions(kernel_start_retries=2, cell_timeout=30))
    assert outcome.error is None
    assert outcome.kernel_start_attempts == 2
    assert open(counter).read() == "2"
    assert _statuses(outcome) == [(0, CellStatus.OK)]
    assert "failing start 1 on purpose" in outcome.kernel_stderr


def test_kernel_start_gives_up(flaky_kernel):
    flaky_kernel(99)
    nb = _notebook(_code("print('up')"), kernel="flaky")
    outcome = execution.execute_notebook(nb, ExecutionOptions(kernel_start_retries=1))
    assert outcome.kernel_start_attempts == 2
    assert "kernel 'flaky' did not start after 2 attempt(s)" in outcome.error
    assert "failing start 2 on purpose" in outcome.error   # the kernel's own words are in the message
    assert _statuses(outcome) == [(0, CellStatus.NOT_RUN)]


# ----------------------------------------------------------------------------- batches


def test_execute_many_completion_order_and_isolation(tmp_path):
    go_file = str(tmp_path / "job2-delivered")
    wait_for_go = ("import os, time\nfor _ in range(300):\n    if os.path.exists(%r): break\n"
                   "    time.sleep(0.1)\nprint('go seen', os.path.exists(%r))" % (go_file, go_file))
    jobs = [
        (_notebook(_code("marker = 'job0'"), _code(wait_for_go)), ExecutionOptions(cell_timeout=60), None),
        (_notebook(_code("raise RuntimeError('job1 fails')"), _code("print('no')")), ExecutionOptions(), None),
        (_notebook(_code("print('marker' in globals())")), ExecutionOptions(), None),
        (_notebook(_code("import os; print(os.getcwd())")), ExecutionOptions(cwd=str(tmp_path)), "/elsewhere/x.ipynb"),
    ]
    order, outcomes = [], {}
    for index, outcome in execution.execute_many(jobs, parallel=2):
        order.append(index)
        outcomes[index] = outcome
        if index == 2:
            open(go_file, "w").close()   # job 0 can finish only after job 2 was delivered
    assert sorted(order) == [0, 1, 2, 3]
    # job 0 was submitted first but is delivered after job 2: results come in completion order,
    # and job 2 ran while job 0 was still running
    assert order.index(2) < order.index(0)
    assert _stdout(outcomes[0].notebook.cells[1]) == "go seen True\n"
    assert _statuses(outcomes[1]) == [(0, CellStatus.ERROR), (1, CellStatus.NOT_RUN)]  # and the others went on
    assert _stdout(outcomes[2].notebook.cells[0]) == "False\n"     # job 0's variable is not in job 2's kernel
    assert _stdout(outcomes[3].notebook.cells[0]) == str(tmp_path) + "\n"  # options.cwd beats the path
    assert all(outcomes[i].error is None for i in range(4))
    assert [_statuses(outcomes[i]) for i in (0, 2, 3)] == [
        [(0, CellStatus.OK), (1, CellStatus.OK)], [(0, CellStatus.OK)], [(0, CellStatus.OK)]]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the prestart check looks for the kernel in /proc")
def test_next_kernel_starts_while_notebook_runs(tmp_path):
    """With one notebook at a time, job 1's kernel process exists while job 0 is still running.

    The kernel is found by its working directory: a kernel forked by the fork
    server shows the zygote's environment in /proc/<pid>/environ (the one it
    was exec'd with), its own only in os.environ.
    """
    next_dir = str(tmp_path / ("prestart-%s" % uuid.uuid4().hex))
    os.mkdir(next_dir)
    look_for_kernel = (
        "import os, time\nfound = False\nfor _ in range(200):\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n            found = found or os.readlink('/proc/%%s/cwd' %% pid) == %r\n"
        "        except OSError:\n            pass\n"
        "    if found: break\n    time.sleep(0.1)\nprint('next kernel running:', found)" % next_dir
    )
    jobs = [
        (_notebook(_code(look_for_kernel)), ExecutionOptions(cell_timeout=60), None),
        (_notebook(_code("import os; print(os.getcwd())")), ExecutionOptions(cwd=next_dir), None),
    ]
    outcomes = dict(execution.execute_many(jobs, parallel=1))
    assert _stdout(outcomes[0].notebook.cells[0]) == "next kernel running: True\n"
    assert _stdout(outcomes[1].notebook.cells[0]) == next_dir + "\n"


def test_execute_many_empty():
    assert list(execution.execute_many([], parallel=2)) == []


def _processes_in(directory):
    """Processes whose working directory is ``directory`` (how kernels, forked or not, are found)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink("/proc/%s/cwd" % pid) == directory:
                found.append(int(pid))
        except OSError:
            pass
    return found


def _processes_mentioning(text):
    """Processes whose command line contains ``text`` (a zygote names its socket's directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the check looks for kernel processes in /proc")
@pytest.mark.timeout(60)  # without a working stop, close() waits for the 600 s cells
def test_stopping_the_iteration_stops_the_kernels(tmp_path, monkeypatch):
    private = tmp_path / "tmp"
    kernel_dir = str(tmp_path / "kernels")
    private.mkdir()
    os.mkdir(kernel_dir)
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where the kernels' and the zygote's directories go
    options = ExecutionOptions(cwd=kernel_dir, cell_timeout=None, timeout=None)
    slow = "import time\ntime.sleep(600)"
    jobs = [(_notebook(_code("print('quick')")), options, None)] + [(_notebook(_code(slow)), options, None)] * 3
    results = execution.execute_many(jobs, parallel=2)
    index, outcome = next(results)
    assert (index, _statuses(outcome)) == (0, [(0, CellStatus.OK)])
    assert _processes_in(kernel_dir)                   # the slow ones (and a prestarted one) are running
    results.close()                                    # the caller stops early
    assert _processes_in(kernel_dir) == []
    assert _processes_mentioning(str(private)) == []   # no zygote left either
    assert os.listdir(private) == []                   # connection files, sockets, stderr: all removed
