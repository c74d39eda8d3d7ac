# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: validate_notebooks with real kernels on small notebooks built in tmp_path.

Kernel starts dominate the time, so most cases share one batch run (a golden
directory, several notebooks in parallel); each test then checks its notebook.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to build test notebooks")
pytest.importorskip("nbclient", reason="nbclient is needed to execute notebooks")

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import (  # noqa: E402
    CompareOptions,
    EngineError,
    ExecutionOptions,
    Rule,
    ValidateOptions,
    Verdict,
)
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.validate import (  # noqa: E402
    golden_for,
    golden_map,
    validate_notebooks,
)

v4 = nbformat.v4


def stdout(text: str) -> Dict[str, Any]:
    return v4.new_output("stream", name="stdout", text=text)


def stderr(text: str) -> Dict[str, Any]:
    return v4.new_output("stream", name="stderr", text=text)


def value(text: str, count: int = 1) -> Dict[str, Any]:
    return v4.new_output("execute_result", data={"text/plain": text}, execution_count=count)


def error(ename: str, evalue: str) -> Dict[str, Any]:
    return v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def code(cell_id: str, source: str, outputs: Sequence[Dict[str, Any]] = (), tags: Sequence[str] = (),
         metadata: Optional[Dict[str, Any]] = None, count: Optional[int] = None) -> Any:
    cell = v4.new_code_cell(source=source, outputs=list(outputs), execution_count=count)
    cell["id"] = cell_id
    cell["metadata"] = dict(metadata or {})
    if tags:
        cell["metadata"]["tags"] = list(tags)
    return cell


def notebook(*cells: Any) -> Any:
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = list(cells)
    return nb


def write(path: str, nb: Any) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        nbformat.write(nb, handle)
    return path


def by_id(result) -> Dict[str, Any]:
    return {cell.cell_id: cell for cell in result.cells}


# ----------------------------------------------------------------------------- the shared batch

# (name, notebook as run, golden) -- a golden of None means the file is not in the golden directory.
def _batch_notebooks() -> List[tuple]:
    exact_cells = [code("a", "x = 21"), code("b", "print(x * 2)"), code("c", "x + 1")]
    exact_golden = [code("a", "x = 21"), code("b", "print(x * 2)", [stdout("42\n")]),
                    code("c", "x + 1", [value("22", 3)], count=3)]
    normalized_run = [
        code("obj", "class Model:\n    pass\nprint(Model())"),
        code("when", "import datetime\nprint('started', datetime.datetime.now().isoformat())"),
    ]
    normalized_golden = [
        code("obj", "class Model:\n    pass\nprint(Model())", [stdout("<__main__.Model object at 0x7f00deadbeef>\n")]),
        code("when", "import datetime\nprint('started', datetime.datetime.now().isoformat())",
             [stdout("started 2020-01-02T03:04:05.678901\n")]),
    ]
    tolerant_run = [code("f", "print(1.0)"), code("g", "{'loss': 0.25}")]
    tolerant_golden = [code("f", "print(1.0)", [stdout("1.000000001\n")]),
                       code("g", "{'loss': 0.25}", [value("{'loss': 0.2500000001}", 2)])]
    regression = [code("r1", "values = [1, 2, 3]"), code("r2", "print(sum(values))"), code("r3", "print('end')")]
    regression_golden = [code("r1", "values = [1, 2, 3]"), code("r2", "print(sum(values))", [stdout("7\n")]),
                         code("r3", "print('end')", [stdout("end\n")])]
    failing = [code("e1", "print('before')"), code("e2", "1 / 0"), code("e3", "print('after')")]
    failing_golden = [code("e1", "print('before')", [stdout("before\n")]), code("e2", "1 / 0"),
                      code("e3", "print('after')", [stdout("after\n")])]
    slow = [code("t1", "import time\nprint('start')"), code("t2", "time.sleep(60)"), code("t3", "print('late')")]
    slow_golden = [code("t1", "import time\nprint('start')", [stdout("start\n")]), code("t2", "time.sleep(60)"),
                   code("t3", "print('late')", [stdout("late\n")])]
    policies = [
        code("warn", "import warnings\nwarnings.warn('old api')\nprint('ok')",
             metadata={"nbvalidate": {"stderr": "ignore_warnings"}}),
        code("noisy", "import sys\nsys.stderr.write('oops\\n')\nprint('ok')",
             metadata={"nbvalidate": {"stderr": "forbid"}}),
        code("raises", "raise ValueError('expected failure')", tags=["raises-exception"]),
        code("after-raise", "print('still running')"),
        code("ignored", "import random\nrandom.random()", tags=["NBVAL_IGNORE_OUTPUT"]),
        code("skipped", "raise SystemExit('must not run')", tags=["skip-execution"]),
    ]
    policies_golden = [
        code("warn", policies[0].source, [stdout("ok\n")], metadata=policies[0].metadata),
        code("noisy", policies[1].source, [stderr("oops\n"), stdout("ok\n")], metadata=policies[1].metadata),
        code("raises", policies[2].source, [error("ValueError", "expected failure")], tags=["raises-exception"]),
        code("after-raise", policies[3].source, [stdout("still running\n")]),
        code("ignored", policies[4].source, [value("0.123")], tags=["NBVAL_IGNORE_OUTPUT"]),
        code("skipped", policies[5].source, tags=["skip-execution"]),
    ]
    # nbval's markers, as tags and as first-line comments
    nbval = [
        code("skip-tag", "raise SystemExit('must not run')", tags=["nbval-skip"]),
        code("skip-comment", "# NBVAL_SKIP\nraise SystemExit('must not run')"),
        code("raises", "raise KeyError('expected')", tags=["NBVAL_RAISES_EXCEPTION"]),
        code("no-raise", "# NBVAL_RAISES_EXCEPTION\nprint('no error here')"),
        code("ignore", "# NBVAL_IGNORE_OUTPUT\nprint('today')"),
        code("compared", "print('end')"),
    ]
    nbval_golden = [
        code("skip-tag", nbval[0].source, [stdout("never printed\n")], tags=["nbval-skip"]),
        code("skip-comment", nbval[1].source, [stdout("never printed\n")]),
        code("raises", nbval[2].source, [error("KeyError", "'expected'")], tags=["NBVAL_RAISES_EXCEPTION"]),
        code("no-raise", nbval[3].source, [stdout("no error here\n")]),
        code("ignore", nbval[4].source, [stdout("yesterday\n")]),
        code("compared", nbval[5].source, [stdout("end\n")]),
    ]
    dying = [code("k1", "print('alive')"), code("k2", "import os\nos._exit(3)"), code("k3", "print('after')")]
    dying_golden = [code("k1", "print('alive')", [stdout("alive\n")]), code("k2", dying[1].source),
                    code("k3", "print('after')", [stdout("after\n")])]
    return [
        ("exact.ipynb", exact_cells, exact_golden),
        ("dying.ipynb", dying, dying_golden),
        ("sub/normalized.ipynb", normalized_run, normalized_golden),
        ("sub/deeper/tolerant.ipynb", tolerant_run, tolerant_golden),   # a file entry: golden by file name
        ("regression.ipynb", regression, regression_golden),
        ("error.ipynb", failing, failing_golden),
        ("timeout.ipynb", slow, slow_golden),
        ("policies.ipynb", policies, policies_golden),
        ("nbval.ipynb", nbval, nbval_golden),
    ]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    notebooks_dir, golden_dir, executed_dir = base / "notebooks", base / "golden", base / "executed"
    paths, entries = [], []
    for name, cells, golden_cells in _batch_notebooks():
        paths.append(write(str(notebooks_dir / name), notebook(*cells)))
        file_entry = name.startswith("sub/deeper/")
        entries.append((paths[-1], os.path.dirname(paths[-1]) if file_entry else str(notebooks_dir)))
        write(str(golden_dir / (os.path.basename(name) if file_entry else name)), notebook(*golden_cells))
    corrupt = notebooks_dir / "corrupt.ipynb"
    corrupt.write_text('{"cells": [', encoding="utf-8")
    paths.append(str(corrupt))
    entries.append((str(corrupt), str(notebooks_dir)))
    options = ValidateOptions(
        execution=ExecutionOptions(cell_timeout=5, timeout=120),
        compare=CompareOptions(strategy="tolerant", rules=[Rule(name="never-matches", action="replace",
                                                                pattern="NO SUCH TEXT 1234", replacement="x")]),
        parallel=2,
        executed_dir=str(executed_dir),
    )
    run = validate_notebooks(paths, golden_map(entries, str(golden_dir)), options)
    results = {os.path.relpath(nb.path, str(notebooks_dir)): nb for nb in run.notebooks}
    return {"run": run, "results": results, "paths": paths, "golden_dir": str(golden_dir),
            "executed_dir": str(executed_dir), "notebooks_dir": str(notebooks_dir)}


def test_results_come_back_in_input_order(batch):
    assert [nb.path for nb in batch["run"].notebooks] == batch["paths"]
    assert batch["run"].summary()["total"] == 10


def test_exact_pass(batch):
    result = batch["results"]["exact.ipynb"]
    assert result.verdict == Verdict.PASS, result.cells
    assert [(c.cell_id, c.verdict, c.matched_by) for c in result.cells] == [
        ("a", Verdict.PASS, "id"), ("b", Verdict.PASS, "id"), ("c", Verdict.PASS, "id")]
    assert result.golden == os.path.join(batch["golden_dir"], "exact.ipynb")
    assert result.kernel == "python3" and result.duration > 0
    cell = by_id(result)["b"]
    assert cell.source == "print(x * 2)" and cell.duration is not None
    assert cell.expected == [{"output_type": "stream", "name": "stdout", "text": "42\n"}] == cell.actual


def test_normalized_pass_names_the_scrubbers(batch):
    result = batch["results"]["sub/normalized.ipynb"]
    assert result.golden == os.path.join(batch["golden_dir"], "sub", "normalized.ipynb")   # directory entry
    assert result.verdict == Verdict.PASS_NORMALIZED
    cells = by_id(result)
    assert cells["obj"].verdict == Verdict.PASS_NORMALIZED and cells["obj"].rules_fired == {"memory_address": 2}
    assert cells["when"].verdict == Verdict.PASS_NORMALIZED and cells["when"].rules_fired == {"timestamp": 2}
    assert result.rules_fired == {"memory_address": 2, "timestamp": 2}


def test_tolerant_pass_reports_max_error_and_file_entry_golden_by_name(batch):
    result = batch["results"]["sub/deeper/tolerant.ipynb"]
    assert result.golden == os.path.join(batch["golden_dir"], "tolerant.ipynb")
    assert result.verdict == Verdict.PASS_TOLERANT
    printed, returned = by_id(result)["f"], by_id(result)["g"]
    assert printed.verdict == Verdict.PASS_TOLERANT and printed.max_error == pytest.approx(1e-9, rel=1e-3)
    assert returned.verdict == Verdict.PASS_TOLERANT and returned.max_error == pytest.approx(1e-10, rel=1e-3)


def test_regression_fails_with_a_diff(batch):
    result = batch["results"]["regression.ipynb"]
    assert result.verdict == Verdict.FAIL_OUTPUT
    cells = by_id(result)
    assert [cells[k].verdict for k in ("r1", "r2", "r3")] == [Verdict.PASS, Verdict.FAIL_OUTPUT, Verdict.PASS]
    diff = cells["r2"].diff.splitlines()
    assert "-7" in diff and "+6" in diff
    assert "6" in cells["r2"].message and "7" in cells["r2"].message


def test_error_and_the_cells_after_it(batch):
    result = batch["results"]["error.ipynb"]
    assert result.verdict == Verdict.FAIL_ERROR and result.error is None
    cells = by_id(result)
    assert cells["e1"].verdict == Verdict.PASS
    assert cells["e2"].verdict == Verdict.FAIL_ERROR and "ZeroDivisionError" in cells["e2"].message
    assert cells["e2"].error["ename"] == "ZeroDivisionError"
    assert cells["e3"].verdict == Verdict.NOT_RUN


def test_error_traceback_has_no_ansi_codes(batch):
    result = batch["results"]["error.ipynb"]
    raw = nbformat.read(result.executed_path, as_version=4).cells[1].outputs[-1]
    assert raw["output_type"] == "error" and any("\x1b[" in line for line in raw["traceback"])   # IPython colours it
    traceback = by_id(result)["e2"].error["traceback"]
    assert traceback and not any("\x1b" in line for line in traceback)
    assert "ZeroDivisionError" in "\n".join(traceback) and "1 / 0" in "\n".join(traceback)
    assert "\\u001b" not in json.dumps(result.to_dict())          # json.dumps writes ESC as \u001b


def test_timeout(batch):
    result = batch["results"]["timeout.ipynb"]
    assert result.verdict == Verdict.FAIL_TIMEOUT
    cells = by_id(result)
    assert cells["t1"].verdict == Verdict.PASS
    assert cells["t2"].verdict == Verdict.FAIL_TIMEOUT and "timeout" in cells["t2"].message
    assert cells["t3"].verdict == Verdict.NOT_RUN


def test_kernel_death(batch):
    result = batch["results"]["dying.ipynb"]
    assert result.verdict == Verdict.FAIL_KERNEL_DIED
    cells = by_id(result)
    assert cells["k1"].verdict == Verdict.PASS
    assert cells["k2"].verdict == Verdict.FAIL_KERNEL_DIED and "exit" in cells["k2"].message.lower()
    assert cells["k3"].verdict == Verdict.NOT_RUN


def test_cell_policies(batch):
    result = batch["results"]["policies.ipynb"]
    cells = by_id(result)
    assert cells["warn"].verdict == Verdict.PASS_NORMALIZED
    assert cells["warn"].rules_fired.get("stderr_warnings") == 1
    assert cells["noisy"].verdict == Verdict.FAIL_OUTPUT and "forbidden" in cells["noisy"].message
    assert cells["raises"].verdict == Verdict.PASS
    assert cells["after-raise"].verdict == Verdict.PASS
    assert cells["ignored"].verdict == Verdict.PASS and "not compared" in cells["ignored"].message
    assert cells["skipped"].verdict == Verdict.SKIPPED
    assert result.verdict == Verdict.FAIL_OUTPUT


def test_nbval_markers(batch):
    result = batch["results"]["nbval.ipynb"]
    cells = by_id(result)
    assert cells["skip-tag"].verdict == cells["skip-comment"].verdict == Verdict.SKIPPED
    assert cells["raises"].verdict == Verdict.PASS and cells["raises"].error["ename"] == "KeyError"
    assert cells["no-raise"].verdict == Verdict.FAIL_ERROR
    assert cells["no-raise"].message == "expected an exception, but the cell ran without error"
    assert cells["ignore"].verdict == Verdict.PASS and "not compared" in cells["ignore"].message
    assert cells["compared"].verdict == Verdict.PASS           # the run went on after the expected exception
    assert result.verdict == Verdict.FAIL_ERROR


def test_corrupt_notebook_fails_alone(batch):
    result = batch["results"]["corrupt.ipynb"]
    assert result.verdict == Verdict.FAIL_ERROR
    assert "not valid JSON" in result.error and result.cells == []
    assert batch["results"]["exact.ipynb"].verdict == Verdict.PASS


def test_rule_that_never_fired_is_a_warning_on_every_notebook(batch):
    for result in batch["run"].notebooks:
        assert any("never-matches" in warning and "never fired" in warning for warning in result.warnings), result.path


def test_executed_notebooks_are_written_mirroring_the_tree(batch):
    result = batch["results"]["sub/normalized.ipynb"]
    assert result.executed_path == os.path.join(batch["executed_dir"], "sub", "normalized.ipynb")
    executed = nbformat.read(result.executed_path, as_version=4)
    assert "started" in executed.cells[1].outputs[0]["text"]
    assert batch["results"]["corrupt.ipynb"].executed_path is None


def test_results_serialize(batch):
    data = batch["run"].to_dict()
    json.dumps(data)
    assert data["summary"]["failed"] == 7


def test_slim_results_leave_out_only_the_outputs(batch):
    full = batch["run"].to_dict()
    slim = batch["run"].to_dict(include_outputs=False)
    assert any(cell["expected"] or cell["actual"] for nb in full["notebooks"] for cell in nb["cells"])
    for nb in full["notebooks"]:
        for cell in nb["cells"]:
            del cell["expected"], cell["actual"]
    assert slim == full
    regression = batch["results"]["regression.ipynb"]
    assert "expected" not in regression.to_dict(include_outputs=False)["cells"][1]
    assert regression.to_dict()["cells"][1]["expected"] == regression.cells[1].to_dict()["expected"] != []


# ----------------------------------------------------------------------------- stored golden, parameters


def test_stored_golden_with_parameters(tmp_path):
    path = write(str(tmp_path / "stored.ipynb"), notebook(
        code("params", "n = 1", tags=["parameters"]),
        code("double", "print(n * 2)", [stdout("4\n")], count=2),
        code("stale", "print('new text')", [stdout("old text\n")], count=3),
    ))
    before = open(path, encoding="utf-8").read()
    run = validate_notebooks([path], "stored", ValidateOptions(execution=ExecutionOptions(parameters={"n": 2})))
    result = run.notebooks[0]
    assert result.golden == "stored"
    verdicts = [(c.cell_id, c.verdict) for c in result.cells]
    assert verdicts[0] == ("params", Verdict.PASS)
    assert verdicts[1][1] == Verdict.PASS and "injected" in result.cells[1].message   # the injected cell
    assert verdicts[2:] == [("double", Verdict.PASS), ("stale", Verdict.FAIL_OUTPUT)]
    assert result.verdict == Verdict.FAIL_OUTPUT and not result.golden_written
    assert open(path, encoding="utf-8").read() == before      # compare mode writes nothing


def test_lax_mode_compares_only_cells_marked_check_output(tmp_path):
    path = write(str(tmp_path / "lax.ipynb"), notebook(
        code("checked-tag", "print(6 * 7)", [stdout("41\n")], tags=["nbval-check-output"], count=1),
        code("checked-comment", "# NBVAL_CHECK_OUTPUT\nprint('same')", [stdout("same\n")], count=2),
        code("checked-meta", "print(1 + 1)", [stdout("2\n")], metadata={"nbvalidate": {"check_output": True}},
             count=3),
        code("unchecked", "print('new')", [stdout("old\n")], count=4),
        code("unchecked-error", "1 / 0", count=5),
    ))
    lax, strict = (validate_notebooks([path], "stored", ValidateOptions(compare=CompareOptions(lax=flag))).notebooks[0]
                   for flag in (True, False))
    cells = by_id(lax)
    assert cells["checked-tag"].verdict == Verdict.FAIL_OUTPUT and "-41" in cells["checked-tag"].diff.splitlines()
    assert cells["checked-comment"].verdict == cells["checked-meta"].verdict == Verdict.PASS
    assert "not compared" not in cells["checked-comment"].message
    assert cells["unchecked"].verdict == Verdict.PASS and "lax mode" in cells["unchecked"].message
    assert cells["unchecked-error"].verdict == Verdict.FAIL_ERROR          # lax cells must still run cleanly
    assert by_id(strict)["unchecked"].verdict == Verdict.FAIL_OUTPUT       # the same cell, compared without lax
    assert by_id(strict)["checked-tag"].verdict == Verdict.FAIL_OUTPUT


# ----------------------------------------------------------------------------- update_golden


def test_update_golden_rewrites_only_the_failing_cell(tmp_path):
    cells = [code("keep", "class A:\n    pass\nprint(A())"), code("fix", "print(6 * 7)"), code("same", "print('x')")]
    golden_cells = [
        code("keep", cells[0].source, [stdout("<__main__.A object at 0x7f00deadbeef>\n")], count=1),
        code("fix", cells[1].source, [stdout("WRONG-OUTPUT\n")], count=2),
        code("same", cells[2].source, [stdout("x\n")], count=3),
    ]
    path = write(str(tmp_path / "nbs" / "nb.ipynb"), notebook(*cells))
    missing_path = write(str(tmp_path / "nbs" / "new.ipynb"), notebook(code("n1", "print('fresh')")))
    golden_dir = tmp_path / "golden"
    golden_path = write(str(golden_dir / "nb.ipynb"), notebook(*golden_cells))
    before = open(golden_path, encoding="utf-8").read()
    # A golden written in another JSON style (2-space indent, keys unsorted) keeps its style.
    styled_path = write(str(tmp_path / "nbs" / "styled.ipynb"), notebook(code("s1", "print(1)"), code("s2", "2")))
    styled_golden = notebook(code("s1", "print(1)", [stdout("1\n")], count=1), code("s2", "2", [value("3", 2)], count=2))
    styled_text = json.dumps({"nbformat_minor": 5, "nbformat": 4, "metadata": styled_golden.metadata,
                              "cells": styled_golden.cells}, indent=2, ensure_ascii=True)
    (golden_dir / "styled.ipynb").write_text(styled_text, encoding="utf-8")

    run = validate_notebooks([path, missing_path, styled_path], str(golden_dir), ValidateOptions(mode="update_golden"))
    updated, created, styled = run.notebooks
    assert by_id(updated)["keep"].verdict == Verdict.PASS_NORMALIZED
    assert by_id(updated)["fix"].verdict == Verdict.FAIL_OUTPUT and "golden updated" in by_id(updated)["fix"].message
    assert updated.golden_written

    after = open(golden_path, encoding="utf-8").read()
    changes = [line[0] + line[1:].strip()
               for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changes == ['-"WRONG-OUTPUT\\n"', '+"42\\n"']    # every other byte of the file is kept

    assert created.golden_written and any("did not exist" in w for w in created.warnings)
    assert nbformat.read(str(golden_dir / "new.ipynb"), as_version=4).cells[0].outputs[0]["text"] == "fresh\n"

    assert styled.golden_written and [c.verdict for c in styled.cells] == [Verdict.PASS, Verdict.FAIL_OUTPUT]
    styled_after = (golden_dir / "styled.ipynb").read_text(encoding="utf-8")
    assert styled_after == styled_text.replace('"3"', '"2"')

    again = validate_notebooks([path], str(golden_dir), ValidateOptions()).notebooks[0]
    assert again.verdict == Verdict.PASS_NORMALIZED and not again.golden_written


# ----------------------------------------------------------------------------- no kernel needed


def test_compare_only_alignment_verdicts(tmp_path):
    executed = notebook(
        code("same", "print(1)", [stdout("1\n")], count=1),
        code("edited", "print(2 + 0)", [stdout("2\n")], count=2),
        code("new", "print(3)", [stdout("3\n")], count=3),
        code("boom", "1/0", [error("ZeroDivisionError", "division by zero")], count=4),
    )
    golden = notebook(
        code("same", "print(1)", [stdout("1\n")]),
        code("edited", "print(2)", [stdout("2\n")]),
        code("boom", "1/0", [error("ZeroDivisionError", "division by zero")]),
        code("gone", "print(4)", [stdout("4\n")]),
    )
    path = write(str(tmp_path / "run" / "nb.ipynb"), executed)
    golden_path = write(str(tmp_path / "golden.ipynb"), golden)
    result = validate_notebooks([path], golden_path, ValidateOptions(mode="compare_only")).notebooks[0]
    assert result.kernel is None and result.executed_path is None
    verdicts = {(c.cell_id, c.golden_index): (c.verdict, c.matched_by) for c in result.cells}
    assert verdicts == {
        ("same", 0): (Verdict.PASS, "id"),
        ("edited", 1): (Verdict.SOURCE_CHANGED, "id"),
        ("new", None): (Verdict.EXTRA, None),
        ("boom", 2): (Verdict.FAIL_ERROR, "id"),
        ("gone", 3): (Verdict.MISSING, None),
    }
    changed = by_id(result)["edited"]
    assert "-print(2)" in changed.diff and "+print(2 + 0)" in changed.diff
    assert result.verdict == Verdict.FAIL_ERROR


def test_removed_and_added_cells_with_real_ids_are_missing_and_extra(tmp_path):
    golden = notebook(code("k1", "x = 1"), code("removed", "print(x)", [stdout("1\n")]),
                      code("k3", "print('end')", [stdout("end\n")]))
    executed = notebook(code("k1", "x = 1", count=1), code("added", "print(x + 1)", [stdout("2\n")], count=2),
                        code("k3", "print('end')", [stdout("end\n")], count=3))
    path = write(str(tmp_path / "run" / "nb.ipynb"), executed)
    golden_path = write(str(tmp_path / "golden.ipynb"), golden)
    result = validate_notebooks([path], golden_path, ValidateOptions(mode="compare_only")).notebooks[0]
    assert [(c.cell_id, c.index, c.golden_index, c.verdict) for c in result.cells] == [
        ("k1", 0, 0, Verdict.PASS), ("removed", None, 1, Verdict.MISSING), ("added", 1, None, Verdict.EXTRA),
        ("k3", 2, 2, Verdict.PASS)]


def test_cells_without_ids_in_the_file_still_pair_by_position(tmp_path):
    golden = notebook(code("k1", "x = 1"), code("edited", "print(x)", [stdout("1\n")]),
                      code("k3", "print('end')", [stdout("end\n")]))
    golden_path = write(str(tmp_path / "golden.ipynb"), golden)
    # an nbformat 4.4 file: no cell ids (nbio makes some up when reading it)
    executed = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
        {"cell_type": "code", "source": source, "metadata": {}, "execution_count": None, "outputs": outputs}
        for source, outputs in (("x = 1", []), ("print(x + 1)", [stdout("2\n")]),
                                ("print('end')", [stdout("end\n")]))]}
    path = str(tmp_path / "old.ipynb")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(executed, handle)
    result = validate_notebooks([path], golden_path, ValidateOptions(mode="compare_only")).notebooks[0]
    assert [(c.index, c.golden_index, c.verdict, c.matched_by) for c in result.cells] == [
        (0, 0, Verdict.PASS, "source"), (1, 1, Verdict.SOURCE_CHANGED, "position"), (2, 2, Verdict.PASS, "source")]
    assert "-print(x)" in result.cells[1].diff and "+print(x + 1)" in result.cells[1].diff


def test_compare_only_needs_a_golden(tmp_path):
    path = write(str(tmp_path / "nb.ipynb"), notebook(code("a", "1", [value("1")], count=1)))
    result = validate_notebooks([path], None, ValidateOptions(mode="compare_only")).notebooks[0]
    assert result.verdict == Verdict.FAIL_ERROR and "compare_only needs a golden" in result.error


def test_one_golden_file_for_several_notebooks_is_refused(tmp_path):
    first = write(str(tmp_path / "a.ipynb"), notebook(code("a", "1")))
    second = write(str(tmp_path / "b.ipynb"), notebook(code("a", "1")))
    golden = write(str(tmp_path / "golden.ipynb"), notebook(code("a", "1")))
    run = validate_notebooks([first, second], golden, ValidateOptions(mode="compare_only"))
    assert [nb.verdict for nb in run.notebooks] == [Verdict.FAIL_ERROR] * 2
    assert "single notebook" in run.notebooks[0].error


def _same_name_tree(tmp_path) -> Dict[str, str]:
    """nb/a/same.ipynb and nb/b/same.ipynb with goldens golden/a/same.ipynb and golden/b/same.ipynb (outputs differ)."""
    paths = {}
    for sub, printed in (("a", "A"), ("b", "B")):
        cells = [code("p", "print(%r)" % printed, [stdout(printed + "\n")], count=1)]
        paths[sub] = write(str(tmp_path / "nb" / sub / "same.ipynb"), notebook(*cells))
        write(str(tmp_path / "golden" / sub / "same.ipynb"), notebook(*cells))
    paths["other"] = write(str(tmp_path / "other" / "x.ipynb"), notebook(code("x", "1", [value("1")], count=1)))
    write(str(tmp_path / "golden" / "x.ipynb"), notebook(code("x", "1", [value("1")], count=1)))
    return paths


def test_golden_map_mirrors_directory_entries_and_names_file_entries(tmp_path):
    paths = _same_name_tree(tmp_path)
    nb_dir, golden_dir = str(tmp_path / "nb"), str(tmp_path / "golden")
    mapping = golden_map([(paths["a"], nb_dir), (paths["b"], nb_dir), (paths["other"], str(tmp_path / "other")),
                          (paths["a"], str(tmp_path / "nb" / "a"))], golden_dir)
    assert mapping == {paths["a"]: os.path.join(golden_dir, "a", "same.ipynb"),    # first root wins
                       paths["b"]: os.path.join(golden_dir, "b", "same.ipynb"),
                       paths["other"]: os.path.join(golden_dir, "x.ipynb")}
    with pytest.raises(EngineError, match="not inside its entry's directory"):
        golden_map([(paths["other"], nb_dir)], golden_dir)


def test_golden_of_a_notebook_does_not_depend_on_the_rest_of_the_run(tmp_path):
    paths = _same_name_tree(tmp_path)
    nb_dir, golden_dir = str(tmp_path / "nb"), str(tmp_path / "golden")
    alone = golden_map([(paths["a"], nb_dir)], golden_dir)
    with_other = golden_map([(paths["a"], nb_dir), (paths["other"], str(tmp_path / "other"))], golden_dir)
    options = ValidateOptions(mode="compare_only")
    for mapping, run_paths in ((alone, [paths["a"]]), (with_other, [paths["a"], paths["other"]])):
        run = validate_notebooks(run_paths, mapping, options)
        assert [nb.verdict for nb in run.notebooks] == [Verdict.PASS] * len(run_paths), [nb.error for nb in run.notebooks]
        assert run.notebooks[0].golden == os.path.join(golden_dir, "a", "same.ipynb")
        assert golden_for(paths["a"], run_paths, mapping) == os.path.join(golden_dir, "a", "same.ipynb")
    # b's golden prints "B": comparing b with a's golden would fail, so b passing shows which golden it got
    both = validate_notebooks([paths["a"], paths["b"]], golden_map([(paths["a"], nb_dir), (paths["b"], nb_dir)],
                                                                   golden_dir), options)
    assert [nb.verdict for nb in both.notebooks] == [Verdict.PASS, Verdict.PASS]
    assert both.notebooks[1].golden == os.path.join(golden_dir, "b", "same.ipynb")


def test_two_notebooks_never_share_a_golden_silently(tmp_path):
    paths = _same_name_tree(tmp_path)
    golden_dir = tmp_path / "golden"
    shared = write(str(golden_dir / "same.ipynb"), notebook(code("p", "print('A')", [stdout("A\n")], count=1)))
    by_file_entries = golden_map([(paths["a"], str(tmp_path / "nb" / "a")), (paths["b"], str(tmp_path / "nb" / "b"))],
                                 str(golden_dir))
    for golden in (str(golden_dir), by_file_entries):
        first, second = validate_notebooks([paths["a"], paths["b"]], golden,
                                           ValidateOptions(mode="compare_only")).notebooks
        assert first.verdict == second.verdict == Verdict.FAIL_ERROR
        assert first.golden == second.golden == shared
        assert "would also be the golden of %s" % paths["b"] in first.error
        assert "would also be the golden of %s" % paths["a"] in second.error
        assert first.cells == []


def test_missing_golden_names_the_exact_path_expected(tmp_path):
    paths = _same_name_tree(tmp_path)
    golden_dir = tmp_path / "golden"
    os.remove(str(golden_dir / "a" / "same.ipynb"))
    write(str(golden_dir / "same.ipynb"), notebook(code("p", "print('A')", [stdout("A\n")], count=1)))
    mapping = golden_map([(paths["a"], str(tmp_path / "nb"))], str(golden_dir))
    result = validate_notebooks([paths["a"]], mapping, ValidateOptions(mode="compare_only")).notebooks[0]
    expected = str(golden_dir / "a" / "same.ipynb")
    assert result.verdict == Verdict.FAIL_ERROR
    assert result.error == "golden notebook not found: %s" % expected       # no fallback to golden/same.ipynb
    assert result.golden == expected


def test_mapping_without_the_notebook_is_a_notebook_error(tmp_path):
    paths = _same_name_tree(tmp_path)
    mapping = golden_map([(paths["a"], str(tmp_path / "nb"))], str(tmp_path / "golden"))
    run = validate_notebooks([paths["a"], paths["b"]], mapping, ValidateOptions(mode="compare_only"))
    assert [nb.verdict for nb in run.notebooks] == [Verdict.PASS, Verdict.FAIL_ERROR]
    assert run.notebooks[1].error == "no golden notebook is mapped to %s" % paths["b"]
    with pytest.raises(EngineError, match="no golden notebook is mapped"):
        golden_for(paths["b"], [], mapping)


def test_golden_directory_goes_by_file_name(tmp_path):
    paths = _same_name_tree(tmp_path)
    assert golden_for(paths["other"], [paths["a"], paths["other"]], str(tmp_path / "golden")) == str(
        tmp_path / "golden" / "x.ipynb")
    assert golden_for(paths["other"], [paths["other"]], "stored") == "stored"
    result = validate_notebooks([paths["other"]], str(tmp_path / "golden"), ValidateOptions(mode="compare_only"))
    assert result.notebooks[0].verdict == Verdict.PASS


def test_invalid_rule_fails_every_notebook_before_any_kernel(tmp_path):
    path = write(str(tmp_path / "nb.ipynb"), notebook(code("a", "print(1)")))
    options = ValidateOptions(compare=CompareOptions(rules=[Rule(name="bad", action="replace", pattern="(")]))
    result = validate_notebooks([path], None, options).notebooks[0]
    assert result.verdict == Verdict.FAIL_ERROR and "invalid regular expression" in result.error
    assert result.kernel is None


def test_unknown_kernel_is_a_notebook_error(tmp_path):
    path = write(str(tmp_path / "nb.ipynb"), notebook(code("a", "print(1)", [stdout("1\n")], count=1)))
    options = ValidateOptions(execution=ExecutionOptions(kernel_name="no-such-kernel-xyz"))
    result = validate_notebooks([path], "stored", options).notebooks[0]
    assert result.verdict == Verdict.FAIL_ERROR and "unknown kernel" in result.error
    assert [c.verdict for c in result.cells] == [Verdict.NOT_RUN]
