# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data model of the notebook engine: options, verdicts and results.

Plain dataclasses, no Ansible or Kubernetes imports: the engine runs in the
module on the controller and, shipped as files, inside validation pods.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

REPORT_SCHEMA_VERSION = "1.0"


class Verdict(str, enum.Enum):
    """Outcome of one cell; a notebook's verdict is its worst cell's."""

    SKIPPED = "SKIPPED"
    PASS = "PASS"
    PASS_NORMALIZED = "PASS_NORMALIZED"
    PASS_TOLERANT = "PASS_TOLERANT"
    NOT_RUN = "NOT_RUN"
    EXTRA = "EXTRA"
    MISSING = "MISSING"
    SOURCE_CHANGED = "SOURCE_CHANGED"
    FAIL_OUTPUT = "FAIL_OUTPUT"
    FAIL_ERROR = "FAIL_ERROR"
    FAIL_TIMEOUT = "FAIL_TIMEOUT"
    FAIL_KERNEL_DIED = "FAIL_KERNEL_DIED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def passed(self) -> bool:
        return self in (Verdict.PASS, Verdict.PASS_NORMALIZED, Verdict.PASS_TOLERANT, Verdict.SKIPPED)


# Declaration order above is the severity order, best first.
_SEVERITY = {v: i for i, v in enumerate(Verdict)}


def worst(verdicts, default: Verdict = Verdict.PASS) -> Verdict:
    """The most severe verdict of an iterable (``default`` when empty)."""
    result = None
    for verdict in verdicts:
        if result is None or verdict.severity > result.severity:
            result = verdict
    return default if result is None else result


class CellStatus(str, enum.Enum):
    """What happened to a cell when the kernel ran it (before any comparison)."""

    OK = "ok"
    ERROR = "error"            # error output, or an error reply without error output
    TIMEOUT = "timeout"        # per-cell timeout or the notebook deadline
    KERNEL_DIED = "kernel_died"
    NOT_RUN = "not_run"        # never reached (an earlier cell failed, or the deadline passed)
    SKIPPED = "skipped"        # skip-execution / NBVAL_SKIP: not sent to the kernel


class EngineError(Exception):
    """A problem with one notebook's input (corrupt file, unknown kernel, bad rule).

    The engine turns it into a notebook-level error; other notebooks still run.
    """


# ----------------------------------------------------------------------------- options


@dataclass
class ExecutionOptions:
    kernel_name: Optional[str] = None          # None: the notebook's kernelspec, else python3
    cell_timeout: Optional[float] = 60.0       # seconds per cell; None or <= 0: no limit
    timeout: Optional[float] = 600.0           # whole-notebook deadline in seconds; None: none
    startup_timeout: float = 60.0              # kernel start to first reply
    kernel_start_retries: int = 2              # extra attempts after a failed start
    parameters: Dict[str, Any] = field(default_factory=dict)  # papermill-compatible
    cwd: Optional[str] = None                  # working directory; default: the notebook's dir
    env: Dict[str, str] = field(default_factory=dict)


@dataclass
class Rule:
    """A user normalization rule: which outputs (selector) and what to do (action).

    action: ``replace`` (regex ``pattern`` -> ``replacement``), ``ignore`` (the
    selected outputs are not compared), ``drop_lines`` (lines matching ``pattern``
    are removed), ``sort_lines`` (lines sorted; for unordered prints).
    An empty selector field matches everything.
    """

    name: str
    action: str
    pattern: Optional[str] = None
    replacement: str = ""
    tags: List[str] = field(default_factory=list)
    cell_ids: List[str] = field(default_factory=list)
    indices: List[int] = field(default_factory=list)
    mime_types: List[str] = field(default_factory=list)
    streams: List[str] = field(default_factory=list)   # stdout / stderr


@dataclass
class CompareOptions:
    strategy: str = "normalized"               # exact | normalized | tolerant
    rtol: float = 1e-6
    atol: float = 1e-9
    scrubbers: List[str] = field(default_factory=lambda: ["default"])  # names; "default" = built-in set
    rules: List[Rule] = field(default_factory=list)
    image_threshold: float = 0.02              # perceptual difference allowed (0..1)
    max_payload_bytes: int = 1_000_000         # bigger payloads compared by hash
    stderr: str = "compare"                    # compare | ignore_warnings | forbid
    ignore_mime_types: List[str] = field(default_factory=list)
    lax: bool = False                          # nbval --nbval-lax: compare only cells marked check_output


@dataclass
class ValidateOptions:
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)
    compare: CompareOptions = field(default_factory=CompareOptions)
    mode: str = "compare"                      # compare | compare_only | update_golden
    parallel: int = 0                          # 0: number of cores
    executed_dir: Optional[str] = None         # where executed notebooks are written


# ----------------------------------------------------------------------------- execution


@dataclass
class CellRun:
    """One code cell as the kernel ran it."""

    index: int                                 # position in the notebook
    status: CellStatus
    duration: Optional[float] = None
    error: Optional[Dict[str, Any]] = None     # {ename, evalue, traceback}


@dataclass
class ExecutionOutcome:
    notebook: Any                              # the executed nbformat NotebookNode
    cells: List[CellRun] = field(default_factory=list)
    kernel_name: Optional[str] = None
    kernel_start_seconds: Optional[float] = None
    kernel_start_attempts: int = 1
    duration: Optional[float] = None
    kernel_stderr: str = ""
    error: Optional[str] = None                # notebook-level failure message, if any
    parameters_injected: bool = False


# ----------------------------------------------------------------------------- results


@dataclass
class CellResult:
    index: Optional[int]                       # position in the executed notebook (None: MISSING)
    golden_index: Optional[int]                # position in the golden notebook (None: EXTRA)
    cell_id: Optional[str]
    verdict: Verdict
    matched_by: Optional[str] = None           # id | source | position
    message: str = ""
    rules_fired: Dict[str, int] = field(default_factory=dict)
    max_error: Optional[float] = None          # largest numeric deviation seen (tolerant compare)
    diff: str = ""                             # minimal unified diff of the normalized outputs
    expected: List[Dict[str, Any]] = field(default_factory=list)  # normalized outputs, for reports
    actual: List[Dict[str, Any]] = field(default_factory=list)
    source: str = ""
    duration: Optional[float] = None
    error: Optional[Dict[str, Any]] = None

    def to_dict(self, include_outputs: bool = True) -> Dict[str, Any]:
        """Plain data; without ``include_outputs`` the ``expected`` / ``actual`` outputs are left out."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        if not include_outputs:
            del data["expected"], data["actual"]
        return data


@dataclass
class NotebookResult:
    path: str
    verdict: Verdict
    golden: Optional[str] = None
    cells: List[CellResult] = field(default_factory=list)
    error: Optional[str] = None                # notebook-level error (corrupt file, unknown kernel...)
    kernel: Optional[str] = None
    kernel_stderr: str = ""
    kernel_start_seconds: Optional[float] = None
    duration: Optional[float] = None
    executed_path: Optional[str] = None
    golden_written: bool = False               # update_golden wrote this golden file
    warnings: List[str] = field(default_factory=list)  # e.g. rules that never fired
    rules_fired: Dict[str, int] = field(default_factory=dict)

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for cell in self.cells:
            out[cell.verdict.value] = out.get(cell.verdict.value, 0) + 1
        return out

    def to_dict(self, include_outputs: bool = True) -> Dict[str, Any]:
        """Plain data; ``include_outputs=False`` leaves out each cell's outputs (a slim view)."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["cells"] = [c.to_dict(include_outputs) for c in self.cells]
        data["counts"] = self.counts()
        return data


@dataclass
class RunResult:
    notebooks: List[NotebookResult] = field(default_factory=list)
    duration: Optional[float] = None

    def summary(self) -> Dict[str, Any]:
        by_verdict = {v.value: 0 for v in Verdict}
        for nb in self.notebooks:
            by_verdict[nb.verdict.value] += 1
        passed = sum(1 for nb in self.notebooks if nb.verdict.passed)
        return {
            "total": len(self.notebooks),
            "passed": passed,
            "failed": len(self.notebooks) - passed,
            "verdicts": by_verdict,
        }

    def to_dict(self, include_outputs: bool = True) -> Dict[str, Any]:
        """The JSON report's data; ``include_outputs=False`` leaves out each cell's ``expected`` / ``actual``."""
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "summary": self.summary(),
            "duration": self.duration,
            "notebooks": [nb.to_dict(include_outputs) for nb in self.notebooks],
        }
