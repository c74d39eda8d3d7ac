# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Making cell outputs comparable: structural clean-up, scrubbers and user rules.

Everything here is applied the same way to the golden and to the executed outputs.

Two stages, so the orchestrator can tell ``PASS`` (equal after ``structural``) from
``PASS_NORMALIZED`` (equal only after scrubbers and rules):

``structural(outputs) -> list``
    A pure function (new plain dicts, the input is not modified) that turns outputs into
    what a person sees in the notebook:

    - ``clear_output`` markers ({"output_type": "clear_output", "wait": bool}, as a
      raw-message list carries them): ``wait=False`` drops every earlier output;
      ``wait=True`` drops them when the next output arrives (nbclient's semantics: if
      nothing follows, the earlier outputs stay).
    - ``update_display_data`` ({"output_type": "update_display_data", "data": ...,
      "transient": {"display_id": X}}) replaces ``data`` and ``metadata`` of every earlier
      output displayed with that display_id, and is then removed.
    - consecutive ``stream`` outputs of the same name are joined;
    - terminal semantics in stream text: ``\\r\\n`` is a newline; a line rewritten with
      ``\\r`` keeps only its last non-empty version, with trailing spaces removed (tqdm
      pads with spaces to erase a longer earlier version; how many depends on timing);
      overwrite remnants of longer earlier versions are not kept for the same reason;
      ``\\b`` erases the previous character of the line; empty streams are dropped;
    - ANSI escape sequences removed from streams, textual MIME data and error
      ``evalue`` / ``traceback``;
    - ``execution_count``, ``transient`` and keys outside the nbformat schema of the
      output type are dropped, and UI/timing keys (``METADATA_NOISE``) of ``metadata``;
    - multi-line values (lists of str) are joined, except JSON MIME types (their value is
      the JSON itself).

``Normalizer(options: CompareOptions)``
    Validates the scrubber names and user rules at construction (``EngineError`` naming
    the problem). Then:

    - ``apply(outputs, cell_context=None) -> list``: new outputs with rules and scrubbers
      applied; ``last_fired`` then holds ``{name: count}`` for this call only (names that
      fired at least once).
    - ``apply_counted(outputs, cell_context=None) -> (list, dict)``: the same, returning
      this call's counts instead of storing them (safe to share one normalizer between
      threads).
    - ``fired``: ``{name: count}`` accumulated over every call (golden and executed
      sides both count), names that fired at least once.
    - ``warnings() -> list[str]``: user rules, and scrubbers named explicitly in
      ``options.scrubbers``, that never fired. Scrubbers enabled through ``"default"``
      never warn.

    ``cell_context`` is ``{"index": int, "cell_id": str | None, "tags": [...]}``.

    Order within one call: ``options.ignore_mime_types`` (counted as
    ``"ignore_mime_types"``), then ``ignore`` rules, then ``replace`` / ``drop_lines``
    rules in the order given (they see the text as the user sees it), then scrubbers in
    registry order, then ``sort_lines`` rules (last, so variable parts are already
    scrubbed and do not change the order). Afterwards empty streams are dropped and
    consecutive streams of the same name joined again (an ignored stderr between two
    stdout chunks must not split them).

What counts as text (scrubbers and rules touch only these): stream text; data whose MIME
type is ``text/*``, ``*+xml`` (so ``image/svg+xml``), ``application/javascript`` or
``application/xml``; the string leaves (not the keys) of JSON data (``application/json``,
``*+json``); error ``evalue`` and ``traceback`` lines. Base64 payloads (``image/png``,
``application/pdf``, ...) are never touched.

User rules (``model.Rule``): the cell selectors ``tags`` (any of), ``cell_ids``,
``indices`` must all match (an empty one matches everything). The output selectors:
with neither ``streams`` nor ``mime_types`` a rule applies to all text (errors
included); otherwise to the streams named (``stdout`` / ``stderr``) and to data whose
MIME type matches one of ``mime_types`` (shell-style wildcards: ``text/*``). Patterns are
compiled with ``re.MULTILINE``. Actions and what their count means:

- ``replace``: ``pattern`` -> ``replacement`` (backreferences allowed); substitutions.
- ``drop_lines``: lines where ``pattern`` is found are removed; lines removed.
- ``sort_lines``: lines sorted; with a ``pattern``, only each run of consecutive lines
  matching it; texts sorted.
- ``ignore``: selected outputs removed (with ``mime_types``, only those data entries; an
  output left without data is removed); with a ``pattern``, only outputs whose text
  matches it; outputs or entries removed.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .model import CompareOptions, EngineError, Rule

# ----------------------------------------------------------------------------- scrubbers


@dataclass(frozen=True)
class Scrubber:
    """A named, anchored regular expression and the token that replaces its matches."""

    name: str
    pattern: "re.Pattern[str]"
    replacement: str
    description: str

    def scrub(self, text: str) -> Tuple[str, int]:
        return self.pattern.subn(self.replacement, text)


# Characters that end a path in running text (quotes, brackets, separators, ':' before a line number).
_PATH_CHAR = r"[^\s'\"`<>|:;,()\[\]{}]"
# A path starts at a word boundary of its own (not inside "/opt/x/tmp/..."), or after file://.
_PATH_START = r"(?:(?<=file://)|(?<![\w.~/-]))"
_UNITS_FRACTION = r"(?:ns|[\u00b5\u03bcu]s|ms|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?)"
# Without a fraction, "s" and "h" need a space ("3 s"): "1990s" or "5h" in prose stay.
_UNITS_INTEGER = r"(?:ns|[\u00b5\u03bcu]s|ms|secs?|seconds?|mins?|minutes?|hrs?|hours?)"
_TIMEIT_UNIT = r"(?:ns|[\u00b5\u03bcu]s|ms|s|min|h)"
_CLOCK = r"(?:\d+:)?\d{1,2}:\d{2}"
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"

# Order matters and is fixed, whatever order options.scrubbers names them in: whole-line
# scrubbers first, paths before the patterns that could match inside a path.
SCRUBBERS: Dict[str, Scrubber] = {
    s.name: s
    for s in (
        Scrubber(
            "warning_line",
            # warnings.formatwarning: "<file>:<line>: <Category>: <message>" and, when the
            # source is known, the indented source line after it.
            re.compile(
                r"^[^\n]*?:\d+: (?P<category>[A-Z]\w*Warning): [^\n]*(?:\n[ \t]+\S[^\n]*)?",
                re.MULTILINE,
            ),
            r"<WARNING:\g<category>>",
            "Python warning lines (file:line: SomeWarning: message) and their source line",
        ),
        Scrubber(
            "progress_bar",
            # tqdm's default format: "45%|####5     | 45/100 [00:01<00:02, 30.1it/s]" and, with
            # an unknown total, "45it [00:01, 30.1it/s]"; the description before it is kept.
            re.compile(
                # tqdm pads the percentage to 3 wide: the padding belongs to the bar.
                r"(?<![\w.])(?: {0,2}\d{1,3}%\|[^|\n]*\|\s*)?"
                r"\d+(?:\.\d+)?[kMGTPEZY]?(?:/\d+(?:\.\d+)?[kMGTPEZY]?)?[A-Za-z]*"
                r"\s\[" + _CLOCK + r"(?:<(?:" + _CLOCK + r"|\?))?,[^\]\n]*/[^\]\n]*\]"
            ),
            "<PROGRESS>",
            "tqdm-like progress bars: percentage, bar, count, elapsed<remaining, rate",
        ),
        Scrubber(
            "tmp_path",
            re.compile(
                _PATH_START
                + r"(?:(?:/private)?/var/folders|/var/tmp|/tmp)(?![\w.-])(?:/" + _PATH_CHAR + r"*)?(?<![.])"
            ),
            "<TMP_PATH>",
            "temporary paths: /tmp/..., /var/tmp/..., /var/folders/... (macOS)",
        ),
        Scrubber(
            "home_path",
            # Only the home directory itself; the rest of the path usually means something.
            # /opt/app-root/src is $HOME in S2I and Open Data Hub notebook images.
            re.compile(
                _PATH_START
                + r"(?:/home/\w[\w.-]*|/Users/\w[\w.-]*|/root|/opt/app-root/src)(?<![.])(?![\w-]|\.\w)"
                + r"|(?<![\w\\])[A-Za-z]:\\Users\\\w[\w.-]*(?<![.])(?![\w-]|\.\w)"
            ),
            "<HOME>",
            "home directories: /home/<user>, /Users/<user>, /root, /opt/app-root/src, C:\\Users\\<user>",
        ),
        Scrubber(
            "timestamp",
            # A date alone is data (a DataFrame's dates), so a time of day is required.
            re.compile(
                r"(?<![\w])\d{4}(?P<sep>[-/])\d{2}(?P=sep)\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                r"(?:Z|[+-]\d{2}:?\d{2}(?!\d))?(?![\w])"
                r"|(?<![\w])(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:" + _MONTHS + r") [ \d]\d "
                r"\d{2}:\d{2}:\d{2} \d{4}(?!\d)"
            ),
            "<TIMESTAMP>",
            "date and time: ISO 8601 (2024-01-02T03:04:05.123+00:00), log stamps "
            "(2024-01-02 03:04:05,123), time.ctime() (Tue Jan  2 03:04:05 2024)",
        ),
        Scrubber(
            "duration",
            re.compile(
                r"(?<=CPU times: )[^\n]+"
                r"|(?<=Wall time: )[^\n]+"
                # %timeit: the loop count depends on speed too, so the whole line goes.
                r"|(?<![\w.])\d+(?:\.\d+)?\s" + _TIMEIT_UNIT + r"\s\u00b1\s\d+(?:\.\d+)?\s" + _TIMEIT_UNIT
                + r"\sper loop \(mean \u00b1 std\. dev\. of \d+ runs?, [\d,]+ loops? each\)"
                r"|(?<![\w.:])(?<!\d[ T])\d+:\d{2}:\d{2}(?:\.\d+)?(?![\d:])"
                r"|(?<![\w.])\d+\.\d+\s?" + _UNITS_FRACTION + r"(?!\w)"
                r"|(?<![\w.])\d+\s?" + _UNITS_INTEGER + r"(?!\w)"
                r"|(?<![\w.])\d+ s(?!\w)"
            ),
            "<DURATION>",
            "durations: 1.23s, 12 ms, 0:00:01.5, %time's Wall time / CPU times, %timeit lines",
        ),
        Scrubber(
            "memory_address",
            # Only in the "... at 0x..." of default reprs; other hex numbers are data.
            re.compile(r"(?<=\bat )0x[0-9a-fA-F]{6,16}(?![0-9a-zA-Z_])"),
            "<ADDRESS>",
            "memory addresses in reprs: <Foo object at 0x7f3a...>",
        ),
        Scrubber(
            "uuid",
            re.compile(
                r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
                r"(?![0-9A-Fa-f])"
            ),
            "<UUID>",
            "UUIDs in 8-4-4-4-12 hex form",
        ),
    )
}
DEFAULT_SCRUBBERS: Tuple[str, ...] = tuple(SCRUBBERS)


def resolve_scrubbers(names: Optional[Iterable[str]]) -> Tuple[List[Scrubber], List[str]]:
    """The scrubbers to run (registry order) and the names given explicitly.

    ``"default"`` means all of them. Raises ``EngineError`` for an unknown name.
    """
    if names is None:
        names = []
    elif isinstance(names, str):
        names = [names]
    wanted = set()
    explicit: List[str] = []
    for name in names:
        if name == "default":
            wanted.update(DEFAULT_SCRUBBERS)
        elif isinstance(name, str) and name in SCRUBBERS:
            wanted.add(name)
            if name not in explicit:
                explicit.append(name)
        else:
            raise EngineError(
                "unknown scrubber %r; known scrubbers: %s (or 'default' for all of them)"
                % (name, ", ".join(DEFAULT_SCRUBBERS))
            )
    return [SCRUBBERS[name] for name in DEFAULT_SCRUBBERS if name in wanted], explicit


# ----------------------------------------------------------------------------- structural

# CSI (colours, cursor moves), OSC (titles, hyperlinks), charset selection, other 2-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()][A-Za-z0-9]"
    r"|\x1b[@-Z\\-_]"
)
_CR_NEWLINE = re.compile(r"\r+\n")

# nbformat v4 keys of each output type; anything else is run-specific noise.
_SCHEMA_KEYS = {
    "stream": ("output_type", "name", "text"),
    "display_data": ("output_type", "data", "metadata"),
    "execute_result": ("output_type", "data", "metadata"),
    "error": ("output_type", "ename", "evalue", "traceback"),
}
# Output metadata that records UI state or timing, not content.
METADATA_NOISE = frozenset({"execution", "collapsed", "scrolled", "jupyter", "trusted", "ExecuteTime"})
_TEXT_MIME_EXTRA = frozenset({"application/javascript", "application/xml"})


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


def is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def is_text_mime(mime: str) -> bool:
    """MIME types whose value is text that scrubbers and rules may change."""
    return mime.startswith("text/") or mime.endswith("+xml") or mime in _TEXT_MIME_EXTRA


def _join(value: Any) -> Any:
    """nbformat's multi-line strings (a list of str) as one str; other values unchanged."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "".join(value)
    return value


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (NotebookNode is a dict subclass)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return copy.copy(value)


def _backspaced(segment: str) -> str:
    if "\b" not in segment:
        return segment
    kept: List[str] = []
    for char in segment:
        if char == "\b":
            if kept:
                kept.pop()
        else:
            kept.append(char)
    return "".join(kept)


def terminal_text(text: str) -> str:
    """Stream text as a terminal leaves it: ``\\r`` rewrites and ``\\b`` erasures resolved."""
    if "\r" not in text and "\b" not in text:
        return text
    text = _CR_NEWLINE.sub("\n", text)
    lines = []
    for line in text.split("\n"):
        if "\r" in line or "\b" in line:
            segments = [_backspaced(part) for part in line.split("\r")]
            shown = next((part for part in reversed(segments) if part), "")
            line = shown.rstrip(" ") if len(segments) > 1 else shown
        lines.append(line)
    return "\n".join(lines)


def _display_id(output: Mapping[str, Any]) -> Optional[str]:
    transient = output.get("transient")
    if isinstance(transient, Mapping):
        display_id = transient.get("display_id")
        if display_id is not None:
            return str(display_id)
    return None


def _replay(outputs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Apply clear_output and update_display_data the way nbclient does while a cell runs."""
    shown: List[Dict[str, Any]] = []
    clear_pending = False
    for raw in outputs:
        output = _plain(raw)
        output_type = output.get("output_type")
        if output_type == "clear_output":
            if output.get("wait"):
                clear_pending = True
            else:
                shown = []
                clear_pending = False
            continue
        if output_type == "update_display_data":
            display_id = _display_id(output)
            for target in shown:
                if display_id is not None and _display_id(target) == display_id:
                    target["data"] = copy.deepcopy(output.get("data") or {})
                    target["metadata"] = copy.deepcopy(output.get("metadata") or {})
            continue  # an update is never an output of its own
        if clear_pending:
            shown = []
            clear_pending = False
        shown.append(output)
    return shown


def _clean(output: Dict[str, Any]) -> Dict[str, Any]:
    """Drop noise keys, join multi-line values, strip ANSI from non-stream text."""
    output_type = output.get("output_type")
    keys = _SCHEMA_KEYS.get(output_type)
    if keys is None:
        cleaned = {k: v for k, v in output.items() if k not in ("transient", "execution_count")}
    else:
        cleaned = {k: output[k] for k in keys if k in output}
    if output_type == "stream":
        cleaned["name"] = str(cleaned.get("name") or "stdout")
        cleaned["text"] = _join(cleaned.get("text", ""))
        if not isinstance(cleaned["text"], str):
            cleaned["text"] = str(cleaned["text"])
    elif output_type in ("display_data", "execute_result"):
        data = {}
        for mime, value in (cleaned.get("data") or {}).items():
            if not is_json_mime(mime):
                value = _join(value)
                if is_text_mime(mime) and isinstance(value, str):
                    value = strip_ansi(value)
            data[mime] = value
        cleaned["data"] = data
        metadata = cleaned.get("metadata") or {}
        cleaned["metadata"] = {k: v for k, v in metadata.items() if k not in METADATA_NOISE}
    elif output_type == "error":
        cleaned["ename"] = str(cleaned.get("ename", ""))
        cleaned["evalue"] = strip_ansi(str(cleaned.get("evalue", "")))
        traceback = cleaned.get("traceback") or []
        if isinstance(traceback, str):
            traceback = traceback.splitlines()
        cleaned["traceback"] = [strip_ansi(str(line)) for line in traceback]
    return cleaned


def _coalesce(outputs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Join consecutive streams of the same name."""
    joined: List[Dict[str, Any]] = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and output.get("output_type") == "stream"
            and previous.get("output_type") == "stream"
            and previous.get("name") == output.get("name")
        ):
            previous["text"] += output["text"]
        else:
            joined.append(output)
    return joined


def _without_empty_streams(outputs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [o for o in outputs if not (o.get("output_type") == "stream" and not o.get("text"))]


def structural(outputs: Optional[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Outputs as a person sees them (see the module docstring); the input is not modified."""
    cleaned = [_clean(output) for output in _replay(outputs or [])]
    # ANSI and \r are resolved after joining: one escape or one progress line may span messages.
    merged = _coalesce(cleaned)
    for output in merged:
        if output.get("output_type") == "stream":
            output["text"] = terminal_text(strip_ansi(output["text"]))
    return _without_empty_streams(merged)


def strip_warnings(outputs: Sequence[Mapping[str, Any]]) -> Tuple[List[Dict[str, Any]], int]:
    """Outputs without Python warning lines in stderr streams, and how many were removed.

    For the ``ignore_warnings`` stderr policy; a stderr output left empty is removed.
    """
    pattern = SCRUBBERS["warning_line"].pattern
    removed = 0
    result: List[Dict[str, Any]] = []
    for output in outputs:
        output = _plain(output)
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text, count = pattern.subn("", _join(output.get("text", "")))
            if count:
                removed += count
                # each warning leaves an empty line behind
                text = re.sub(r"(?m)^\n", "", text) if text.strip() else ""
            output["text"] = text
        result.append(output)
    return _without_empty_streams(result), removed


# ----------------------------------------------------------------------------- user rules

RULE_ACTIONS = ("replace", "ignore", "drop_lines", "sort_lines")
STREAM_NAMES = ("stdout", "stderr")
_RULE_FIELDS = ("name", "action", "pattern", "replacement", "tags", "cell_ids", "indices", "mime_types", "streams")

# A text target inside an output: ("stream", name), ("mime", mime type) or ("error", "").
Target = Tuple[str, str]


def _string_list(rule_name: str, field_name: str, value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise EngineError("rule %r: %s must be a list of strings" % (rule_name, field_name))
    return [str(item) for item in value]


class _CompiledRule:
    """A validated ``model.Rule`` with its regex compiled."""

    def __init__(self, rule: Rule):
        name = rule.name
        if not isinstance(name, str) or not name.strip():
            raise EngineError("a normalization rule has no name (every rule needs a unique 'name')")
        self.name = name
        if rule.action not in RULE_ACTIONS:
            raise EngineError(
                "rule %r: unknown action %r; use one of %s" % (name, rule.action, ", ".join(RULE_ACTIONS))
            )
        self.action: str = rule.action
        self.pattern: Optional["re.Pattern[str]"] = None
        if rule.pattern not in (None, ""):
            try:
                self.pattern = re.compile(str(rule.pattern), re.MULTILINE)
            except re.error as err:
                raise EngineError("rule %r: invalid regular expression %r: %s" % (name, rule.pattern, err)) from None
        elif self.action in ("replace", "drop_lines"):
            raise EngineError("rule %r: action %r needs a 'pattern'" % (name, self.action))
        self.replacement = "" if rule.replacement is None else str(rule.replacement)
        if self.action == "replace":
            try:  # the template is parsed even without a match, so bad group references show now
                self.pattern.sub(self.replacement, "")  # type: ignore[union-attr]
            except (re.error, IndexError) as err:
                raise EngineError("rule %r: invalid replacement %r: %s" % (name, self.replacement, err)) from None
        self.tags = set(_string_list(name, "tags", rule.tags))
        self.cell_ids = set(_string_list(name, "cell_ids", rule.cell_ids))
        self.mime_types = _string_list(name, "mime_types", rule.mime_types)
        self.streams = set(_string_list(name, "streams", rule.streams))
        unknown_streams = sorted(self.streams - set(STREAM_NAMES))
        if unknown_streams:
            raise EngineError(
                "rule %r: unknown stream(s) %s; streams are %s"
                % (name, ", ".join(unknown_streams), " and ".join(STREAM_NAMES))
            )
        self.indices = _index_set(name, rule.indices)

    def selects_cell(self, context: Mapping[str, Any]) -> bool:
        if self.tags and not self.tags.intersection(context.get("tags") or ()):
            return False
        if self.cell_ids and context.get("cell_id") not in self.cell_ids:
            return False
        if self.indices and context.get("index") not in self.indices:
            return False
        return True

    @property
    def selects_outputs_by_kind(self) -> bool:
        return bool(self.streams or self.mime_types)

    def selects(self, target: Target) -> bool:
        if not self.selects_outputs_by_kind:
            return True
        kind, name = target
        if kind == "stream":
            return name in self.streams
        if kind == "mime":
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.mime_types)
        return False  # errors only for rules without stream / MIME selectors

    def edit(self, text: str) -> Tuple[str, int]:
        if self.action == "replace":
            return self.pattern.subn(self.replacement, text)  # type: ignore[union-attr]
        if self.action == "drop_lines":
            lines = text.splitlines(keepends=True)
            kept = [line for line in lines if not self.pattern.search(line)]  # type: ignore[union-attr]
            return "".join(kept), len(lines) - len(kept)
        if self.action == "sort_lines":
            return self._sorted(text)
        return text, 0

    def _sorted(self, text: str) -> Tuple[str, int]:
        ends_with_newline = text.endswith("\n")
        lines = text.split("\n")
        if ends_with_newline:
            lines.pop()
        if self.pattern is None:
            if len(lines) < 2:
                return text, 0
            result = sorted(lines)
        else:
            # Only runs of consecutive matching lines move; the lines around them stay put.
            result, run, sorted_any = [], [], False
            for line in lines:
                if self.pattern.search(line):
                    run.append(line)
                    continue
                sorted_any = sorted_any or len(run) >= 2
                result.extend(sorted(run))
                run = []
                result.append(line)
            sorted_any = sorted_any or len(run) >= 2
            result.extend(sorted(run))
            if not sorted_any:
                return text, 0
        return "\n".join(result) + ("\n" if ends_with_newline else ""), 1


def _index_set(rule_name: str, value: Any) -> set:
    """Cell indices as ints; digit strings are accepted (templated values arrive as text)."""
    if value is None:
        return set()
    if not isinstance(value, (list, tuple)):
        value = [value]
    indices = set()
    for item in value:
        if isinstance(item, str) and re.fullmatch(r"\s*\d+\s*", item):
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise EngineError("rule %r: indices must be a list of integers, got %r" % (rule_name, item))
        indices.add(item)
    return indices


def _as_rule(raw: Any, position: int) -> Rule:
    if isinstance(raw, Rule):
        return raw
    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - set(_RULE_FIELDS))
        label = raw.get("name") or "#%d" % (position + 1)
        if unknown:
            raise EngineError(
                "rule %r: unknown field(s) %s; fields are %s" % (label, ", ".join(unknown), ", ".join(_RULE_FIELDS))
            )
        if "name" not in raw or "action" not in raw:
            raise EngineError("rule %r: 'name' and 'action' are required" % label)
        return Rule(**dict(raw))
    raise EngineError("normalization rule #%d is not a mapping: %r" % (position + 1, raw))


# ----------------------------------------------------------------------------- normalizer


def _edit_texts(
    outputs: List[Dict[str, Any]],
    selects: Callable[[Target], bool],
    edit: Callable[[str], Tuple[str, int]],
) -> int:
    """Run ``edit`` on every selected text target, in place; the total count it reports."""
    total = 0

    def run(text: Any) -> Any:
        nonlocal total
        if not isinstance(text, str):
            return text
        new_text, count = edit(text)
        total += count
        return new_text

    def walk_json(value: Any) -> Any:
        if isinstance(value, str):
            return run(value)
        if isinstance(value, list):
            return [walk_json(item) for item in value]
        if isinstance(value, dict):
            return {key: walk_json(item) for key, item in value.items()}
        return value

    for output in outputs:
        output_type = output.get("output_type")
        if output_type == "stream":
            if selects(("stream", output.get("name", ""))):
                output["text"] = run(_join(output.get("text", "")))
        elif output_type in ("display_data", "execute_result"):
            data = output.get("data") or {}
            for mime in list(data):
                if not selects(("mime", mime)):
                    continue
                if is_json_mime(mime):
                    data[mime] = walk_json(data[mime])
                elif is_text_mime(mime):
                    data[mime] = run(_join(data[mime]))
        elif output_type == "error":
            if selects(("error", "")):
                output["evalue"] = run(output.get("evalue", ""))
                output["traceback"] = [run(line) for line in output.get("traceback") or []]
    return total


def _text_of(value: Any) -> str:
    value = _join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _ignore(outputs: List[Dict[str, Any]], rule: _CompiledRule) -> Tuple[List[Dict[str, Any]], int]:
    """Outputs without those the ignore rule selects, and how many outputs/entries went."""
    def matches(text: Any) -> bool:
        return rule.pattern is None or bool(rule.pattern.search(_text_of(text)))

    kept: List[Dict[str, Any]] = []
    removed = 0
    for output in outputs:
        output_type = output.get("output_type")
        if output_type == "stream":
            if rule.selects(("stream", output.get("name", ""))) and matches(output.get("text", "")):
                removed += 1
                continue
        elif output_type in ("display_data", "execute_result"):
            data = output.get("data") or {}
            if not rule.selects_outputs_by_kind:
                if rule.pattern is None or any(matches(value) for value in data.values()):
                    removed += 1
                    continue
            else:
                gone = [m for m, v in data.items() if rule.selects(("mime", m)) and matches(v)]
                for mime in gone:
                    del data[mime]
                removed += len(gone)
                if gone and not data:
                    continue
        elif output_type == "error":
            if rule.selects(("error", "")) and (
                rule.pattern is None or matches(output.get("evalue", "")) or matches(output.get("traceback") or [])
            ):
                removed += 1
                continue
        kept.append(output)
    return kept, removed


def _ignore_mime_types(outputs: List[Dict[str, Any]], patterns: Sequence[str]) -> Tuple[List[Dict[str, Any]], int]:
    if not patterns:
        return outputs, 0
    kept: List[Dict[str, Any]] = []
    removed = 0
    for output in outputs:
        data = output.get("data")
        if output.get("output_type") in ("display_data", "execute_result") and isinstance(data, dict):
            gone = [m for m in data if any(fnmatch.fnmatchcase(m, p) for p in patterns)]
            for mime in gone:
                del data[mime]
            removed += len(gone)
            if gone and not data:
                continue
        kept.append(output)
    return kept, removed


class Normalizer:
    """Scrubbers and user rules of one run; counts what fired (see the module docstring)."""

    def __init__(self, options: Optional[CompareOptions] = None):
        options = options if options is not None else CompareOptions()
        self.scrubbers, self._explicit_scrubbers = resolve_scrubbers(options.scrubbers)
        self.rules: List[_CompiledRule] = []
        seen = set()
        for position, raw in enumerate(options.rules or []):
            rule = _CompiledRule(_as_rule(raw, position))
            if rule.name in seen:
                raise EngineError("rule %r: two rules have this name; rule names must be unique" % rule.name)
            if rule.name in SCRUBBERS or rule.name == "ignore_mime_types":
                raise EngineError("rule %r: this name belongs to a built-in scrubber; choose another" % rule.name)
            seen.add(rule.name)
            self.rules.append(rule)
        self.ignore_mime_types = _string_list("ignore_mime_types", "ignore_mime_types", options.ignore_mime_types)
        self.fired: Dict[str, int] = {}
        self.last_fired: Dict[str, int] = {}

    def apply(
        self, outputs: Sequence[Mapping[str, Any]], cell_context: Optional[Mapping[str, Any]] = None
    ) -> List[Dict[str, Any]]:
        """New outputs with rules and scrubbers applied; ``last_fired`` holds this call's counts."""
        result, counts = self.apply_counted(outputs, cell_context)
        self.last_fired = counts
        return result

    def apply_counted(
        self, outputs: Sequence[Mapping[str, Any]], cell_context: Optional[Mapping[str, Any]] = None
    ) -> Tuple[List[Dict[str, Any]], Dict[str, int]]:
        """New outputs and ``{name: count}`` for this call (also added to ``fired``)."""
        context = cell_context or {}
        result = [_plain(output) for output in outputs or []]
        counts: Dict[str, int] = {}

        def count(name: str, n: int) -> None:
            if n:
                counts[name] = counts.get(name, 0) + n

        result, removed = _ignore_mime_types(result, self.ignore_mime_types)
        count("ignore_mime_types", removed)
        rules = [rule for rule in self.rules if rule.selects_cell(context)]
        for rule in rules:
            if rule.action == "ignore":
                result, removed = _ignore(result, rule)
                count(rule.name, removed)
        for rule in rules:
            if rule.action in ("replace", "drop_lines"):
                count(rule.name, _edit_texts(result, rule.selects, rule.edit))
        for scrubber in self.scrubbers:
            count(scrubber.name, _edit_texts(result, lambda target: True, scrubber.scrub))
        for rule in rules:
            if rule.action == "sort_lines":
                count(rule.name, _edit_texts(result, rule.selects, rule.edit))
        result = _coalesce(_without_empty_streams(result))

        for name, n in counts.items():
            self.fired[name] = self.fired.get(name, 0) + n
        return result, counts

    def warnings(self) -> List[str]:
        """Rules, and explicitly named scrubbers, that never fired in any call so far."""
        messages = [
            "normalization rule %r (%s) never fired: it matched no output in this run" % (rule.name, rule.action)
            for rule in self.rules
            if not self.fired.get(rule.name)
        ]
        messages.extend(
            "scrubber %r never fired: it matched no output in this run" % name
            for name in self._explicit_scrubbers
            if not self.fired.get(name)
        )
        return messages
