# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One validation run: load, execute, align, normalize, compare, give verdicts.

``validate_notebooks(paths, golden, options)`` is the engine's entry point. Each
notebook's problems (unreadable file, missing golden, unknown kernel, invalid
rule) become that notebook's ``FAIL_ERROR`` with ``NotebookResult.error``; the
other notebooks still run.

Golden sources (``golden``):

* ``None`` or ``"stored"``: the outputs stored in the notebook itself (as nbval
  does): the notebook is executed and compared with its own saved outputs.
* a notebook file: the golden of the one notebook given.
* a mapping ``{notebook path: golden path}``: explicit goldens, as ``golden_map``
  computes them from the user's entries (a directory entry's tree is mirrored in
  the golden directory, a file or glob match goes by file name).
* a directory: for each notebook, ``<dir>/<file name>``.

A notebook's golden never depends on the other notebooks of the run. A missing
golden is an error naming the exact path expected (``update_golden`` creates it
there); two notebooks with the same golden file (same file name from different
directories) both fail, naming each other, instead of sharing it silently.

Modes (``options.mode``):

* ``compare``: execute (``execution.execute_many``, ``options.parallel`` at once),
  then compare.
* ``compare_only``: no kernel; the outputs saved in the notebook are compared with
  the golden (which must be a file or directory, not ``stored``).
* ``update_golden``: execute, compare, then rewrite in the golden file only the
  cells that failed on their outputs (``FAIL_OUTPUT``: outputs and execution count;
  ``SOURCE_CHANGED``: also the source). The rest of the file stays byte for byte
  when it was written the way ``json.dumps`` writes (Jupyter and nbformat do);
  otherwise it is rewritten through nbformat. A golden file that does not exist
  yet is created from the executed notebook. Cells that are MISSING or EXTRA are
  not added or removed (reported as a warning).

Per cell (after ``alignment.align``; cells tagged ``injected-parameters`` are not
aligned, they pass when they run): the verdict rules of docs/engine.md. Outputs go
through ``normalization.structural`` and are compared exactly (``PASS``); with
strategy ``exact`` that is all. Otherwise the stderr policy
``ignore_warnings`` (``normalization.strip_warnings``, counted as rule
``stderr_warnings``), user rules and scrubbers (``Normalizer``) are applied to both
sides and they are compared again, with numeric tolerance when the strategy is
``tolerant`` or the cell sets ``rtol`` / ``atol``: ``PASS_NORMALIZED`` /
``PASS_TOLERANT`` / ``FAIL_OUTPUT``. The stderr policy ``forbid`` fails any cell
that wrote to stderr. In lax mode (``CompareOptions.lax``, nbval's ``--nbval-lax``)
only cells marked ``NBVAL_CHECK_OUTPUT`` (or ``metadata.nbvalidate.check_output``)
are compared; the others, like ``ignore_output`` cells, pass when they run without
error.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import tempfile
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .alignment import CellPair, align
from .comparison import compare_outputs, report_outputs
from .execution import execute_many
from .model import (
    CellResult,
    CellRun,
    CellStatus,
    CompareOptions,
    EngineError,
    ExecutionOutcome,
    NotebookResult,
    RunResult,
    ValidateOptions,
    Verdict,
    worst,
)
from .nbio import notebook_from_dict, read_notebook, write_notebook
from .normalization import Normalizer, strip_ansi, strip_warnings, structural
from .policies import CellPolicy, cell_policy

GOLDEN_STORED = "stored"
# None / "stored", a golden file, a directory of goldens, or {notebook path: golden path}
GoldenSource = Union[None, str, Mapping[str, str]]
MODES = ("compare", "compare_only", "update_golden")
STRATEGIES = ("exact", "normalized", "tolerant")
STDERR_POLICIES = ("compare", "ignore_warnings", "forbid")
INJECTED_PARAMETERS_TAG = "injected-parameters"
STDERR_WARNINGS_RULE = "stderr_warnings"
KERNEL_STDERR_LIMIT = 4000
_FAILED_OUTPUT_VERDICTS = (Verdict.FAIL_OUTPUT, Verdict.SOURCE_CHANGED)


class _Notebook:
    """Book-keeping for one notebook of the run."""

    def __init__(self, position: int, path: str, golden_path: Optional[str]):
        self.position = position
        self.path = path
        self.golden_path = golden_path            # None: the stored outputs
        self.result = NotebookResult(path=path, verdict=Verdict.PASS, golden=golden_path or GOLDEN_STORED)
        self.notebook: Any = None
        self.golden: Any = None                   # None with update_golden and no golden file yet
        # ids nbio made up for cells without one (they also hold in the executed copy)
        self.generated_ids: Set[str] = set()
        self.golden_generated_ids: Set[str] = set()
        self.started = time.monotonic()

    def fail(self, message: str) -> None:
        self.result.verdict = Verdict.FAIL_ERROR
        self.result.error = message


# ----------------------------------------------------------------------------- golden files


def _common_root(paths: Sequence[str]) -> str:
    """Where executed notebooks are mirrored from (``executed_dir``); never used for goldens."""
    directories = [os.path.dirname(os.path.abspath(p)) for p in paths]
    if not directories:
        return os.getcwd()
    try:
        return os.path.commonpath(directories)
    except ValueError:  # different drives (Windows): no common root, executed copies go by name
        return ""


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def _is_stored(golden: GoldenSource) -> bool:
    return golden is None or (isinstance(golden, str) and golden.strip() in ("", GOLDEN_STORED))


def _golden_is_directory(golden: str) -> bool:
    expanded = os.path.expanduser(golden)
    return os.path.isdir(expanded) or (not os.path.exists(expanded) and not expanded.endswith(".ipynb"))


def golden_map(entries: Sequence[Tuple[str, str]], golden_dir: str) -> Dict[str, str]:
    """``{notebook path: golden path}`` for notebooks found from the user's entries.

    Each entry is ``(notebook_path, entry_root)``: the golden is
    ``<golden_dir>/<notebook path relative to entry_root>``. Give a directory
    entry as its own root (its tree is mirrored) and a file or glob match its
    own directory (its golden is ``<golden_dir>/<file name>``). Keys and values
    are absolute. A notebook listed twice keeps its first root. Raises
    ``EngineError`` when a notebook is not inside its root (its golden would lie
    outside ``golden_dir``).
    """
    base = _absolute(golden_dir)
    mapping: Dict[str, str] = {}
    for notebook_path, entry_root in entries:
        notebook = _absolute(notebook_path)
        if notebook in mapping:
            continue
        root = _absolute(entry_root)
        relative = os.path.relpath(notebook, root)
        if relative == os.curdir or relative.split(os.sep, 1)[0] == os.pardir:
            raise EngineError("notebook %s is not inside its entry's directory %s, so it has no place in the "
                              "golden directory %s" % (notebook, root, base))
        mapping[notebook] = os.path.join(base, relative)
    return mapping


def golden_for(path: str, paths: Sequence[str], golden: GoldenSource) -> str:
    """The golden source of one notebook: ``"stored"`` or a golden file path (absolute).

    ``golden`` is ``None`` / ``"stored"``, one golden file, a directory (the
    golden is ``<dir>/<file name>``) or a mapping ``{notebook path: golden path}``
    such as ``golden_map`` returns. The answer depends only on ``path`` and
    ``golden``, never on the other notebooks of the run (``paths`` is accepted for
    callers that pass it). Raises ``EngineError`` when a mapping has no entry
    for ``path``.
    """
    if isinstance(golden, Mapping):
        wanted = _absolute(path)
        for notebook, golden_path in golden.items():
            if _absolute(notebook) == wanted:
                return _absolute(golden_path)
        raise EngineError("no golden notebook is mapped to %s" % wanted)
    if _is_stored(golden):
        return GOLDEN_STORED
    expanded = _absolute(golden)
    if not _golden_is_directory(str(golden)):
        return expanded
    return os.path.join(expanded, os.path.basename(path))


def _shared_goldens(golden_paths: Mapping[str, Optional[str]]) -> Dict[str, List[str]]:
    """{notebook: other notebooks with the same golden file}, for notebooks that share one."""
    by_golden: Dict[str, List[str]] = {}
    for notebook, golden_path in golden_paths.items():
        if golden_path is not None:
            by_golden.setdefault(golden_path, []).append(notebook)
    return {notebook: [other for other in notebooks if other != notebook]
            for notebooks in by_golden.values() if len(notebooks) > 1 for notebook in notebooks}


# ----------------------------------------------------------------------------- helpers


def _source(cell: Optional[Mapping[str, Any]]) -> str:
    if cell is None:
        return ""
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: Mapping[str, Any]) -> List[str]:
    return [str(tag) for tag in ((cell.get("metadata") or {}).get("tags") or [])]


def _is_injected(cell: Mapping[str, Any]) -> bool:
    return cell.get("cell_type") == "code" and INJECTED_PARAMETERS_TAG in _tags(cell)


def _without_injected(cells: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """Same positions, injected-parameter cells hidden from alignment."""
    return [{"cell_type": "injected"} if _is_injected(cell) else cell for cell in cells]


def _plain(value: Any) -> Any:
    """Strings (and lists of strings) without ANSI escape sequences; anything else as is."""
    if isinstance(value, str):
        return strip_ansi(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _clean_error(run: Optional[CellRun]) -> Optional[Dict[str, Any]]:
    """The cell's {ename, evalue, traceback} as plain text: IPython colours tracebacks with ANSI codes."""
    if run is None or not run.error:
        return None
    return {key: _plain(item) for key, item in run.error.items()}


def _error_message(error: Optional[Mapping[str, Any]]) -> str:
    if not error:
        return ""
    name, value = error.get("ename") or "", error.get("evalue") or ""
    return "%s: %s" % (name, value) if value else str(name)


def _merge_counts(target: Dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        if count:
            target[name] = target.get(name, 0) + count


def _runs_from_outputs(nb: Any) -> Dict[int, CellRun]:
    """Cell statuses of an already executed notebook (compare_only): error outputs mean error."""
    runs: Dict[int, CellRun] = {}
    for index, cell in enumerate(nb.get("cells") or []):
        if cell.get("cell_type") != "code":
            continue
        errors = [o for o in cell.get("outputs") or [] if o.get("output_type") == "error"]
        if errors:
            error = {k: errors[0].get(k) for k in ("ename", "evalue", "traceback")}
            runs[index] = CellRun(index=index, status=CellStatus.ERROR, error=error)
        elif cell_policy(cell).skip:
            runs[index] = CellRun(index=index, status=CellStatus.SKIPPED)
        else:
            runs[index] = CellRun(index=index, status=CellStatus.OK)
    return runs


def _stderr_text(outputs: Iterable[Mapping[str, Any]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")


def _source_diff(golden: str, actual: str) -> str:
    return "\n".join(difflib.unified_diff(golden.splitlines(), actual.splitlines(), "golden source",
                                          "executed source", n=2, lineterm=""))


# ----------------------------------------------------------------------------- cell verdicts


class _Comparer:
    """Runs the comparison ladder of one cell: exact, normalized, tolerant."""

    def __init__(self, options: CompareOptions, normalizer: Any):
        self.options = options
        self.exact = dataclasses.replace(options, strategy="exact")
        self.normalizer = normalizer

    def compare(self, result: CellResult, golden_outputs: Sequence[Any], actual_outputs: Sequence[Any],
                policy: CellPolicy, context: Mapping[str, Any]) -> None:
        expected, actual = structural(golden_outputs), structural(actual_outputs)
        result.expected, result.actual = report_outputs(expected), report_outputs(actual)
        stderr_policy = policy.stderr or self.options.stderr
        if stderr_policy == "forbid":
            written = _stderr_text(actual)
            if written.strip():
                result.verdict = Verdict.FAIL_OUTPUT
                result.message = "stderr output is forbidden by the stderr policy; the cell wrote: %s" % (
                    written.strip().splitlines()[0][:200])
                return

        first = compare_outputs(expected, actual, self.exact)
        if first.equal:
            result.verdict = Verdict.PASS
            return
        if self.options.strategy == "exact":
            result.verdict = Verdict.FAIL_OUTPUT
            result.message, result.diff = first.message, first.diff
            return

        fired: Dict[str, int] = {}
        if stderr_policy == "ignore_warnings":
            expected, removed_expected = strip_warnings(expected)
            actual, removed_actual = strip_warnings(actual)
            _merge_counts(fired, {STDERR_WARNINGS_RULE: removed_expected + removed_actual})
        expected, counts = self.normalizer.apply_counted(expected, context)
        _merge_counts(fired, counts)
        actual, counts = self.normalizer.apply_counted(actual, context)
        _merge_counts(fired, counts)
        result.expected, result.actual = report_outputs(expected), report_outputs(actual)
        result.rules_fired = fired

        second = compare_outputs(expected, actual, self.options, rtol=policy.rtol, atol=policy.atol)
        result.max_error = second.max_error
        if second.equal and not second.tolerant:
            result.verdict = Verdict.PASS_NORMALIZED
            result.message = "equal after normalization (%s)" % (
                ", ".join("%s x%d" % item for item in sorted(fired.items())) or "semantic comparison")
        elif second.equal:
            result.verdict = Verdict.PASS_TOLERANT
            result.message, result.diff = second.message, second.diff
        else:
            result.verdict = Verdict.FAIL_OUTPUT
            result.message, result.diff = second.message, second.diff


def _cell_result(pair: CellPair, run: Optional[CellRun], comparer: _Comparer,
                 outcome: Optional[ExecutionOutcome]) -> CellResult:
    actual, golden = pair.actual, pair.golden
    if actual is None:
        result = CellResult(index=None, golden_index=pair.golden_index, cell_id=golden.get("id"),
                            verdict=Verdict.MISSING, source=_source(golden))
        result.message = "golden cell %d has no counterpart in the executed notebook" % pair.golden_index
        result.expected = report_outputs(structural(golden.get("outputs") or []))
        return result

    result = CellResult(index=pair.actual_index, golden_index=pair.golden_index, cell_id=actual.get("id"),
                        verdict=Verdict.PASS, matched_by=pair.matched_by, source=_source(actual),
                        duration=run.duration if run else None, error=_clean_error(run))
    policy = cell_policy(actual)
    status = run.status if run is not None else CellStatus.NOT_RUN
    if policy.skip or status == CellStatus.SKIPPED:
        result.verdict, result.message = Verdict.SKIPPED, "skipped by the cell's tags or metadata"
        return result
    if status == CellStatus.TIMEOUT:
        result.verdict = Verdict.FAIL_TIMEOUT
        result.message = _error_message(result.error) or "the cell timed out"
        return result
    if status == CellStatus.KERNEL_DIED:
        result.verdict = Verdict.FAIL_KERNEL_DIED
        stderr = (outcome.kernel_stderr if outcome else "").strip()
        result.message = (_error_message(result.error) or "the kernel died while running this cell") + (
            "; kernel stderr: %s" % stderr[-1000:] if stderr else "")
        return result
    if status == CellStatus.NOT_RUN:
        result.verdict = Verdict.NOT_RUN
        result.message = "not run: an earlier cell failed or the notebook deadline passed"
        return result
    if status == CellStatus.ERROR and not policy.raises_exception:
        result.verdict = Verdict.FAIL_ERROR
        result.message = _error_message(result.error) or "the cell failed"
        result.actual = report_outputs(structural(actual.get("outputs") or []))
        return result
    if status == CellStatus.OK and policy.raises_exception:
        result.verdict = Verdict.FAIL_ERROR
        result.message = "expected an exception, but the cell ran without error"
        return result
    if golden is None:
        result.verdict = Verdict.EXTRA
        result.message = "executed cell %d has no counterpart in the golden notebook" % pair.actual_index
        result.actual = report_outputs(structural(actual.get("outputs") or []))
        return result
    if pair.source_changed:
        result.verdict = Verdict.SOURCE_CHANGED
        result.message = "the golden cell (matched by %s) has different source: the golden is stale" % pair.matched_by
        result.diff = _source_diff(_source(golden), _source(actual))
        result.expected = report_outputs(structural(golden.get("outputs") or []))
        result.actual = report_outputs(structural(actual.get("outputs") or []))
        return result
    if policy.ignore_output:
        result.verdict, result.message = Verdict.PASS, "outputs not compared (ignore_output policy)"
        return result
    if comparer.options.lax and not policy.check_output:
        result.verdict = Verdict.PASS
        result.message = "outputs not compared (lax mode: the cell is not marked NBVAL_CHECK_OUTPUT / check_output)"
        return result
    context = {"index": pair.actual_index, "cell_id": actual.get("id"), "tags": _tags(actual)}
    comparer.compare(result, golden.get("outputs") or [], actual.get("outputs") or [], policy, context)
    return result


def _injected_result(index: int, cell: Mapping[str, Any], run: Optional[CellRun]) -> CellResult:
    result = CellResult(index=index, golden_index=None, cell_id=cell.get("id"), verdict=Verdict.PASS,
                        source=_source(cell), duration=run.duration if run else None,
                        error=_clean_error(run), message="injected parameters (not compared)")
    status = run.status if run else CellStatus.NOT_RUN
    mapping = {CellStatus.ERROR: Verdict.FAIL_ERROR, CellStatus.TIMEOUT: Verdict.FAIL_TIMEOUT,
               CellStatus.KERNEL_DIED: Verdict.FAIL_KERNEL_DIED, CellStatus.NOT_RUN: Verdict.NOT_RUN}
    if status in mapping:
        result.verdict = mapping[status]
        result.message = _error_message(result.error) or "injected parameters cell: %s" % status.value
    return result


def _compare_notebook(item: _Notebook, executed: Any, runs: Dict[int, CellRun], comparer: _Comparer,
                      outcome: Optional[ExecutionOutcome]) -> List[Tuple[CellPair, CellResult]]:
    golden_cells = list(item.golden.get("cells") or []) if item.golden is not None else []
    actual_cells = list(executed.get("cells") or [])
    pairs = align(_without_injected(golden_cells), _without_injected(actual_cells),
                  item.golden_generated_ids, item.generated_ids)
    compared: List[Tuple[Optional[CellPair], CellResult]] = []
    for pair in pairs:
        run = runs.get(pair.actual_index) if pair.actual_index is not None else None
        compared.append((pair, _cell_result(pair, run, comparer, outcome)))
    # Injected-parameter cells take their executed position among the results.
    for index, cell in enumerate(actual_cells):
        if _is_injected(cell):
            at = next((i for i, (_pair, r) in enumerate(compared) if r.index is not None and r.index > index),
                      len(compared))
            compared.insert(at, (None, _injected_result(index, cell, runs.get(index))))
    item.result.cells = [result for _pair, result in compared]
    return [(pair, result) for pair, result in compared if pair is not None]


def _finish_verdict(item: _Notebook, outcome: Optional[ExecutionOutcome]) -> None:
    """Worst cell verdict; a notebook-level execution error makes it at least FAIL_ERROR."""
    result = item.result
    verdicts = [cell.verdict for cell in result.cells]
    if outcome is not None and outcome.error:
        result.error = outcome.error
        verdicts.append(Verdict.FAIL_ERROR)
    result.verdict = worst(verdicts)
    for cell in result.cells:
        _merge_counts(result.rules_fired, cell.rules_fired)


# ----------------------------------------------------------------------------- update_golden


def _disk_outputs(outputs: Sequence[Any]) -> List[Any]:
    """Outputs in the form nbformat writes them (multi-line strings split into lines)."""
    import nbformat  # the notebooks were read with it, so it is importable here

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(source="", outputs=copy.deepcopy(list(outputs))))
    return json.loads(nbformat.writes(nb, version=4))["cells"][0]["outputs"]


def _shaped_like(new: Any, model: Any) -> Any:
    """``new`` with the key order and string shape (one str / list of lines) of ``model``."""
    if isinstance(new, dict) and isinstance(model, dict):
        ordered = {key: _shaped_like(new[key], model[key]) for key in model if key in new}
        ordered.update((key, item) for key, item in new.items() if key not in ordered)
        return ordered
    if isinstance(new, list) and isinstance(model, str) and all(isinstance(line, str) for line in new):
        return "".join(new)
    return new


def _outputs_like(outputs: List[Any], cell: Mapping[str, Any], all_cells: Sequence[Any]) -> List[Any]:
    """New outputs written the way this golden file writes its outputs (for byte stability)."""
    old = [o for o in cell.get("outputs") or [] if isinstance(o, dict)]
    others = [o for c in all_cells if isinstance(c, dict) for o in c.get("outputs") or [] if isinstance(o, dict)]
    shaped = []
    for position, output in enumerate(outputs):
        kind = output.get("output_type")
        model = old[position] if position < len(old) and old[position].get("output_type") == kind else None
        model = model or next((o for o in old + others if o.get("output_type") == kind), None)
        shaped.append(_shaped_like(output, model) if model is not None else output)
    return shaped


def _disk_source(source: str, like: Any) -> Any:
    return source.splitlines(True) if isinstance(like, list) else source


def _json_style(text: str, data: Any) -> Optional[Dict[str, Any]]:
    """json.dumps arguments that reproduce ``text`` exactly, or None."""
    lines = text.split("\n", 2)
    indent: Optional[int] = None
    if len(lines) > 1 and lines[0].strip() == "{":
        indent = len(lines[1]) - len(lines[1].lstrip(" "))
    trailing = text[len(text.rstrip("\n")):]
    for sort_keys in (True, False):
        for ensure_ascii in (False, True):
            style = {"indent": indent, "sort_keys": sort_keys, "ensure_ascii": ensure_ascii,
                     "separators": (",", ": ") if indent is not None else (", ", ": ")}
            if json.dumps(data, **style) + trailing == text:
                style["trailing"] = trailing
                return style
    return None


def _write_text_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    handle, temp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except OSError:
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise


def _update_golden(item: _Notebook, executed: Any, compared: Sequence[Tuple[CellPair, CellResult]]) -> None:
    golden_path = item.golden_path or item.path
    if item.golden is None:
        write_notebook(executed, golden_path)
        item.result.golden_written = True
        item.result.warnings.append("golden notebook %s did not exist; it was written from this run" % golden_path)
        return
    updates = [(pair, result) for pair, result in compared
               if result.verdict in _FAILED_OUTPUT_VERDICTS and pair.golden is not None and pair.actual is not None]
    unaligned = sum(1 for _pair, result in compared if result.verdict in (Verdict.MISSING, Verdict.EXTRA))
    if unaligned:
        item.result.warnings.append(
            "update_golden does not add or remove cells: %d MISSING/EXTRA cell(s) left in %s" % (unaligned, golden_path))
    if not updates:
        return
    try:
        with open(golden_path, "r", encoding="utf-8-sig") as handle:
            text = handle.read()
        raw = json.loads(text)
        in_place = (isinstance(raw, dict) and raw.get("nbformat") == 4 and isinstance(raw.get("cells"), list)
                    and len(raw["cells"]) == len(item.golden.cells))
        # nbformat 4 files are edited as JSON, so untouched cells keep their bytes; older
        # formats (upgraded when read) are written back as nbformat 4.
        cells = raw["cells"] if in_place else item.golden.cells
        for pair, result in updates:
            cell = cells[pair.golden_index]
            outputs = copy.deepcopy(list(pair.actual.get("outputs") or []))
            cell["outputs"] = _outputs_like(_disk_outputs(outputs), cell, cells) if in_place else outputs
            if "execution_count" in cell or pair.actual.get("execution_count") is not None:
                cell["execution_count"] = pair.actual.get("execution_count")
            if result.verdict == Verdict.SOURCE_CHANGED:
                cell["source"] = _disk_source(_source(pair.actual), cell.get("source")) if in_place \
                    else _source(pair.actual)
        style = _json_style(text, json.loads(text)) if in_place else None
        if style is not None:
            trailing = style.pop("trailing")
            _write_text_atomically(golden_path, json.dumps(raw, **style) + trailing)
        elif in_place:
            write_notebook(notebook_from_dict(raw, golden_path), golden_path)
        else:
            write_notebook(item.golden, golden_path)
    except (OSError, ValueError, KeyError, IndexError, EngineError) as exc:
        item.result.warnings.append("could not update golden notebook %s: %s" % (golden_path, exc))
        return
    for _pair, result in updates:
        result.message += " (golden updated)"
    item.result.golden_written = True


# ----------------------------------------------------------------------------- the run


def _option_errors(options: ValidateOptions) -> List[str]:
    errors = []
    if options.mode not in MODES:
        errors.append("unknown mode %r; use one of %s" % (options.mode, ", ".join(MODES)))
    if options.compare.strategy not in STRATEGIES:
        errors.append("unknown comparison strategy %r; use one of %s" % (
            options.compare.strategy, ", ".join(STRATEGIES)))
    if options.compare.stderr not in STDERR_POLICIES:
        errors.append("unknown stderr policy %r; use one of %s" % (options.compare.stderr, ", ".join(STDERR_POLICIES)))
    return errors


def _executed_path(item: _Notebook, paths: Sequence[str], executed_dir: str) -> str:
    root = _common_root(paths)
    relative = os.path.relpath(os.path.abspath(item.path), root) if root else os.path.basename(item.path)
    return os.path.join(os.path.abspath(os.path.expanduser(executed_dir)), relative)


def _load(item: _Notebook, mode: str) -> None:
    """Read the notebook and its golden; errors mark the item failed."""
    try:
        item.notebook = read_notebook(item.path, generated_ids=item.generated_ids)
    except EngineError as exc:
        item.fail(str(exc))
        return
    if item.golden_path is None:
        item.golden = item.notebook
        item.golden_generated_ids = item.generated_ids
        return
    if not os.path.exists(item.golden_path):
        if mode == "update_golden":
            item.golden = None
            return
        item.fail("golden notebook not found: %s" % item.golden_path)
        return
    try:
        item.golden = read_notebook(item.golden_path, generated_ids=item.golden_generated_ids)
    except EngineError as exc:
        item.fail("golden notebook: %s" % exc)


def _evaluate(item: _Notebook, executed: Any, runs: Dict[int, CellRun], comparer: _Comparer,
              outcome: Optional[ExecutionOutcome], options: ValidateOptions, paths: Sequence[str]) -> None:
    result = item.result
    if outcome is not None:
        result.kernel = outcome.kernel_name
        result.kernel_stderr = (outcome.kernel_stderr or "")[-KERNEL_STDERR_LIMIT:]
        result.kernel_start_seconds = outcome.kernel_start_seconds
    try:
        compared = _compare_notebook(item, executed, runs, comparer, outcome)
        _finish_verdict(item, outcome)
        if options.executed_dir and outcome is not None:
            target = _executed_path(item, paths, options.executed_dir)
            try:
                write_notebook(executed, target)
                result.executed_path = target
            except EngineError as exc:
                result.warnings.append(str(exc))
        if options.mode == "update_golden" and (outcome is None or not outcome.error):
            _update_golden(item, executed, compared)
        elif options.mode == "update_golden":
            result.warnings.append("golden not updated: the notebook did not run to the end (%s)" % outcome.error)
    except EngineError as exc:
        item.fail(str(exc))
    except Exception as exc:  # pylint: disable=broad-except  # one notebook's unexpected problem must not stop the others
        item.fail("internal error while comparing this notebook: %s: %s" % (type(exc).__name__, exc))
    result.duration = outcome.duration if outcome is not None and outcome.duration is not None \
        else time.monotonic() - item.started


def _golden_paths(paths: Sequence[str], golden: GoldenSource) -> Tuple[List[Optional[str]], List[str]]:
    """Each notebook's golden file (None: stored outputs) and, per notebook, why it has none usable ("": fine)."""
    if _is_stored(golden):
        return [None] * len(paths), [""] * len(paths)
    if isinstance(golden, Mapping):
        golden = {_absolute(notebook): golden_path for notebook, golden_path in golden.items()}
    targets: List[Optional[str]] = []
    problems: List[str] = []
    for path in paths:
        try:
            targets.append(golden_for(path, paths, golden))
            problems.append("")
        except EngineError as exc:
            targets.append(None)
            problems.append(str(exc))
    # One golden file for two notebooks is a mistake (two files with the same name from different
    # directories given one by one): each is told which other notebook claims its golden.
    shared = _shared_goldens({_absolute(path): target for path, target in zip(paths, targets)})
    for position, path in enumerate(paths):
        others = shared.get(_absolute(path))
        if others and not problems[position] and (isinstance(golden, Mapping) or _golden_is_directory(str(golden))):
            problems[position] = (
                "golden notebook %s would also be the golden of %s; give each notebook its own golden (list the "
                "directory that holds them as one entry so their relative paths tell them apart)" % (
                    targets[position], ", ".join(others)))
    return targets, problems


def validate_notebooks(paths: Sequence[str], golden: GoldenSource, options: Optional[ValidateOptions] = None
                       ) -> RunResult:
    """Validate notebooks against their golden outputs; see the module docstring."""
    started = time.monotonic()
    options = options or ValidateOptions()
    paths = [str(path) for path in paths]
    stored = _is_stored(golden)
    golden_paths, golden_problems = _golden_paths(paths, golden)
    items = [_Notebook(i, path, golden_paths[i]) for i, path in enumerate(paths)]

    run_error = "; ".join(_option_errors(options))
    normalizer = None
    if not run_error:
        try:
            normalizer = Normalizer(options.compare)
        except EngineError as exc:
            run_error = str(exc)
    single_file = not stored and not isinstance(golden, Mapping) and not _golden_is_directory(str(golden))
    if not run_error and single_file and len(paths) > 1:
        run_error = ("a golden notebook file can only be used with a single notebook (%d given); "
                     "use a directory of golden notebooks" % len(paths))
    if not run_error and stored and options.mode == "compare_only":
        run_error = ("compare_only needs a golden notebook or directory: a notebook compared with its own "
                     "stored outputs always matches")

    for item in items:
        if run_error:
            item.fail(run_error)
        elif golden_problems[item.position]:
            item.fail(golden_problems[item.position])
            item.result.golden = golden_paths[item.position]
        else:
            _load(item, options.mode)

    comparer = _Comparer(options.compare, normalizer)
    ready = [item for item in items if item.result.error is None]
    if options.mode == "compare_only":
        for item in ready:
            _evaluate(item, item.notebook, _runs_from_outputs(item.notebook), comparer, None, options, paths)
    elif ready:
        _execute_and_evaluate(ready, comparer, options, paths)

    if normalizer is not None:
        never_fired = normalizer.warnings()
        for item in items:
            item.result.warnings.extend(never_fired)
    return RunResult(notebooks=[item.result for item in items], duration=time.monotonic() - started)


def _execute_and_evaluate(ready: List[_Notebook], comparer: _Comparer, options: ValidateOptions,
                          paths: Sequence[str]) -> None:
    # The executor runs a copy (the notebook object is not modified): with stored goldens
    # the outputs read from the file stay the golden.
    jobs = [(item.notebook, options.execution, item.path) for item in ready]
    pending = set(range(len(ready)))
    try:
        for job_index, outcome in execute_many(jobs, options.parallel):
            pending.discard(job_index)
            item = ready[job_index]
            item.started = time.monotonic()
            runs = {run.index: run for run in outcome.cells}
            _evaluate(item, outcome.notebook if outcome.notebook is not None else jobs[job_index][0],
                      runs, comparer, outcome, options, paths)
    except EngineError as exc:
        for index in pending:
            ready[index].fail(str(exc))
    except Exception as exc:  # pylint: disable=broad-except  # the executor failed as a whole: every notebook not yet reported fails
        for index in pending:
            ready[index].fail("execution failed: %s: %s" % (type(exc).__name__, exc))
