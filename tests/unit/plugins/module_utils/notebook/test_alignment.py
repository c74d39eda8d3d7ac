# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alignment of golden and executed cells: by id, then source hash, then position."""

from __future__ import annotations

from typing import List, Optional

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.alignment import align


def code(source: str, cell_id: Optional[str] = None) -> dict:
    cell = {"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
    if cell_id is not None:
        cell["id"] = cell_id
    return cell


def markdown(source: str) -> dict:
    return {"cell_type": "markdown", "source": source, "metadata": {}}


def summary(pairs) -> List[tuple]:
    return [(p.golden_index, p.actual_index, p.matched_by, p.source_changed) for p in pairs]


def test_identical_notebooks_match_by_id():
    cells = [code("a = 1", "c1"), markdown("# hi"), code("print(a)", "c2")]
    assert summary(align(cells, [dict(c) for c in cells])) == [(0, 0, "id", False), (2, 2, "id", False)]


def test_id_match_with_edited_source_is_source_changed():
    golden = [code("x = 1", "c1"), code("print(x)", "c2")]
    actual = [code("x = 2", "c1"), code("print(x)", "c2")]
    pairs = align(golden, actual)
    assert summary(pairs) == [(0, 0, "id", True), (1, 1, "id", False)]


def test_source_hash_matches_when_ids_differ_and_tolerates_trailing_whitespace():
    golden = [code("a = 1\n", "g1"), code("b = 2", "g2")]
    actual = [code("b = 2  ", "x2"), code("a = 1\r\n", "x1")]
    assert summary(align(golden, actual)) == [(1, 0, "source", False), (0, 1, "source", False)]


def test_duplicate_sources_pair_in_order():
    golden = [code("print(1)"), code("print(1)"), code("print(2)")]
    actual = [code("print(1)"), code("print(1)"), code("print(2)")]
    assert summary(align(golden, actual)) == [
        (0, 0, "source", False), (1, 1, "source", False), (2, 2, "source", False)]


def test_position_pairs_within_the_same_gap():
    golden = [code("import os"), code("old = 1"), code("print('end')")]
    actual = [code("import os"), code("new = 2"), code("print('end')")]
    assert summary(align(golden, actual)) == [
        (0, 0, "source", False), (1, 1, "position", True), (2, 2, "source", False)]


def test_removed_and_added_cells_in_different_gaps_are_missing_and_extra():
    golden = [code("a"), code("b"), code("c")]
    actual = [code("a"), code("c"), code("d")]
    pairs = align(golden, actual)
    assert summary(pairs) == [
        (0, 0, "source", False), (1, None, None, False), (2, 1, "source", False), (None, 2, None, False)]
    assert pairs[1].missing and not pairs[1].extra
    assert pairs[3].extra and not pairs[3].missing


def test_nothing_matches_pairs_in_order_and_leftovers_are_extra():
    golden = [code("a"), code("b")]
    actual = [code("x"), code("y"), code("z")]
    assert summary(align(golden, actual)) == [
        (0, 0, "position", True), (1, 1, "position", True), (None, 2, None, False)]


def test_missing_cells_keep_golden_order_and_leading_missing_goes_first():
    golden = [code("m1"), code("m2"), code("keep"), code("m3"), code("m4")]
    actual = [code("keep")]
    assert summary(align(golden, actual)) == [
        (0, None, None, False), (1, None, None, False), (2, 0, "source", False),
        (3, None, None, False), (4, None, None, False)]


def test_empty_golden_makes_everything_extra_and_markdown_is_ignored():
    actual = [markdown("text"), code("a"), code("b")]
    assert summary(align([], actual)) == [(None, 1, None, False), (None, 2, None, False)]
    assert summary(align([markdown("only text")], [])) == []


def test_list_sources_are_joined():
    golden = [{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {}}]
    actual = [code("a = 1\nb = 2")]
    assert summary(align(golden, actual)) == [(0, 0, "source", False)]


def test_every_cell_appears_once_with_reordering():
    golden = [code("a", "1"), code("b", "2"), code("c", "3"), code("d", "4")]
    actual = [code("c", "3"), code("a", "1"), code("e", "5"), code("b", "2")]
    pairs = align(golden, actual)
    assert sorted(p.golden_index for p in pairs if p.golden_index is not None) == [0, 1, 2, 3]
    assert sorted(p.actual_index for p in pairs if p.actual_index is not None) == [0, 1, 2, 3]
    by_actual = {p.actual_index: p for p in pairs if p.actual_index is not None}
    assert by_actual[0].golden_index == 2 and by_actual[1].golden_index == 0
    assert by_actual[3].golden_index == 1
    # "e" follows "a" (golden 0) in the executed notebook; "d" follows "c" (golden 2): different gaps.
    assert by_actual[2].extra
    assert [p.golden_index for p in pairs if p.missing] == [3]


def test_real_ids_removed_and_added_in_the_same_gap_are_missing_and_extra():
    golden = [code("a", "a"), code("old = 1", "b"), code("c", "c")]
    actual = [code("a", "a"), code("new = 2", "x"), code("c", "c")]
    pairs = align(golden, actual)
    assert summary(pairs) == [
        (0, 0, "id", False), (1, None, None, False), (None, 1, None, False), (2, 2, "id", False)]
    assert pairs[1].missing and pairs[2].extra


def test_generated_ids_on_either_side_allow_position_pairing():
    golden = [code("a", "a"), code("old = 1", "b"), code("c", "c")]
    # the executed notebook had no ids: they were generated when it was read
    actual = [code("a", "g1"), code("new = 2", "g2"), code("c", "g3")]
    expected = [(0, 0, "source", False), (1, 1, "position", True), (2, 2, "source", False)]
    assert summary(align(golden, actual, actual_generated_ids={"g1", "g2", "g3"})) == expected
    assert summary(align(actual, golden, golden_generated_ids={"g1", "g2", "g3"})) == expected
    # without knowing they were generated, they are real ids that do not match
    assert summary(align(golden, actual)) == [
        (0, 0, "source", False), (1, None, None, False), (None, 1, None, False), (2, 2, "source", False)]


def test_real_id_cell_pairs_by_position_with_the_next_cell_that_allows_it():
    golden = [code("keep", "k"), code("old = 1", "real"), code("older = 0", "gen")]
    actual = [code("keep", "k"), code("new = 2", "other")]
    pairs = align(golden, actual, golden_generated_ids={"gen"})
    assert summary(pairs) == [(0, 0, "id", False), (1, None, None, False), (2, 1, "position", True)]
