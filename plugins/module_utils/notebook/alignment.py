# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pairing the code cells of a golden notebook with those of an executed notebook.

Three passes, each over the cells the previous passes left unmatched:

1. by cell id (nbformat 4.5+ ``id``), first unmatched cell with the same id;
2. by source hash (line endings and trailing whitespace normalized), in order;
3. by position, only for cells whose id is not a real one: the remaining cells
   are paired in order *within the same gap* between cells matched by the first
   two passes, provided at least one of the two has no id or an id that was
   generated when the notebook was read (``*_generated_ids``, from
   ``nbio.read_notebook``: notebooks older than nbformat 4.5 have no ids). A gap
   is named by the nearest matched golden cell before it, so golden
   ``[A, B, C]`` vs executed ``[A, X, C]`` pairs ``B`` with ``X``
   (``source_changed``), while golden ``[A, B, C]`` vs executed ``[A, C, D]``
   gives ``B`` MISSING and ``D`` EXTRA. When both cells carry real ids, the
   golden cell's id is absent from the executed notebook and the other's from
   the golden: the cell was removed and another added, so ``B`` is MISSING and
   ``X`` EXTRA even in the same gap.

Only code cells are aligned; indices in the result are positions in the cell
lists given (so ``nb.cells`` indices when whole notebooks' cells are passed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Sequence, Tuple

MATCHED_BY_ID = "id"
MATCHED_BY_SOURCE = "source"
MATCHED_BY_POSITION = "position"


@dataclass
class CellPair:
    """One golden cell and its executed counterpart (either may be missing)."""

    golden: Optional[Mapping[str, Any]]
    actual: Optional[Mapping[str, Any]]
    golden_index: Optional[int]
    actual_index: Optional[int]
    matched_by: Optional[str] = None        # id | source | position; None when unmatched
    source_changed: bool = False

    @property
    def missing(self) -> bool:
        """A golden cell with no executed counterpart."""
        return self.actual is None

    @property
    def extra(self) -> bool:
        """An executed cell with no golden counterpart."""
        return self.golden is None


def source_text(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    source = cell.get("source") or ""
    if isinstance(source, list):
        source = "".join(source)
    return str(source)


def normalized_source(cell: Mapping[str, Any]) -> str:
    """Source with line endings and trailing whitespace normalized (editors differ there)."""
    lines = source_text(cell).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def source_hash(cell: Mapping[str, Any]) -> str:
    return hashlib.sha256(normalized_source(cell).encode("utf-8")).hexdigest()


def _code_cells(cells: Sequence[Mapping[str, Any]]) -> List[int]:
    return [i for i, cell in enumerate(cells) if cell.get("cell_type", "code") == "code"]


def _has_real_id(cell: Mapping[str, Any], generated_ids: AbstractSet[str]) -> bool:
    cell_id = cell.get("id")
    return bool(cell_id) and str(cell_id) not in generated_ids


def align(golden_cells: Sequence[Mapping[str, Any]], actual_cells: Sequence[Mapping[str, Any]],
          golden_generated_ids: AbstractSet[str] = frozenset(),
          actual_generated_ids: AbstractSet[str] = frozenset()) -> List[CellPair]:
    """Pair golden and executed code cells; see the module docstring for the rules.

    ``golden_generated_ids`` / ``actual_generated_ids``: ids that were not in
    the files but made up when they were read; such cells (and cells without an
    id) may be paired by position. The result lists every code cell of both
    sides exactly once, in executed order, with each MISSING golden cell placed
    after the pair holding the matched golden cell that precedes it.
    """
    golden_code = _code_cells(golden_cells)
    actual_code = _code_cells(actual_cells)
    partner_of_actual: Dict[int, Tuple[int, str]] = {}   # actual index -> (golden index, matched_by)
    matched_golden: Dict[int, int] = {}                  # golden index -> actual index

    def pair(g: int, a: int, how: str) -> None:
        partner_of_actual[a] = (g, how)
        matched_golden[g] = a

    # 1. by id
    golden_by_id: Dict[str, List[int]] = {}
    for g in golden_code:
        cell_id = golden_cells[g].get("id")
        if cell_id:
            golden_by_id.setdefault(str(cell_id), []).append(g)
    for a in actual_code:
        cell_id = actual_cells[a].get("id")
        candidates = golden_by_id.get(str(cell_id)) if cell_id else None
        if candidates:
            pair(candidates.pop(0), a, MATCHED_BY_ID)

    # 2. by source hash, in order
    golden_by_hash: Dict[str, List[int]] = {}
    for g in golden_code:
        if g not in matched_golden:
            golden_by_hash.setdefault(source_hash(golden_cells[g]), []).append(g)
    for a in actual_code:
        if a in partner_of_actual:
            continue
        candidates = golden_by_hash.get(source_hash(actual_cells[a]))
        if candidates:
            pair(candidates.pop(0), a, MATCHED_BY_SOURCE)

    # 3. by position, within the gap after the same matched golden cell
    def golden_gap(g: int) -> int:
        previous = [m for m in golden_code if m < g and m in matched_golden]
        return previous[-1] if previous else -1

    def actual_gap(a: int) -> int:
        previous = [m for m in actual_code if m < a and m in partner_of_actual]
        return partner_of_actual[previous[-1]][0] if previous else -1

    # Gaps are fixed by the id / source matches before any position match is made.
    waiting_golden: Dict[int, List[int]] = {}
    for g in golden_code:
        if g not in matched_golden:
            waiting_golden.setdefault(golden_gap(g), []).append(g)
    waiting_actual = [(a, actual_gap(a)) for a in actual_code if a not in partner_of_actual]
    for a, gap in waiting_actual:
        candidates = waiting_golden.get(gap) or []
        actual_is_real = _has_real_id(actual_cells[a], actual_generated_ids)
        # Two real ids that did not match: a removed cell and an added one, not one cell edited.
        usable = [g for g in candidates
                  if not (actual_is_real and _has_real_id(golden_cells[g], golden_generated_ids))]
        if usable:
            candidates.remove(usable[0])
            pair(usable[0], a, MATCHED_BY_POSITION)

    # Assemble in executed order.
    pairs: List[CellPair] = []
    for a in actual_code:
        if a in partner_of_actual:
            g, how = partner_of_actual[a]
            changed = how != MATCHED_BY_SOURCE and normalized_source(golden_cells[g]) != normalized_source(
                actual_cells[a]
            )
            pairs.append(CellPair(golden_cells[g], actual_cells[a], g, a, how, changed))
        else:
            pairs.append(CellPair(None, actual_cells[a], None, a))

    for g in golden_code:
        if g in matched_golden:
            continue
        anchor = golden_gap(g)
        position = 0
        if anchor >= 0:
            position = next(i for i, p in enumerate(pairs) if p.golden_index == anchor) + 1
        # after earlier MISSING cells inserted at the same place
        while position < len(pairs) and pairs[position].actual is None:
            position += 1
        pairs.insert(position, CellPair(golden_cells[g], None, g, None))
    return pairs
