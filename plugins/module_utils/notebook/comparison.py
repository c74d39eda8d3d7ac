# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Comparing a cell's expected (golden) and actual outputs, by MIME type.

Outputs are compared one by one, in order; a different number of outputs, or
outputs of different types (``stream`` vs ``display_data``, stdout vs stderr),
fail with a message saying which. For ``execute_result`` / ``display_data`` the
richest MIME type both bundles share is compared (see ``MIME_PREFERENCE``), and
the expected bundle's richest type must be present on the actual side (a figure
that came back as only ``text/plain`` is a failure, not a pass on its repr).

Comparators:

* text (``text/plain``, streams, ``text/markdown``, ``text/latex``, error values):
  equal strings; with tolerance, the text is split into numbers and the rest, the
  rest must match exactly and each number pair must satisfy
  ``|a - b| <= atol + rtol * |b|`` (``b`` the expected value).
* ``application/json`` and ``*+json``: by value (key order is irrelevant), numbers
  with the tolerance.
* ``text/html``: tables (from ``html.parser``) compared as tables (shape, header
  flags, cell text; numbers in cells with the tolerance), plus the page's visible
  text outside tables with whitespace collapsed. Attributes, ``<style>`` and
  ``<script>`` are not compared (they carry per-run ids).
* ``image/png`` / ``image/jpeg``: identical bytes are equal. Otherwise, unless the
  strategy is ``exact``, with Pillow both images are flattened on white, made
  grayscale and scaled (box filter) to at most 128 px on the long side. A pixel
  is "content" when either image differs there by more than 24/255 from the
  expected image's most common value (its background); it "changed" when its
  value is not within 24/255 of the other image's range of values in the 3x3
  neighbourhood (so anti-aliasing, a slightly thicker line or a one-pixel shift
  at that scale do not count). The difference is changed / content pixels (0..1):
  unlike a mean over the whole image, a moved curve on a white chart counts fully. Equal when
  the difference is at most ``image_threshold`` (reported as a tolerant pass with
  ``max_error`` = difference). Different aspect ratios (more than 1%) are a
  difference of 1. Without Pillow (or for undecodable data): by hash.
* ``image/svg+xml``: canonicalized (XML parsed, comments / whitespace /
  ``<metadata>`` dropped, attributes sorted, ids renamed in document order and
  references to them rewritten) and compared as text.
* anything else, and any payload larger than ``max_payload_bytes``: by SHA-256.

``options.ignore_mime_types`` entries are MIME patterns (``text/*``), output types
(``display_data``, ``error``...) or stream names (``stderr``); what they select is not
compared, and an output left without data is dropped.

Tolerance is on when the strategy is ``tolerant``, or when the strategy is
``normalized`` and the caller passes a per-cell ``rtol`` / ``atol``; never with
``exact`` (which also compares images by hash).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import fnmatch
import hashlib
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from xml.etree import ElementTree

from .model import CompareOptions

DIFF_CONTEXT_LINES = 2
MAX_DIFF_LINES = 200
MAX_MESSAGE_SNIPPET = 160
REPORT_TEXT_LIMIT = 20_000           # characters of text per output kept for reports
REPORT_IMAGE_LIMIT = 512 * 1024      # base64 characters of an image kept for reports

IMAGE_MIME_TYPES = ("image/png", "image/jpeg")
SVG_MIME = "image/svg+xml"
TEXT_MIME_TYPES = ("text/plain", "text/markdown", "text/latex", "application/javascript")

# Richest first. JSON bundles (incl. vendor ``+json``) carry the most structure; then
# images, then HTML, then other text forms; text/plain is the fallback repr.
MIME_PREFERENCE = (
    "application/json",
    "+json",
    "image/png",
    "image/jpeg",
    SVG_MIME,
    "text/html",
    "text/markdown",
    "text/latex",
    "*",                 # any other type
    "text/plain",
)

IMAGE_SIDE = 128
IMAGE_PIXEL_DELTA = 24
IMAGE_ASPECT_TOLERANCE = 0.01

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_WHITESPACE = re.compile(r"\s+")
_SVG_NS = "{http://www.w3.org/2000/svg}"
_XLINK_NS = "{http://www.w3.org/1999/xlink}"
_ID_REFERENCE = re.compile(r"#([A-Za-z_][\w.\-:]*)")


@dataclass
class OutputComparison:
    """Result of comparing two lists of outputs.

    ``equal``: the outputs match (possibly within tolerance); ``tolerant``: they
    match only thanks to a tolerance (numbers, image threshold); ``max_error``: the
    largest numeric deviation (or image difference) seen, also on a pass; ``diff``:
    a minimal unified diff of the text forms (empty on an exact match);
    ``message``: what differs first, or how the tolerant match went.
    """

    equal: bool
    tolerant: bool = False
    max_error: Optional[float] = None
    diff: str = ""
    message: str = ""


@dataclass
class _Tolerance:
    enabled: bool
    rtol: float
    atol: float

    def allowed(self, expected: float) -> float:
        return self.atol + self.rtol * abs(expected)


@dataclass
class _Verdict:
    equal: bool
    tolerant: bool = False
    max_error: Optional[float] = None
    message: str = ""


def _merge_error(current: Optional[float], new: Optional[float]) -> Optional[float]:
    if new is None:
        return current
    if current is None:
        return new
    return max(current, new)


def _snippet(text: str) -> str:
    text = repr(text)
    if len(text) > MAX_MESSAGE_SNIPPET:
        text = text[: MAX_MESSAGE_SNIPPET - 3] + "..."
    return text


def _mime_payload(mime: str, value: Any) -> Any:
    """A bundle entry as one value: text joined, JSON left alone (a list there is data)."""
    return value if _is_json_mime(mime) else _join(value)


def _join(value: Any) -> Any:
    """nbformat stores multi-line strings as lists of lines on disk."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "".join(value)
    return value


def _sha(payload: Any) -> str:
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    else:
        data = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _payload_size(payload: Any) -> int:
    if isinstance(payload, str):
        return len(payload.encode("utf-8"))
    if isinstance(payload, bytes):
        return len(payload)
    return len(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8"))


# ----------------------------------------------------------------------------- text


def _tokens(text: str) -> List[Tuple[bool, str]]:
    """Split text into (is_number, token) pieces."""
    pieces: List[Tuple[bool, str]] = []
    position = 0
    for match in _NUMBER.finditer(text):
        if match.start() > position:
            pieces.append((False, text[position: match.start()]))
        pieces.append((True, match.group()))
        position = match.end()
    if position < len(text):
        pieces.append((False, text[position:]))
    return pieces


def _first_line_difference(expected: str, actual: str) -> str:
    expected_lines = expected.split("\n")
    actual_lines = actual.split("\n")
    for number, (left, right) in enumerate(zip(expected_lines, actual_lines), start=1):
        if left != right:
            return "line %d: expected %s, got %s" % (number, _snippet(left), _snippet(right))
    if len(expected_lines) != len(actual_lines):
        return "expected %d lines, got %d" % (len(expected_lines), len(actual_lines))
    return "texts differ"


def compare_text(expected: str, actual: str, tolerance: _Tolerance) -> _Verdict:
    if expected == actual:
        return _Verdict(True, max_error=0.0 if tolerance.enabled and _NUMBER.search(expected) else None)
    if not tolerance.enabled:
        return _Verdict(False, message=_first_line_difference(expected, actual))
    expected_tokens = _tokens(expected)
    actual_tokens = _tokens(actual)
    if len(expected_tokens) != len(actual_tokens):
        return _Verdict(False, message=_first_line_difference(expected, actual))
    max_error = 0.0
    failure = ""
    for (e_number, e_text), (a_number, a_text) in zip(expected_tokens, actual_tokens):
        if e_number != a_number or (not e_number and e_text != a_text):
            # the words differ: a numeric error would say nothing
            return _Verdict(False, message=_first_line_difference(expected, actual))
        if not e_number:
            continue
        e_value, a_value = float(e_text), float(a_text)
        error = abs(a_value - e_value)
        if math.isnan(error) or math.isinf(error):
            error = math.inf
        max_error = max(max_error, error)
        if error > tolerance.allowed(e_value) and not failure:
            failure = "number %s differs from expected %s by %.3g (allowed %.3g)" % (
                a_text, e_text, error, tolerance.allowed(e_value))
    if failure:
        return _Verdict(False, max_error=max_error, message=failure)
    return _Verdict(True, tolerant=True, max_error=max_error)


# ----------------------------------------------------------------------------- json


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_json(expected: Any, actual: Any, tolerance: _Tolerance, where: str = "$") -> _Verdict:
    if _is_number(expected) and _is_number(actual):
        if expected == actual:
            return _Verdict(True, max_error=0.0 if tolerance.enabled else None)
        error = abs(float(actual) - float(expected))
        if tolerance.enabled and error <= tolerance.allowed(float(expected)):
            return _Verdict(True, tolerant=True, max_error=error)
        return _Verdict(False, max_error=error if tolerance.enabled else None,
                        message="%s: expected %r, got %r" % (where, expected, actual))
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        missing = sorted(set(expected) - set(actual))
        unexpected = sorted(set(actual) - set(expected))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append("missing keys %s" % ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected keys %s" % ", ".join(repr(k) for k in unexpected))
            return _Verdict(False, message="%s: %s" % (where, "; ".join(parts)))
        return _combine(compare_json(expected[key], actual[key], tolerance, "%s.%s" % (where, key))
                        for key in sorted(expected, key=str))
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return _Verdict(False, message="%s: expected %d items, got %d" % (where, len(expected), len(actual)))
        return _combine(compare_json(e, a, tolerance, "%s[%d]" % (where, i))
                        for i, (e, a) in enumerate(zip(expected, actual)))
    if expected == actual and type(expected) is type(actual):
        return _Verdict(True)
    return _Verdict(False, message="%s: expected %s, got %s" % (
        where, _snippet(json.dumps(expected, default=str)), _snippet(json.dumps(actual, default=str))))


def _combine(verdicts) -> _Verdict:
    """All must be equal; the first failure's message wins; errors are maximized."""
    result = _Verdict(True)
    for verdict in verdicts:
        result.max_error = _merge_error(result.max_error, verdict.max_error)
        result.tolerant = result.tolerant or verdict.tolerant
        if not verdict.equal and result.equal:
            result.equal = False
            result.message = verdict.message
    if not result.equal:
        result.tolerant = False
    return result


def _json_value(payload: Any) -> Any:
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except ValueError:
            return payload
    return payload


def _json_text(payload: Any) -> str:
    return json.dumps(_json_value(payload), sort_keys=True, indent=1, ensure_ascii=False, default=str)


# ----------------------------------------------------------------------------- html


class _HtmlTables(HTMLParser):
    """Collects tables (rows of (is_header, text) cells) and the visible text outside them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: List[List[List[Tuple[bool, str]]]] = []
        self.outside: List[str] = []
        self._stack: List[Dict[str, Any]] = []     # open tables, innermost last
        self._hidden = 0                           # inside <style> / <script>

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("style", "script"):
            self._hidden += 1
        elif tag == "table":
            if self._stack and self._stack[-1]["cell"] is not None:
                self._stack[-1]["cell"][1].append(" ")
            table: Dict[str, Any] = {"rows": [], "row": None, "cell": None}
            self._stack.append(table)
            self.tables.append(table["rows"])
        elif self._stack:
            table = self._stack[-1]
            if tag == "tr":
                self._close_row(table)
                table["row"] = []
            elif tag in ("td", "th"):
                self._close_cell(table)
                if table["row"] is None:
                    table["row"] = []
                table["cell"] = (tag == "th", [])
            elif tag == "br" and table["cell"] is not None:
                table["cell"][1].append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden = max(0, self._hidden - 1)
        elif tag == "table" and self._stack:
            table = self._stack.pop()
            self._close_row(table)
        elif self._stack:
            table = self._stack[-1]
            if tag in ("td", "th"):
                self._close_cell(table)
            elif tag == "tr":
                self._close_row(table)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._stack:
            cell = self._stack[-1]["cell"]
            if cell is not None:
                cell[1].append(data)
            elif data.strip():
                self.outside.append(data)      # caption-like text inside a table
        else:
            self.outside.append(data)

    @staticmethod
    def _close_cell(table: Dict[str, Any]) -> None:
        if table["cell"] is not None:
            header, parts = table["cell"]
            table["row"].append((header, _WHITESPACE.sub(" ", "".join(parts)).strip()))
            table["cell"] = None

    def _close_row(self, table: Dict[str, Any]) -> None:
        self._close_cell(table)
        if table["row"] is not None:
            table["rows"].append(table["row"])
            table["row"] = None

    def result(self) -> Tuple[List[List[List[Tuple[bool, str]]]], str]:
        while self._stack:
            self._close_row(self._stack.pop())
        return self.tables, _WHITESPACE.sub(" ", "".join(self.outside)).strip()


def parse_html(html: str) -> Tuple[List[List[List[Tuple[bool, str]]]], str]:
    """(tables, text outside tables) of an HTML fragment."""
    parser = _HtmlTables()
    parser.feed(html)
    parser.close()
    return parser.result()


def _html_text_form(html: str) -> str:
    tables, outside = parse_html(html)
    lines: List[str] = []
    if outside:
        lines.append(outside)
    for number, rows in enumerate(tables, start=1):
        lines.append("[table %d]" % number)
        for row in rows:
            lines.append("| " + " | ".join(("*%s*" % text) if header else text for header, text in row) + " |")
    return "\n".join(lines)


def compare_html(expected: str, actual: str, tolerance: _Tolerance) -> _Verdict:
    if expected == actual:
        return _Verdict(True)
    e_tables, e_text = parse_html(expected)
    a_tables, a_text = parse_html(actual)
    verdicts = []
    if len(e_tables) != len(a_tables):
        return _Verdict(False, message="expected %d HTML tables, got %d" % (len(e_tables), len(a_tables)))
    for number, (e_rows, a_rows) in enumerate(zip(e_tables, a_tables), start=1):
        if len(e_rows) != len(a_rows):
            return _Verdict(False, message="table %d: expected %d rows, got %d" % (number, len(e_rows), len(a_rows)))
        for row_number, (e_row, a_row) in enumerate(zip(e_rows, a_rows), start=1):
            if len(e_row) != len(a_row):
                return _Verdict(False, message="table %d row %d: expected %d cells, got %d" % (
                    number, row_number, len(e_row), len(a_row)))
            for column, ((e_header, e_cell), (a_header, a_cell)) in enumerate(zip(e_row, a_row), start=1):
                where = "table %d row %d column %d" % (number, row_number, column)
                if e_header != a_header:
                    return _Verdict(False, message="%s: header cell on one side only" % where)
                verdict = compare_text(e_cell, a_cell, tolerance)
                if not verdict.equal:
                    verdict.message = "%s: expected %s, got %s%s" % (
                        where, _snippet(e_cell), _snippet(a_cell),
                        " (%s)" % verdict.message if verdict.message.startswith("number") else "")
                verdicts.append(verdict)
    text_verdict = compare_text(e_text, a_text, tolerance)
    if not text_verdict.equal:
        text_verdict.message = "text outside tables: " + text_verdict.message
    verdicts.append(text_verdict)
    return _combine(verdicts)


# ----------------------------------------------------------------------------- images


def _decode_base64(payload: Any) -> Optional[bytes]:
    if not isinstance(payload, str):
        return None
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _load_pil():
    try:
        from PIL import Image  # noqa: F401  (optional dependency)
    except ImportError:
        return None
    return Image


def _flatten_gray(image, image_module):
    """Grayscale, with any transparency composited over white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = image_module.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = image_module.alpha_composite(background, rgba)
    return image.convert("L")


def image_difference(expected: bytes, actual: bytes) -> Tuple[float, str]:
    """(difference 0..1, note) of two encoded images; raises ImportError / OSError.

    See the module docstring for the measure.
    """
    image_module = _load_pil()
    if image_module is None:
        raise ImportError("Pillow is not installed")
    with image_module.open(io.BytesIO(expected)) as left_file, image_module.open(io.BytesIO(actual)) as right_file:
        left = _flatten_gray(left_file, image_module)
        right = _flatten_gray(right_file, image_module)
    (lw, lh), (rw, rh) = left.size, right.size
    if not lw or not lh or not rw or not rh:
        return (0.0 if left.size == right.size else 1.0), "empty image"
    if abs((lw / lh) / (rw / rh) - 1.0) > IMAGE_ASPECT_TOLERANCE:
        return 1.0, "image size differs: expected %dx%d, got %dx%d" % (lw, lh, rw, rh)
    scale = min(1.0, IMAGE_SIDE / max(lw, lh))
    size = (max(1, round(lw * scale)), max(1, round(lh * scale)))
    box = image_module.Resampling.BOX
    left, right = left.resize(size, box), right.resize(size, box)
    from PIL import ImageFilter

    # A pixel matches when the other image has a similar value within one pixel (after
    # scaling): anti-aliasing, a slightly thicker line or a one-pixel shift are not changes.
    neighbourhood = [image.filter(f(3)).tobytes() for image in (left, right)
                     for f in (ImageFilter.MinFilter, ImageFilter.MaxFilter)]
    left_low, left_high, right_low, right_high = neighbourhood
    left_pixels, right_pixels = left.tobytes(), right.tobytes()
    background = Counter(left_pixels).most_common(1)[0][0]
    delta = IMAGE_PIXEL_DELTA
    changed = content = 0
    for i, (e_value, a_value) in enumerate(zip(left_pixels, right_pixels)):
        if abs(e_value - background) <= delta and abs(a_value - background) <= delta:
            continue
        content += 1
        if not (right_low[i] - delta <= e_value <= right_high[i] + delta) or \
                not (left_low[i] - delta <= a_value <= left_high[i] + delta):
            changed += 1
    note = "" if (lw, lh) == (rw, rh) else "image size differs: expected %dx%d, got %dx%d" % (lw, lh, rw, rh)
    return (changed / content if content else 0.0), note


def compare_image(expected: Any, actual: Any, options: CompareOptions, mime: str) -> _Verdict:
    if expected == actual:
        return _Verdict(True)
    e_bytes, a_bytes = _decode_base64(expected), _decode_base64(actual)
    if e_bytes is not None and e_bytes == a_bytes:
        return _Verdict(True)
    by_hash = "%s differs (sha256 %s vs %s)" % (mime, _sha(e_bytes or expected)[:12], _sha(a_bytes or actual)[:12])
    if options.strategy == "exact":
        return _Verdict(False, message=by_hash + "; strategy exact compares images by hash")
    if e_bytes is None or a_bytes is None:
        return _Verdict(False, message=by_hash + "; not valid base64")
    try:
        difference, note = image_difference(e_bytes, a_bytes)
    except ImportError:
        return _Verdict(False, message=by_hash + "; Pillow is not installed, images compared by hash")
    except Exception as exc:  # pylint: disable=broad-except  # Pillow raises several types on bad data
        return _Verdict(False, message="%s; cannot decode image (%s), compared by hash" % (by_hash, exc))
    detail = "image difference %.4f (threshold %.4f)%s" % (
        difference, options.image_threshold, "; " + note if note else "")
    if difference <= options.image_threshold:
        return _Verdict(True, tolerant=True, max_error=difference, message=detail)
    return _Verdict(False, max_error=difference, message=detail)


def _image_text_form(payload: Any, mime: str) -> str:
    data = _decode_base64(payload)
    size = len(data) if data is not None else _payload_size(payload)
    return "<%s, %d bytes, sha256 %s>" % (mime, size, _sha(data if data is not None else payload)[:16])


# ----------------------------------------------------------------------------- svg


def canonical_svg(svg: str) -> str:
    """One line per element: sorted attributes, stable ids, no comments / metadata / whitespace.

    Raises ``xml.etree.ElementTree.ParseError`` when the text is not XML.
    """
    root = ElementTree.fromstring(svg)
    id_names: Dict[str, str] = {}
    for element in root.iter():
        old = element.get("id")
        if old is not None and old not in id_names:
            id_names[old] = "id%d" % (len(id_names) + 1)

    def rename(value: str) -> str:
        return _ID_REFERENCE.sub(lambda m: "#" + id_names.get(m.group(1), m.group(1)), value)

    def name(qualified: str) -> str:
        return qualified.replace(_SVG_NS, "").replace(_XLINK_NS, "xlink:")

    lines: List[str] = []

    def walk(element, depth: int) -> None:
        tag = name(element.tag) if isinstance(element.tag, str) else ""
        if tag == "metadata" or not tag:
            return
        attributes = []
        for key in sorted(element.attrib, key=name):
            value = element.attrib[key]
            value = id_names.get(value, value) if key == "id" else rename(value)
            attributes.append('%s="%s"' % (name(key), _WHITESPACE.sub(" ", value).strip()))
        text = _WHITESPACE.sub(" ", element.text or "").strip()
        if tag == "style":
            text = rename(text)
        lines.append("%s<%s%s>%s" % ("  " * depth, tag, (" " + " ".join(attributes)) if attributes else "", text))
        for child in element:
            walk(child, depth + 1)
            tail = _WHITESPACE.sub(" ", child.tail or "").strip()
            if tail:
                lines.append("%s%s" % ("  " * (depth + 1), tail))

    walk(root, 0)
    return "\n".join(lines)


def _svg_text_form(payload: str) -> str:
    try:
        return canonical_svg(payload)
    except ElementTree.ParseError:
        return payload


def compare_svg(expected: str, actual: str, tolerance: _Tolerance) -> _Verdict:
    if expected == actual:
        return _Verdict(True)
    try:
        e_form, a_form = canonical_svg(expected), canonical_svg(actual)
    except ElementTree.ParseError as exc:
        verdict = compare_text(expected, actual, tolerance)
        if not verdict.equal:
            verdict.message = "SVG is not valid XML (%s); compared as text: %s" % (exc, verdict.message)
        return verdict
    verdict = compare_text(e_form, a_form, tolerance)
    if not verdict.equal:
        verdict.message = "canonical SVG " + verdict.message
    return verdict


# ----------------------------------------------------------------------------- bundles


def _mime_rank(mime: str) -> int:
    if mime in MIME_PREFERENCE:
        return MIME_PREFERENCE.index(mime)
    if mime.endswith("+json"):
        return MIME_PREFERENCE.index("+json")
    return MIME_PREFERENCE.index("*")


def richest_mime(mime_types) -> Optional[str]:
    """The richest of the given MIME types (ties broken by name, for stability)."""
    ordered = sorted(mime_types, key=lambda mime: (_mime_rank(mime), mime))
    return ordered[0] if ordered else None


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _is_text_mime(mime: str) -> bool:
    return mime in TEXT_MIME_TYPES or (mime.startswith("text/") and mime != "text/html")


def compare_payload(mime: str, expected: Any, actual: Any, options: CompareOptions, tolerance: _Tolerance) -> _Verdict:
    """Compare one MIME payload of two bundles."""
    expected, actual = _mime_payload(mime, expected), _mime_payload(mime, actual)
    biggest = max(_payload_size(expected), _payload_size(actual))
    if biggest > options.max_payload_bytes:
        if _sha(expected) == _sha(actual):
            return _Verdict(True)
        return _Verdict(False, message="%s payload of %d bytes (over max_payload_bytes %d) differs by hash" % (
            mime, biggest, options.max_payload_bytes))
    if _is_json_mime(mime):
        return compare_json(_json_value(expected), _json_value(actual), tolerance)
    if mime in IMAGE_MIME_TYPES:
        return compare_image(expected, actual, options, mime)
    if not isinstance(expected, str) or not isinstance(actual, str):
        if _sha(expected) == _sha(actual):
            return _Verdict(True)
        return _Verdict(False, message="%s differs (compared by hash)" % mime)
    if mime == SVG_MIME:
        return compare_svg(expected, actual, tolerance)
    if mime == "text/html":
        return compare_html(expected, actual, tolerance)
    if _is_text_mime(mime):
        return compare_text(expected, actual, tolerance)
    if expected == actual:
        return _Verdict(True)
    return _Verdict(False, message="%s differs (compared by hash: %s vs %s)" % (
        mime, _sha(expected)[:12], _sha(actual)[:12]))


def payload_text_form(mime: str, payload: Any, options: Optional[CompareOptions] = None) -> str:
    """The text a person reads for one payload (used in diffs and reports)."""
    payload = _mime_payload(mime, payload)
    limit = (options or CompareOptions()).max_payload_bytes
    if mime in IMAGE_MIME_TYPES:
        return _image_text_form(payload, mime)
    if _payload_size(payload) > limit:
        return "<%s, %d bytes, sha256 %s>" % (mime, _payload_size(payload), _sha(payload)[:16])
    if _is_json_mime(mime):
        return _json_text(payload)
    if not isinstance(payload, str):
        return "<%s, sha256 %s>" % (mime, _sha(payload)[:16])
    if mime == SVG_MIME:
        return _svg_text_form(payload)
    if mime == "text/html":
        return _html_text_form(payload)
    if _is_text_mime(mime):
        return payload
    return "<%s, %d bytes, sha256 %s>" % (mime, _payload_size(payload), _sha(payload)[:16])


# ----------------------------------------------------------------------------- outputs


def _bundle(output: Mapping[str, Any], ignored: Sequence[str]) -> Dict[str, Any]:
    """The MIME bundle without ignored types (shell-style patterns, as the normalizer reads them)."""
    data = output.get("data") or {}
    return {mime: value for mime, value in data.items()
            if not any(fnmatch.fnmatchcase(mime, pattern) for pattern in ignored)}


def _kept_outputs(outputs: Sequence[Mapping[str, Any]], ignored: Sequence[str]) -> List[Mapping[str, Any]]:
    """Outputs minus ignored output types / stream names / MIME types (emptied bundles vanish)."""
    kept = []
    for output in outputs:
        output_type = output.get("output_type")
        if output_type in ignored:
            continue
        if output_type == "stream" and output.get("name") in ignored:
            continue
        if output_type in ("execute_result", "display_data") and ignored:
            if output.get("data") and not _bundle(output, ignored):
                continue
        kept.append(output)
    return kept


def describe(output: Mapping[str, Any]) -> str:
    """A short human name for an output: ``stream (stdout)``, ``display_data [image/png, text/plain]``."""
    output_type = str(output.get("output_type", "?"))
    if output_type == "stream":
        return "stream (%s)" % output.get("name", "?")
    if output_type == "error":
        return "error (%s)" % output.get("ename", "?")
    if output_type in ("execute_result", "display_data"):
        return "%s [%s]" % (output_type, ", ".join(sorted(output.get("data") or {})))
    return output_type


def output_text_form(output: Mapping[str, Any], options: Optional[CompareOptions] = None,
                     mime: Optional[str] = None) -> Tuple[str, str]:
    """(mime or kind, text) of one output; ``mime`` forces the payload shown."""
    ignored = (options or CompareOptions()).ignore_mime_types
    output_type = output.get("output_type")
    if output_type == "stream":
        return "text/plain", str(_join(output.get("text", "")))
    if output_type == "error":
        return "error", "%s: %s" % (output.get("ename", ""), output.get("evalue", ""))
    if output_type in ("execute_result", "display_data"):
        bundle = _bundle(output, ignored)
        chosen = mime if mime in bundle else richest_mime(bundle)
        if chosen is None:
            return "", ""
        return chosen, payload_text_form(chosen, bundle[chosen], options)
    return str(output_type), json.dumps(output, sort_keys=True, default=str)


def _diff_lines(outputs: Sequence[Mapping[str, Any]], options: CompareOptions,
                chosen: Sequence[Optional[str]], keep_ends: bool = False) -> List[str]:
    lines: List[str] = []
    for number, output in enumerate(outputs, start=1):
        mime = chosen[number - 1] if number - 1 < len(chosen) else None
        kind, text = output_text_form(output, options, mime)
        lines.append("[output %d] %s%s" % (number, describe(output).split(" [")[0],
                                           " %s" % kind if output.get("output_type") in ("execute_result", "display_data") else ""))
        lines.extend(text.splitlines(keep_ends))
    return lines


def unified_diff(expected_lines: Sequence[str], actual_lines: Sequence[str]) -> str:
    """A minimal unified diff (few context lines, bounded length)."""
    lines = list(difflib.unified_diff(list(expected_lines), list(actual_lines), "expected", "actual",
                                      n=DIFF_CONTEXT_LINES, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + ["... (%d more diff lines)" % (len(lines) - MAX_DIFF_LINES)]
    return "\n".join(lines)


def _compare_one(number: int, expected: Mapping[str, Any], actual: Mapping[str, Any],
                 options: CompareOptions, tolerance: _Tolerance) -> Tuple[_Verdict, Optional[str]]:
    """Verdict for one output pair, and the MIME type compared (for the diff)."""
    where = "output %d" % number
    e_type, a_type = expected.get("output_type"), actual.get("output_type")
    if e_type != a_type or (e_type == "stream" and expected.get("name") != actual.get("name")):
        return _Verdict(False, message="%s: expected %s, got %s" % (where, describe(expected), describe(actual))), None
    if e_type == "stream":
        verdict = compare_text(str(_join(expected.get("text", ""))), str(_join(actual.get("text", ""))), tolerance)
        mime = None
    elif e_type == "error":
        if expected.get("ename") != actual.get("ename"):
            verdict = _Verdict(False, message="expected exception %s, got %s" % (
                expected.get("ename"), actual.get("ename")))
        else:
            verdict = compare_text(str(expected.get("evalue", "")), str(actual.get("evalue", "")), tolerance)
        mime = None
    elif e_type in ("execute_result", "display_data"):
        e_bundle, a_bundle = _bundle(expected, options.ignore_mime_types), _bundle(actual, options.ignore_mime_types)
        shared = set(e_bundle) & set(a_bundle)
        wanted = richest_mime(e_bundle)
        if wanted is None and not a_bundle:
            return _Verdict(True), None
        if wanted not in a_bundle:
            return _Verdict(False, message="%s: expected %s, got only %s" % (
                where, wanted or "no data", ", ".join(sorted(a_bundle)) or "no data")), None
        mime = richest_mime(shared)
        verdict = compare_payload(mime, e_bundle[mime], a_bundle[mime], options, tolerance)
        if verdict.message:
            verdict.message = "%s (%s): %s" % (where, mime, verdict.message)
        return verdict, mime
    else:
        verdict = _Verdict(_sha(dict(expected)) == _sha(dict(actual)), message="%s differs (compared by hash)" % e_type)
        mime = None
    if verdict.message:
        kind = expected.get("name") if e_type == "stream" else e_type
        verdict.message = "%s (%s): %s" % (where, kind, verdict.message)
    return verdict, mime


def compare_outputs(expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]],
                    options: Optional[CompareOptions] = None, rtol: Optional[float] = None,
                    atol: Optional[float] = None) -> OutputComparison:
    """Compare two lists of (already normalized) outputs; see the module docstring."""
    options = options or CompareOptions()
    tolerance = _Tolerance(
        enabled=options.strategy == "tolerant"
        or (options.strategy == "normalized" and (rtol is not None or atol is not None)),
        rtol=options.rtol if rtol is None else rtol,
        atol=options.atol if atol is None else atol,
    )
    expected = _kept_outputs(expected, options.ignore_mime_types)
    actual = _kept_outputs(actual, options.ignore_mime_types)

    chosen: List[Optional[str]] = []
    if len(expected) != len(actual):
        result = _Verdict(False, message="expected %d output%s, got %d: %s" % (
            len(expected), "" if len(expected) == 1 else "s", len(actual),
            _count_difference(expected, actual)))
    else:
        verdicts = []
        for number, (e_output, a_output) in enumerate(zip(expected, actual), start=1):
            verdict, mime = _compare_one(number, e_output, a_output, options, tolerance)
            verdicts.append(verdict)
            chosen.append(mime)
        result = _combine(verdicts)
        if result.equal and result.tolerant:
            image_note = "; ".join(v.message for v in verdicts if v.tolerant and "image difference" in v.message)
            result.message = "equal within tolerance (max error %.3g%s)" % (
                result.max_error or 0.0,
                ", rtol=%g, atol=%g" % (tolerance.rtol, tolerance.atol) if tolerance.enabled else "")
            if image_note:
                result.message += "; " + image_note

    diff = ""
    if not result.equal or result.tolerant:
        expected_lines, actual_lines = _diff_lines(expected, options, chosen), _diff_lines(actual, options, chosen)
        if expected_lines == actual_lines:  # only line endings or invisible characters differ: show them
            expected_lines = [repr(line) for line in _diff_lines(expected, options, chosen, keep_ends=True)]
            actual_lines = [repr(line) for line in _diff_lines(actual, options, chosen, keep_ends=True)]
        diff = unified_diff(expected_lines, actual_lines)
    return OutputComparison(result.equal, result.tolerant, result.max_error, diff, result.message)


def _count_difference(expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]) -> str:
    e_kinds = [describe(o) for o in expected]
    a_kinds = [describe(o) for o in actual]
    for number, (e_kind, a_kind) in enumerate(zip(e_kinds, a_kinds), start=1):
        if e_kind != a_kind:
            return "output %d is %s, expected %s" % (number, a_kind, e_kind)
    if len(a_kinds) > len(e_kinds):
        return "unexpected %s" % ", ".join(a_kinds[len(e_kinds):])
    return "missing %s" % ", ".join(e_kinds[len(a_kinds):])


# ----------------------------------------------------------------------------- reports


def _truncated(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + "\n... [truncated: %d more characters]" % (len(text) - limit)


def report_outputs(outputs: Sequence[Mapping[str, Any]], text_limit: int = REPORT_TEXT_LIMIT,
                   image_limit: int = REPORT_IMAGE_LIMIT, max_outputs: int = 50) -> List[Dict[str, Any]]:
    """Outputs for reports: nbformat-shaped plain dicts of bounded size.

    Text (stream text, text-like MIME data, error values and tracebacks) is cut at
    ``text_limit`` characters; images over ``image_limit`` base64 characters and
    other large payloads are replaced by a ``<mime, N bytes, sha256 ...>`` line; JSON
    data is kept as its indented text when it is too large. At most ``max_outputs``
    outputs are kept, then one ``stream`` line says how many were left out.
    """
    view: List[Dict[str, Any]] = []
    for output in list(outputs)[:max_outputs]:
        output_type = output.get("output_type")
        if output_type == "stream":
            view.append({"output_type": "stream", "name": output.get("name", "stdout"),
                         "text": _truncated(str(_join(output.get("text", ""))), text_limit)})
        elif output_type == "error":
            traceback = [str(line) for line in output.get("traceback") or []]
            view.append({"output_type": "error", "ename": str(output.get("ename", "")),
                         "evalue": _truncated(str(output.get("evalue", "")), text_limit),
                         "traceback": [_truncated(line, text_limit) for line in traceback[:100]]})
        elif output_type in ("execute_result", "display_data"):
            data: Dict[str, Any] = {}
            for mime, payload in (output.get("data") or {}).items():
                payload = _mime_payload(mime, payload)
                if mime in IMAGE_MIME_TYPES:
                    if isinstance(payload, str) and len(payload) <= image_limit:
                        data[mime] = "".join(payload.split())
                    elif "text/plain" not in (output.get("data") or {}):
                        data["text/plain"] = _image_text_form(payload, mime)
                elif isinstance(payload, str):
                    data[mime] = _truncated(payload, text_limit)
                elif _payload_size(payload) <= text_limit:
                    data[mime] = payload
                else:
                    data[mime] = _truncated(_json_text(payload), text_limit)
            item: Dict[str, Any] = {"output_type": output_type, "data": data,
                                    "metadata": dict(output.get("metadata") or {})}
            view.append(item)
        else:
            view.append({"output_type": str(output_type),
                         "text": _truncated(json.dumps(dict(output), sort_keys=True, default=str), text_limit)})
    if len(outputs) > max_outputs:
        view.append({"output_type": "stream", "name": "stdout",
                     "text": "... %d more outputs not shown" % (len(outputs) - max_outputs)})
    return view
