# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MIME-aware output comparison (pure logic, in-memory outputs)."""

from __future__ import annotations

import base64
import io

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.comparison import (
    canonical_svg,
    compare_outputs,
    parse_html,
    report_outputs,
    richest_mime,
)
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import CompareOptions


def stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def result(data: dict, kind: str = "execute_result") -> dict:
    output = {"output_type": kind, "data": data, "metadata": {}}
    if kind == "execute_result":
        output["execution_count"] = 1
    return output


def error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": ["..."]}


TOLERANT = CompareOptions(strategy="tolerant", rtol=1e-6, atol=1e-9)
NORMALIZED = CompareOptions(strategy="normalized")
EXACT = CompareOptions(strategy="exact")


# ----------------------------------------------------------------------------- text


def test_identical_text_is_equal_without_tolerance_or_diff():
    outcome = compare_outputs([stream("hello 1.5\n")], [stream("hello 1.5\n")], NORMALIZED)
    assert (outcome.equal, outcome.tolerant, outcome.max_error, outcome.diff) == (True, False, None, "")


def test_float_off_by_1e9_passes_tolerant_and_reports_max_error():
    outcome = compare_outputs([stream("loss 0.3333333333\n")], [stream("loss 0.3333333343\n")], TOLERANT)
    assert outcome.equal and outcome.tolerant
    assert outcome.max_error == pytest.approx(1e-9, rel=1e-3)
    assert "max error" in outcome.message
    assert "-loss 0.3333333333" in outcome.diff and "+loss 0.3333333343" in outcome.diff


def test_same_float_difference_fails_without_tolerance():
    outcome = compare_outputs([stream("loss 0.3333333333\n")], [stream("loss 0.3333333343\n")], NORMALIZED)
    assert not outcome.equal
    assert "line 1" in outcome.message and "stdout" in outcome.message


def test_number_beyond_tolerance_fails_with_the_error():
    outcome = compare_outputs([stream("x = 1.0 y = 2.0")], [stream("x = 1.0 y = 2.5")], TOLERANT)
    assert not outcome.equal and not outcome.tolerant
    assert outcome.max_error == pytest.approx(0.5)
    assert "2.5" in outcome.message and "allowed" in outcome.message


def test_words_must_match_exactly_even_with_tolerance():
    outcome = compare_outputs([stream("accuracy 0.9")], [stream("accurazy 0.9")], TOLERANT)
    assert not outcome.equal
    assert "accurazy" in outcome.diff


def test_relative_tolerance_scales_with_expected_value():
    options = CompareOptions(strategy="tolerant", rtol=0.01, atol=0.0)
    assert compare_outputs([stream("1000")], [stream("1009")], options).equal
    assert not compare_outputs([stream("1000")], [stream("1011")], options).equal


def test_per_cell_tolerance_applies_under_normalized_but_never_exact():
    expected, actual = [stream("0.5")], [stream("0.51")]
    assert compare_outputs(expected, actual, NORMALIZED, rtol=0.1).equal
    assert not compare_outputs(expected, actual, NORMALIZED).equal
    assert not compare_outputs(expected, actual, EXACT, rtol=0.1).equal


def test_scientific_and_decimal_notation_compare_as_numbers():
    assert compare_outputs([stream("1e-09")], [stream("0.000000001")], TOLERANT).equal


# ----------------------------------------------------------------------------- structure


def test_different_output_counts_fail_with_a_clear_message():
    outcome = compare_outputs([stream("a\n")], [stream("a\n"), stream("warn\n", "stderr")], NORMALIZED)
    assert not outcome.equal
    assert "expected 1 output, got 2" in outcome.message and "stderr" in outcome.message
    assert "+warn" in outcome.diff


def test_different_output_types_fail_with_a_clear_message():
    outcome = compare_outputs([stream("3\n")], [result({"text/plain": "3"})], NORMALIZED)
    assert not outcome.equal
    assert "expected stream (stdout), got execute_result" in outcome.message


def test_stdout_vs_stderr_is_a_type_difference():
    outcome = compare_outputs([stream("x")], [stream("x", "stderr")], NORMALIZED)
    assert not outcome.equal and "stream (stderr)" in outcome.message


def test_errors_compare_name_and_value_not_traceback():
    same = compare_outputs([error("ValueError", "bad 1")],
                           [dict(error("ValueError", "bad 1"), traceback=["other"])], NORMALIZED)
    assert same.equal
    other = compare_outputs([error("ValueError", "bad")], [error("KeyError", "bad")], NORMALIZED)
    assert not other.equal and "KeyError" in other.message


def test_no_outputs_on_both_sides_is_equal():
    assert compare_outputs([], [], EXACT).equal


# ----------------------------------------------------------------------------- mime selection


def test_richest_mime_order():
    assert richest_mime(["text/plain", "text/html"]) == "text/html"
    assert richest_mime(["text/plain", "image/png", "text/html"]) == "image/png"
    assert richest_mime(["text/plain", "application/vnd.plotly.v1+json", "text/html"]) == \
        "application/vnd.plotly.v1+json"
    assert richest_mime(["text/plain", "application/x-custom"]) == "application/x-custom"
    assert richest_mime([]) is None


def test_richest_shared_mime_is_compared():
    # text/plain reprs differ, but the shared richest type (html) is equal: pass.
    expected = result({"text/plain": "<obj at 1>", "text/html": "<b>same</b>"})
    actual = result({"text/plain": "<obj at 2>", "text/html": "<b>same</b>", "text/markdown": "**same**"})
    assert compare_outputs([expected], [actual], NORMALIZED).equal


def test_expected_rich_type_missing_on_actual_side_fails():
    expected = result({"text/plain": "<Figure>", "image/png": _png_b64(0)}, "display_data")
    actual = result({"text/plain": "<Figure>"}, "display_data")
    outcome = compare_outputs([expected], [actual], NORMALIZED)
    assert not outcome.equal
    assert "expected image/png, got only text/plain" in outcome.message


def test_ignored_mime_types_and_output_types_are_not_compared():
    options = CompareOptions(strategy="normalized", ignore_mime_types=["text/h*", "stderr"])
    expected = [result({"text/plain": "1", "text/html": "<i>a</i>"})]
    actual = [result({"text/plain": "1", "text/html": "<i>b</i>"}), stream("noise", "stderr")]
    assert compare_outputs(expected, actual, options).equal


def test_unknown_types_by_hash():
    same = compare_outputs([result({"application/x-thing": "AAAA"})], [result({"application/x-thing": "AAAA"})])
    assert same.equal
    other = compare_outputs([result({"application/x-thing": "AAAA"})], [result({"application/x-thing": "BBBB"})])
    assert not other.equal and "hash" in other.message


def test_payload_over_limit_is_compared_by_hash():
    options = CompareOptions(strategy="tolerant", max_payload_bytes=10)
    outcome = compare_outputs([stream("0.1 " * 10)], [stream("0.1 " * 10)], options)
    assert outcome.equal
    big_expected = [result({"text/plain": "value 1.0000000001 " * 3})]
    big_actual = [result({"text/plain": "value 1.0000000002 " * 3})]
    outcome = compare_outputs(big_expected, big_actual, options)
    assert not outcome.equal and "max_payload_bytes" in outcome.message


# ----------------------------------------------------------------------------- json


def test_json_by_value_ignores_key_order():
    expected = result({"application/json": {"a": 1, "b": [1, 2, {"c": "x"}]}})
    actual = result({"application/json": {"b": [1, 2, {"c": "x"}], "a": 1}})
    outcome = compare_outputs([expected], [actual], EXACT)
    assert outcome.equal and not outcome.tolerant


def test_json_numbers_with_tolerance_and_clear_path_on_failure():
    expected = result({"application/json": {"metrics": {"auc": 0.91, "n": 10}}})
    close = result({"application/json": {"metrics": {"auc": 0.91 + 1e-10, "n": 10}}})
    far = result({"application/json": {"metrics": {"auc": 0.95, "n": 10}}})
    assert compare_outputs([expected], [close], TOLERANT).tolerant
    outcome = compare_outputs([expected], [far], TOLERANT)
    assert not outcome.equal and "$.metrics.auc" in outcome.message
    missing = compare_outputs([expected], [result({"application/json": {"metrics": {"auc": 0.91}}})], TOLERANT)
    assert "missing keys 'n'" in missing.message


def test_vendor_json_is_compared_by_value():
    expected = result({"application/vnd.custom+json": {"x": [1, 2]}, "text/plain": "a"})
    actual = result({"application/vnd.custom+json": {"x": [1, 3]}, "text/plain": "a"})
    outcome = compare_outputs([expected], [actual], NORMALIZED)
    assert not outcome.equal and "$.x[1]" in outcome.message


# ----------------------------------------------------------------------------- html

TABLE = """<div><style scoped>.df {{ color: red }} #T_{uid} td {{}}</style>
<table border="1" class="dataframe" id="T_{uid}">
  <thead><tr><th></th><th>name</th><th>score</th></tr></thead>
  <tbody>
    <tr><th>0</th><td>alice</td><td>{a}</td></tr>
    <tr><th>1</th><td>bob</td><td>{b}</td></tr>
  </tbody>
</table>
<p>2 rows × 2 columns</p></div>"""


def test_html_tables_parse_into_headers_and_cells():
    tables, text = parse_html(TABLE.format(uid="x", a="0.5", b="0.25"))
    assert tables == [[
        [(True, ""), (True, "name"), (True, "score")],
        [(True, "0"), (False, "alice"), (False, "0.5")],
        [(True, "1"), (False, "bob"), (False, "0.25")],
    ]]
    assert text == "2 rows × 2 columns"


def test_html_tables_ignore_attributes_and_styles():
    expected = result({"text/html": TABLE.format(uid="abc", a="0.5", b="0.25")})
    actual = result({"text/html": TABLE.format(uid="def", a="0.5", b="0.25")})
    outcome = compare_outputs([expected], [actual], EXACT)
    assert outcome.equal and not outcome.tolerant


def test_html_table_numeric_cells_use_tolerance():
    expected = result({"text/html": TABLE.format(uid="a", a="0.5", b="0.25")})
    close = result({"text/html": TABLE.format(uid="a", a="0.5000000001", b="0.25")})
    far = result({"text/html": TABLE.format(uid="a", a="0.5", b="0.75")})
    assert compare_outputs([expected], [close], TOLERANT).tolerant
    outcome = compare_outputs([expected], [far], TOLERANT)
    assert not outcome.equal
    assert "table 1 row 3 column 3" in outcome.message
    assert "| *1* | bob | 0.75 |" in outcome.diff


def test_html_table_shape_change_fails():
    expected = result({"text/html": "<table><tr><td>1</td></tr></table>"})
    actual = result({"text/html": "<table><tr><td>1</td></tr><tr><td>2</td></tr></table>"})
    outcome = compare_outputs([expected], [actual], TOLERANT)
    assert not outcome.equal and "expected 1 rows, got 2" in outcome.message


def test_non_table_html_by_normalized_text():
    expected = result({"text/html": "<p>Hello   <b>world</b></p>"})
    same = result({"text/html": "<div>Hello\n<em>world</em></div>"})
    other = result({"text/html": "<p>Hello there</p>"})
    assert compare_outputs([expected], [same], EXACT).equal
    assert not compare_outputs([expected], [other], EXACT).equal


# ----------------------------------------------------------------------------- images


def _png(shift: int = 0, size=(200, 100), line_width: int = 3) -> bytes:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow is needed to draw test images")
    from PIL import ImageDraw

    image = image_module.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([10, 10, size[0] - 10, size[1] - 10], outline="black")
    draw.line([(20, 80 - shift), (180, 20 - shift)], fill="blue", width=line_width)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_b64(shift: int = 0, **kwargs) -> str:
    return base64.b64encode(_png(shift, **kwargs)).decode("ascii")


def _figure(payload: str) -> dict:
    return result({"image/png": payload, "text/plain": "<Figure size 200x100 with 1 Axes>"}, "display_data")


def test_identical_images_are_equal_even_when_base64_is_wrapped():
    payload = _png_b64()
    wrapped = "\n".join(payload[i:i + 76] for i in range(0, len(payload), 76))
    outcome = compare_outputs([_figure(payload)], [_figure(wrapped)], EXACT)
    assert outcome.equal and not outcome.tolerant


def test_nearly_identical_images_pass_with_the_difference_reported():
    expected = _png_b64(line_width=3)
    actual = _png_b64(line_width=4)    # a rendering detail: thicker line
    outcome = compare_outputs([_figure(expected)], [_figure(actual)], NORMALIZED)
    assert outcome.equal and outcome.tolerant
    assert outcome.max_error is not None and outcome.max_error <= NORMALIZED.image_threshold
    assert "image difference" in outcome.message


def test_image_threshold_is_configurable():
    expected, actual = _figure(_png_b64(0)), _figure(_png_b64(2))   # a 2 px shift on a 200 px image
    assert not compare_outputs([expected], [actual], NORMALIZED).equal
    loose = compare_outputs([expected], [actual], CompareOptions(strategy="normalized", image_threshold=0.2))
    assert loose.equal and loose.tolerant and 0 < loose.max_error <= 0.2


def test_moved_curve_fails_perceptual_comparison():
    outcome = compare_outputs([_figure(_png_b64(0))], [_figure(_png_b64(15))], NORMALIZED)
    assert not outcome.equal
    assert outcome.max_error > NORMALIZED.image_threshold
    assert "image difference" in outcome.message


def test_images_by_hash_under_exact():
    outcome = compare_outputs([_figure(_png_b64(0, line_width=3))], [_figure(_png_b64(0, line_width=4))], EXACT)
    assert not outcome.equal and "by hash" in outcome.message


def test_other_aspect_ratio_fails():
    outcome = compare_outputs([_figure(_png_b64(0, size=(200, 100)))], [_figure(_png_b64(0, size=(300, 100)))],
                              NORMALIZED)
    assert not outcome.equal and outcome.max_error == 1.0 and "size differs" in outcome.message


def test_undecodable_image_falls_back_to_hash():
    outcome = compare_outputs([_figure("bm90IGFuIGltYWdl")], [_figure("YWxzbyBub3Q=")], NORMALIZED)
    assert not outcome.equal and "cannot decode image" in outcome.message


# ----------------------------------------------------------------------------- svg

SVG = """<?xml version="1.0" encoding="utf-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{w}" height="10">
 <metadata><rdf>created {date}</rdf></metadata>
 <defs><path id="{pid}" d="M 0 0 L 1 1"/></defs>
 <!-- a comment -->
 <g   {attrs}>
   <use xlink:href="#{pid}" x="{x}"/>
 </g>
</svg>"""


def test_svg_canonical_form_ignores_ids_order_whitespace_metadata():
    left = SVG.format(w=10, date="2024-01-01", pid="m1a2b3", attrs='fill="red" clip-path="url(#p1)"', x="1.5")
    right = SVG.format(w=10, date="2025-06-30", pid="mffee0", attrs='clip-path="url(#p1)"  fill="red"', x="1.5")
    assert canonical_svg(left) == canonical_svg(right)
    assert 'xlink:href="#id1"' in canonical_svg(left)
    outcome = compare_outputs([result({"image/svg+xml": left})], [result({"image/svg+xml": right})], EXACT)
    assert outcome.equal


def test_svg_real_change_fails_and_coordinates_use_tolerance():
    base = SVG.format(w=10, date="d", pid="a", attrs='fill="red"', x="1.5")
    moved = SVG.format(w=10, date="d", pid="a", attrs='fill="red"', x="1.5000000001")
    recolored = SVG.format(w=10, date="d", pid="a", attrs='fill="blue"', x="1.5")
    assert compare_outputs([result({"image/svg+xml": base})], [result({"image/svg+xml": moved})], TOLERANT).tolerant
    outcome = compare_outputs([result({"image/svg+xml": base})], [result({"image/svg+xml": recolored})], TOLERANT)
    assert not outcome.equal and "canonical SVG" in outcome.message


# ----------------------------------------------------------------------------- diff and reports


def test_diff_is_minimal():
    lines_expected = "".join("line %d\n" % i for i in range(100))
    lines_actual = lines_expected.replace("line 50\n", "line fifty\n")
    outcome = compare_outputs([stream(lines_expected)], [stream(lines_actual)], NORMALIZED)
    diff_lines = outcome.diff.splitlines()
    assert "-line 50" in diff_lines and "+line fifty" in diff_lines
    assert len(diff_lines) < 12


def test_report_outputs_bound_text_and_keep_small_images():
    png = _png_b64()
    view = report_outputs([stream("x" * 50), _figure(png), error("ValueError", "boom"),
                           result({"image/png": png, "text/plain": "big"})], text_limit=20, image_limit=len(png))
    assert view[0]["output_type"] == "stream" and view[0]["text"].startswith("x" * 20)
    assert "truncated: 30 more characters" in view[0]["text"]
    assert view[1]["data"]["image/png"] == png and view[1]["output_type"] == "display_data"
    assert view[2] == {"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": ["..."]}
    small = report_outputs([_figure(png)], image_limit=10)
    assert "image/png" not in small[0]["data"]
    assert small[0]["data"]["text/plain"] == "<Figure size 200x100 with 1 Axes>"
    many = report_outputs([stream(str(i)) for i in range(5)], max_outputs=2)
    assert len(many) == 3 and "3 more outputs" in many[2]["text"]


def test_trailing_newline_difference_shows_in_the_diff():
    outcome = compare_outputs([stream("done\n")], [stream("done")], NORMALIZED)
    assert not outcome.equal
    assert "-'done\\n'" in outcome.diff and "+'done'" in outcome.diff


def test_word_mismatch_reports_no_numeric_error():
    outcome = compare_outputs([stream("The 2")], [stream("the 2")], TOLERANT)
    assert not outcome.equal and outcome.max_error is None


def test_json_array_of_strings_is_data_not_lines():
    expected = result({"application/json": ["a", "b"]})
    assert not compare_outputs([expected], [result({"application/json": ["ab"]})], EXACT).equal
    assert compare_outputs([expected], [result({"application/json": ["a", "b"]})], EXACT).equal


def test_without_pillow_images_are_compared_by_hash(monkeypatch):
    from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import comparison

    monkeypatch.setattr(comparison, "_load_pil", lambda: None)
    outcome = compare_outputs([_figure(_png_b64(line_width=3))], [_figure(_png_b64(line_width=4))], NORMALIZED)
    assert not outcome.equal and "Pillow is not installed" in outcome.message
    same = _png_b64()
    assert compare_outputs([_figure(same)], [_figure(same)], NORMALIZED).equal
