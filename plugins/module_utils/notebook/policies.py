# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-cell policies read from tags and cell metadata.

Understands nbval's markers as tags (nbval's ``nbval-ignore-output`` spelling or
``NBVAL_IGNORE_OUTPUT``) or as ``# NBVAL_*`` comment lines in the source (any
line, as nbval reads them; the marker is the comment's first word), nbclient's
``raises-exception`` / ``skip-execution`` tags, and our own ``metadata.nbvalidate``
block::

    {"nbvalidate": {"skip": false, "ignore_output": false, "check_output": false,
                    "raises_exception": false, "stderr": "compare|ignore_warnings|forbid",
                    "rtol": 0.01, "atol": 0.0}}

``check_output`` matters in lax mode (``CompareOptions.lax``), where only the
cells that ask for it are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

NBVAL_MARKERS = (
    "NBVAL_IGNORE_OUTPUT",
    "NBVAL_CHECK_OUTPUT",
    "NBVAL_RAISES_EXCEPTION",
    "NBVAL_SKIP",
)
# nbval's old name for NBVAL_IGNORE_OUTPUT, still honoured by nbval
_LEGACY_MARKERS = {"PYTEST_VALIDATE_IGNORE_OUTPUT": "NBVAL_IGNORE_OUTPUT"}
STDERR_POLICIES = ("compare", "ignore_warnings", "forbid")


@dataclass(frozen=True)
class CellPolicy:
    skip: bool = False                 # not executed, not compared (SKIPPED)
    raises_exception: bool = False     # an error is expected; no error is a failure
    ignore_output: bool = False        # executed, outputs not compared
    check_output: bool = False         # compared even when the run default is to ignore outputs
    stderr: Optional[str] = None       # overrides CompareOptions.stderr
    rtol: Optional[float] = None       # overrides CompareOptions.rtol for this cell
    atol: Optional[float] = None


def _as_marker(word: str) -> Optional[str]:
    """The NBVAL_* marker a tag or comment word names (``nbval-skip`` and ``NBVAL_SKIP`` alike), or None."""
    name = word.strip().upper().replace("-", "_")
    name = _LEGACY_MARKERS.get(name, name)
    return name if name in NBVAL_MARKERS else None


def _markers(cell: Mapping[str, Any]) -> set:
    metadata = cell.get("metadata") or {}
    tags = metadata.get("tags") or []
    found = set(str(tag) for tag in tags) if isinstance(tags, list) else set()
    for tag in list(found):
        marker = _as_marker(tag)
        if marker:
            found.add(marker)
    source = cell.get("source") or ""
    if isinstance(source, list):
        source = "".join(source)
    for line in str(source).splitlines():
        line = line.strip()
        if not line.startswith("#"):
            continue
        words = line.lstrip("#").split()
        word = words[0] if words else ""
        if word in NBVAL_MARKERS or word in _LEGACY_MARKERS:   # comments use nbval's exact spelling
            found.add(_LEGACY_MARKERS.get(word, word))
    return found


def cell_policy(cell: Mapping[str, Any]) -> CellPolicy:
    """The policy of one cell (a dict-like nbformat cell)."""
    markers = _markers(cell)
    metadata = cell.get("metadata") or {}
    own = metadata.get("nbvalidate") or {}
    if not isinstance(own, Mapping):
        own = {}

    stderr = own.get("stderr")
    if stderr not in STDERR_POLICIES:
        stderr = None

    def number(key: str) -> Optional[float]:
        value = own.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    return CellPolicy(
        skip=bool(own.get("skip")) or "NBVAL_SKIP" in markers or "skip-execution" in markers,
        raises_exception=bool(own.get("raises_exception"))
        or "NBVAL_RAISES_EXCEPTION" in markers
        or "raises-exception" in markers,
        ignore_output=bool(own.get("ignore_output")) or "NBVAL_IGNORE_OUTPUT" in markers,
        check_output=bool(own.get("check_output")) or "NBVAL_CHECK_OUTPUT" in markers,
        stderr=stderr,
        rtol=number("rtol"),
        atol=number("atol"),
    )
