"""Pure parts of benchmarks/validate_bench.py: corpus, statistics, pytest summary parsing, options.

No timings are asserted; nothing here starts a kernel or a tool.
"""

from __future__ import annotations

import importlib.util
import json
import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SPEC = importlib.util.spec_from_file_location("validate_bench", os.path.join(ROOT, "benchmarks", "validate_bench.py"))
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_corpus_is_valid_nbformat_and_byte_identical_between_runs(tmp_path):
    first = bench.write_corpus(str(tmp_path / "a"), 21)
    second = bench.write_corpus(str(tmp_path / "b"), 21)
    assert len(first) == 21
    assert len({os.path.basename(path) for path in first}) == 21
    for one, other in zip(first, second):
        with open(one, "rb") as left, open(other, "rb") as right:
            assert left.read() == right.read()
        nbformat.validate(nbformat.read(one, as_version=4))


def test_stored_outputs_are_what_python_prints_for_the_cells():
    # The kernel prints exactly these texts for the cells; executing the source here checks the generator's arithmetic.
    nb = bench.notebook_for(3)
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert len(code_cells) == 5
    namespace: dict = {}
    printed = []
    namespace["print"] = lambda *args: printed.append(" ".join(str(arg) for arg in args) + "\n")
    for cell in code_cells:
        source = "".join(cell["source"])
        printed.clear()
        try:
            value = eval(source, namespace)  # pylint: disable=eval-used
        except SyntaxError:
            exec(source, namespace)  # pylint: disable=exec-used
            value = None
        for output in cell["outputs"]:
            if output["output_type"] == "stream":
                assert "".join(output["text"]) == "".join(printed)
            else:
                assert output["data"]["text/plain"] == repr(value)
                assert output["execution_count"] == cell["execution_count"]
        assert cell["outputs"] or (value is None and not printed)


def test_notebooks_differ_from_each_other():
    assert json.dumps(bench.notebook_for(0)) != json.dumps(bench.notebook_for(1))


def _run(ok=True, seconds=10.0, cpu=5.0, **extra):
    record = {"ok": ok, "seconds": seconds, "cpu_seconds": cpu}
    record.update(extra)
    return record


def test_summary_takes_medians_of_successful_runs_and_ratios_to_nbval():
    runs = {
        "nbval": [_run(seconds=30.0), _run(seconds=36.0), _run(seconds=33.0)],
        "nb_validate": [_run(seconds=9.0, module_seconds=7.0), _run(seconds=12.0, module_seconds=9.0),
                        _run(ok=False, seconds=1.0)],
        "engine": [_run(seconds=8.0, validate_seconds=6.0)],
    }
    summary = bench.summarize(runs, notebooks=20)
    assert summary["nbval"]["seconds"] == 33.0
    assert summary["nbval"]["seconds_per_notebook"] == pytest.approx(1.65)
    assert summary["nb_validate"]["seconds"] == pytest.approx(10.5)   # the failed run is left out
    assert summary["nb_validate"]["runs_failed"] == 1
    assert summary["nb_validate"]["ratio_to_nbval"] == pytest.approx(10.5 / 33.0)
    assert summary["nb_validate"]["medians"]["module_seconds"] == pytest.approx(8.0)
    assert summary["engine_in_process"]["seconds"] == 6.0
    assert summary["engine_in_process"]["ratio_to_nbval"] == pytest.approx(6.0 / 33.0)
    target = bench.target_verdict(summary)
    assert target["met"] is True
    table = bench.format_table(summary)
    assert table.splitlines()[0].startswith("tool")
    assert "0.32x" in table


def test_target_not_met_and_not_measured():
    slow = bench.summarize({"nbval": [_run(seconds=30.0)], "nb_validate": [_run(seconds=10.5)]}, notebooks=20)
    assert bench.target_verdict(slow)["met"] is False
    failed = bench.summarize({"nbval": [_run(seconds=30.0)], "nb_validate": [_run(ok=False)]}, notebooks=20)
    assert bench.target_verdict(failed)["met"] is None
    assert "-" in bench.format_table(failed)


@pytest.mark.parametrize("output, expected", [
    ("....\n100 passed in 37.49s\n", {"passed": 100}),
    ("F.\nFAILED a.ipynb::Cell 1\n1 failed, 19 passed, 2 skipped in 3.0s\n", {"failed": 1, "passed": 19, "skipped": 2}),
    ("E\n1 error in 0.5s\n", {"errors": 1}),
    ("no tests ran in 0.01s\n", {}),
])
def test_pytest_counts(output, expected):
    assert bench.pytest_counts(output) == expected


def test_rotation_moves_every_tool_through_every_position():
    tools = ["a", "b", "c"]
    orders = [bench.rotation(tools, repetition) for repetition in range(3)]
    assert [order[0] for order in orders] == ["a", "b", "c"]
    assert all(sorted(order) == tools for order in orders)


def test_options():
    quick = bench.parse_args(["--quick"])
    assert (quick.notebooks, quick.repeat) == (20, 1)
    chosen = bench.parse_args(["--tools", "nbval,nb_validate", "--notebooks", "30", "--repeat", "2"])
    assert chosen.tools == ["nb_validate", "nbval"]
    assert (chosen.notebooks, chosen.repeat) == (30, 2)
    with pytest.raises(SystemExit):
        bench.parse_args(["--notebooks", "5"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--tools", "nbconvert"])
