# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of output normalization: structural clean-up, scrubbers, user rules, counts."""

from __future__ import annotations

import copy

import pytest
from nbformat import NotebookNode

from ansible_collections.mlops.notebooks.plugins.module_utils.notebook import normalization as norm
from ansible_collections.mlops.notebooks.plugins.module_utils.notebook.model import CompareOptions, EngineError, Rule


def stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def display(data, metadata=None, display_id=None, output_type="display_data"):
    output = {"output_type": output_type, "data": data, "metadata": metadata or {}}
    if display_id is not None:
        output["transient"] = {"display_id": display_id}
    return output


def error(evalue, traceback, ename="ValueError"):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}


def normalizer(*rules, scrubbers=("default",), **options):
    return norm.Normalizer(CompareOptions(scrubbers=list(scrubbers), rules=list(rules), **options))


CTX = {"index": 3, "cell_id": "abc", "tags": ["slow", "net"]}


# ----------------------------------------------------------------------------- structural


class TestStructural:
    def test_input_not_modified_and_plain_dicts_returned(self):
        nbformat = pytest.importorskip("nbformat", reason="nbformat is in requirements.txt; needed for NotebookNode")
        outputs = [
            nbformat.from_dict(stream(["a\r", "b\n"])),
            nbformat.from_dict(display({"text/plain": ["x"]}, {"execution": 1}, output_type="execute_result")),
        ]
        outputs[1]["execution_count"] = 7
        before = copy.deepcopy(outputs)
        result = norm.structural(outputs)
        assert outputs == before
        # plain dicts, not NotebookNode views of the input
        assert all(isinstance(o, dict) and not isinstance(o, NotebookNode) for o in result)
        assert isinstance(result[1]["data"], dict) and not isinstance(result[1]["data"], NotebookNode)
        result[1]["data"]["text/plain"] = "changed"
        assert outputs[1]["data"]["text/plain"] == ["x"]

    def test_none_and_empty(self):
        assert norm.structural(None) == []
        assert norm.structural([]) == []

    def test_consecutive_streams_of_same_name_joined(self):
        result = norm.structural([stream("a\n"), stream(["b", "\n"]), stream("e\n", "stderr"), stream("c\n")])
        assert result == [stream("a\nb\n"), stream("e\n", "stderr"), stream("c\n")]

    def test_carriage_return_keeps_last_version_across_messages(self):
        chunks = ["\r  0%|          | 0/3", "\r 33%|###3      | 1/3", "\r 67%|######6   | 2/3", "\r100%|##########| 3/3\n"]
        result = norm.structural([stream(chunk, "stderr") for chunk in chunks] + [stream("done\n", "stderr")])
        assert result == [stream("100%|##########| 3/3\ndone\n", "stderr")]

    def test_carriage_return_padding_removed_and_trailing_cr_keeps_line(self):
        # tqdm erases a longer earlier version with spaces; the count of spaces depends on timing
        assert norm.terminal_text("long line here\rshort         \n") == "short\n"
        assert norm.terminal_text("abc\r") == "abc"
        assert norm.terminal_text("abc\r\rdef") == "def"
        # a line erased with spaces and a final \r shows nothing
        assert norm.terminal_text("keep\nabc\r   \r") == "keep\n"
        # no overwrite remnants of the longer earlier version
        assert norm.terminal_text("Downloading\rDone\n") == "Done\n"

    def test_crlf_is_a_newline(self):
        assert norm.terminal_text("a\r\nb\r\r\nc") == "a\nb\nc"

    def test_backspace_erases_previous_character_of_the_line(self):
        assert norm.terminal_text("abc\b\bX\n") == "aX\n"
        assert norm.terminal_text("a\n\bb") == "a\nb"
        assert norm.terminal_text("\b\bz") == "z"
        assert norm.structural([stream("spin|\b/\b-\bdone\n")]) == [stream("spindone\n")]

    def test_text_without_control_characters_unchanged(self):
        text = "plain\n  indented  \n"
        assert norm.terminal_text(text) is text

    def test_ansi_removed_from_streams_data_and_errors(self):
        colored = "\x1b[31mred\x1b[0m \x1b[1;32mbold\x1b[0m"
        result = norm.structural(
            [
                stream(colored + "\n"),
                display({"text/plain": colored, "text/html": "<b>\x1b[0mx</b>"}),
                error("\x1b[31mbad\x1b[0m", ["\x1b[0;31m---------\x1b[0m", "\x1b[1;32mValueError\x1b[0m: bad"]),
                stream("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[2K\x1b[Adone\n", "stderr"),
            ]
        )
        assert result[0]["text"] == "red bold\n"
        assert result[1]["data"] == {"text/plain": "red bold", "text/html": "<b>x</b>"}
        assert result[2]["evalue"] == "bad"
        assert result[2]["traceback"] == ["---------", "ValueError: bad"]
        assert result[3]["text"] == "link done\n"

    def test_ansi_escape_split_across_stream_messages(self):
        assert norm.structural([stream("\x1b[3"), stream("1mred\x1b[0m\n")]) == [stream("red\n")]

    def test_execution_count_transient_and_noise_dropped(self):
        output = display(
            {"text/plain": "1"},
            {"execution": {"shell.execute_reply": "now"}, "scrolled": True, "image/png": {"width": 10}},
            output_type="execute_result",
        )
        output["execution_count"] = 12
        output["transient"] = {"display_id": "d"}
        output["prompt_number"] = 12
        result = norm.structural([output])
        assert result == [{"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {"image/png": {"width": 10}}}]

    def test_multiline_values_joined_except_json(self):
        result = norm.structural(
            [display({"text/plain": ["a\n", "b"], "application/json": ["x", "y"], "image/png": ["iVBO", "Rw=="]})]
        )
        assert result[0]["data"] == {"text/plain": "a\nb", "application/json": ["x", "y"], "image/png": "iVBORw=="}

    def test_base64_image_not_altered(self):
        png = "iVBORw0KGgo\x1b[0m"  # not real base64; proves non-text data is left alone
        assert norm.structural([display({"image/png": png})])[0]["data"]["image/png"] == png

    def test_clear_output_drops_earlier_outputs(self):
        outputs = [stream("1\n"), display({"text/plain": "a"}), {"output_type": "clear_output", "wait": False}, stream("2\n")]
        assert norm.structural(outputs) == [stream("2\n")]

    def test_clear_output_between_streams_prevents_joining_old_text(self):
        outputs = [stream("old\n"), {"output_type": "clear_output", "wait": False}, stream("new\n"), stream("more\n")]
        assert norm.structural(outputs) == [stream("new\nmore\n")]

    def test_clear_output_wait_clears_when_next_output_arrives(self):
        outputs = [stream("1\n"), {"output_type": "clear_output", "wait": True}, stream("2\n")]
        assert norm.structural(outputs) == [stream("2\n")]

    def test_clear_output_wait_without_following_output_keeps_earlier(self):
        outputs = [stream("1\n"), {"output_type": "clear_output", "wait": True}]
        assert norm.structural(outputs) == [stream("1\n")]

    def test_update_display_data_replaces_data_of_same_display_id(self):
        outputs = [
            display({"text/plain": "loading"}, display_id="d1"),
            display({"text/plain": "other"}, display_id="d2"),
            stream("x\n"),
            {
                "output_type": "update_display_data",
                "data": {"text/plain": "done"},
                "metadata": {"k": 1},
                "transient": {"display_id": "d1"},
            },
        ]
        result = norm.structural(outputs)
        assert result == [
            {"output_type": "display_data", "data": {"text/plain": "done"}, "metadata": {"k": 1}},
            {"output_type": "display_data", "data": {"text/plain": "other"}, "metadata": {}},
            stream("x\n"),
        ]
        assert outputs[0]["data"] == {"text/plain": "loading"}  # input untouched

    def test_update_display_data_without_target_is_removed(self):
        update = {"output_type": "update_display_data", "data": {"text/plain": "x"}, "transient": {"display_id": "z"}}
        assert norm.structural([stream("a\n"), update]) == [stream("a\n")]

    def test_empty_streams_dropped(self):
        assert norm.structural([stream(""), stream("abc\r   \r", "stderr")]) == []

    def test_structural_is_idempotent(self):
        outputs = [stream("a\rb\n"), stream("c\x1b[0m\n"), display({"text/plain": ["x"]}, display_id="q")]
        once = norm.structural(outputs)
        assert norm.structural(once) == once


# ----------------------------------------------------------------------------- scrubbers

SCRUBBER_CASES = {
    "memory_address": (
        [
            ("<__main__.Foo object at 0x7f3a2b1c4d50>", "<__main__.Foo object at <ADDRESS>>"),
            ("[<matplotlib.lines.Line2D at 0x7f3a2b1c4d50>]", "[<matplotlib.lines.Line2D at <ADDRESS>>]"),
            ("<function f at 0x10a3b4c90>", "<function f at <ADDRESS>>"),
            ("&lt;Foo object at 0x7f3a2b1c4d50&gt;", "&lt;Foo object at <ADDRESS>&gt;"),
        ],
        ["value = 0x7f3a2b1c4d50", "flag at 0xFF", "mask 0xdeadbeefcafe", "at 0x7f3a2b1c4d50zz", "cat 0x7f3a2b1c4d50"],
    ),
    "timestamp": (
        [
            ("start 2024-01-02T03:04:05.123456+00:00 end", "start <TIMESTAMP> end"),
            ("2024-01-02 03:04:05,123 INFO ready", "<TIMESTAMP> INFO ready"),
            ("at 2024-01-02T03:04:05Z.", "at <TIMESTAMP>."),
            ("2024/01/02 03:04 x", "<TIMESTAMP> x"),
            ("Tue Jan  2 03:04:05 2024", "<TIMESTAMP>"),
        ],
        ["date 2024-01-02 only", "12024-01-02 03:04:05", "v2024-01-02 03:04", "2024-01-02-03:04:05", "03:04:05"],
    ),
    "duration": (
        [
            ("took 1.23s", "took <DURATION>"),
            ("12 ms per step", "<DURATION> per step"),
            ("elapsed 0:00:01.5", "elapsed <DURATION>"),
            ("Wall time: 2.1 s", "Wall time: <DURATION>"),
            ("CPU times: user 1.2 ms, sys: 3 \u00b5s, total: 1.2 ms\n", "CPU times: <DURATION>\n"),
            ("CPU times: total: 15.6 ms", "CPU times: <DURATION>"),
            (
                "1.23 \u00b5s \u00b1 45.6 ns per loop (mean \u00b1 std. dev. of 7 runs, 1,000,000 loops each)",
                "<DURATION>",
            ),
            ("wait 3 s, then 2 minutes", "wait <DURATION>, then <DURATION>"),
            ("done in 0.5 sec.", "done in <DURATION>."),
        ],
        ["the 1990s", "5h", "10 secretaries", "12 msgs", "v1.2s", "ratio 1:05", "1.5 hPa", "3.5 meters"],
    ),
    "uuid": (
        [
            ("id 123e4567-e89b-12d3-a456-426614174000.", "id <UUID>."),
            ("kernel-123E4567-E89B-12D3-A456-426614174000.json", "kernel-<UUID>.json"),
        ],
        ["123e4567-e89b-12d3-a456-42661417400", "0123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"],
    ),
    "tmp_path": (
        [
            ("saved to /tmp/tmpab12/out.csv.", "saved to <TMP_PATH>."),
            ('File "/tmp/ipykernel_123/456.py", line 2', 'File "<TMP_PATH>", line 2'),
            ("/var/folders/xy/abc/T/x:3", "<TMP_PATH>:3"),
            ("/private/var/folders/a/b", "<TMP_PATH>"),
            ("open file:///tmp/x.html", "open file://<TMP_PATH>"),
            ("in /tmp", "in <TMP_PATH>"),
        ],
        ["/home/u/tmp/x", "/tmpfoo/x", "data/tmp/x", "~/tmp/x"],
    ),
    "home_path": (
        [
            ("/home/alice/proj/x.py", "<HOME>/proj/x.py"),
            ("/root/.cache/pip", "<HOME>/.cache/pip"),
            ("/Users/bob.smith/a", "<HOME>/a"),
            ("cwd is /opt/app-root/src.", "cwd is <HOME>."),
            ("C:\\Users\\bob\\x", "<HOME>\\x"),
            ("'/home/jovyan'", "'<HOME>'"),
        ],
        ["/rootfs/x", "/srv/home/alice/x", "/opt/app-root/srcx", "home/alice"],
    ),
    "progress_bar": (
        [
            ("Epoch 1:  45%|\u2588\u2588\u2588\u2588\u258c     | 45/100 [00:01<00:02, 30.1it/s]", "Epoch 1:<PROGRESS>"),
            ("Epoch 1: 100%|##########| 100/100 [00:03<00:00, 30.0it/s]", "Epoch 1:<PROGRESS>"),
            ("45it [00:01, 30.1it/s]", "<PROGRESS>"),
            ("  0%|          | 0/100 [00:00<?, ?it/s]", "<PROGRESS>"),
            ("12.5MB [00:01, 10.1MB/s]", "<PROGRESS>"),
            ("50%|#####     | 1/2 [00:01<00:01,  1.23s/it, loss=0.5]\nnext", "<PROGRESS>\nnext"),
        ],
        ["Result 5 [00:01]", "see [1]", "45% of 100 [a, b/c]", "score 3 [00:01, fast]"],
    ),
    "warning_line": (
        [
            (
                '/tmp/ipykernel_12/345.py:2: DeprecationWarning: old\n  warnings.warn("old", DeprecationWarning)\nnext',
                "<WARNING:DeprecationWarning>\nnext",
            ),
            ("x.py:12: UserWarning: hi\nnot indented", "<WARNING:UserWarning>\nnot indented"),
            ("<ipython-input-3-abc>:1: FutureWarning: soon", "<WARNING:FutureWarning>"),
        ],
        ["line: 12: not a warning", "x.py:12: UserWarning without message", "see x.py:12: warning: lowercase"],
    ),
}


def test_registry_has_every_documented_scrubber():
    assert set(norm.SCRUBBERS) == set(SCRUBBER_CASES)
    for name, scrubber in norm.SCRUBBERS.items():
        assert scrubber.name == name and scrubber.description


@pytest.mark.parametrize(
    "name, text, expected",
    [(name, text, expected) for name, (positive, _negative) in SCRUBBER_CASES.items() for text, expected in positive],
)
def test_scrubber_replaces_its_pattern(name, text, expected):
    scrubber = norm.SCRUBBERS[name]
    scrubbed, count = scrubber.scrub(text)
    assert scrubbed == expected
    token = scrubber.replacement.split("\\g")[0]  # "<WARNING:\\g<category>>" -> "<WARNING:"
    assert count == expected.count(token) - text.count(token) > 0


@pytest.mark.parametrize(
    "name, text", [(name, text) for name, (_positive, negative) in SCRUBBER_CASES.items() for text in negative]
)
def test_scrubber_leaves_unrelated_text(name, text):
    assert norm.SCRUBBERS[name].scrub(text) == (text, 0)


def test_scrubbers_in_registry_order_keep_paths_whole():
    # uuid inside a temp path: the path scrubber runs first and takes the whole path
    outputs = [stream("/tmp/123e4567-e89b-12d3-a456-426614174000/x.txt\n")]
    result = normalizer().apply(outputs)
    assert result == [stream("<TMP_PATH>\n")]


def test_timestamp_runs_before_duration():
    n = normalizer()
    assert n.apply([stream("2024-01-02 03:04:05,123 took 1.5s\n")]) == [stream("<TIMESTAMP> took <DURATION>\n")]
    assert n.last_fired == {"timestamp": 1, "duration": 1}


def test_duration_alone_does_not_take_the_time_of_a_log_stamp():
    n = normalizer(scrubbers=["duration"])
    assert n.apply([stream("2024-01-02 03:04:05 ok\n")]) == [stream("2024-01-02 03:04:05 ok\n")]


# ----------------------------------------------------------------------------- scrubber selection


class TestScrubberSelection:
    def test_default_means_all(self):
        assert [s.name for s in normalizer().scrubbers] == list(norm.SCRUBBERS)

    def test_explicit_subset_in_registry_order(self):
        assert [s.name for s in normalizer(scrubbers=["uuid", "tmp_path"]).scrubbers] == ["tmp_path", "uuid"]

    def test_none_selected(self):
        n = normalizer(scrubbers=[])
        assert n.apply([stream("/tmp/x\n")]) == [stream("/tmp/x\n")]

    def test_unknown_scrubber_is_a_clear_error(self):
        with pytest.raises(EngineError) as err:
            normalizer(scrubbers=["default", "ip_address"])
        assert "unknown scrubber 'ip_address'" in str(err.value)
        assert "memory_address" in str(err.value)


# ----------------------------------------------------------------------------- what counts as text


class TestTextTargets:
    def test_text_mime_types_scrubbed_binary_left_alone(self):
        data = {
            "text/plain": "at 0x7f3a2b1c4d50",
            "text/html": "<td>/tmp/x</td>",
            "image/svg+xml": "<dc:date>2024-01-02T03:04:05</dc:date>",
            "image/png": "2024-01-02T03:04:05",
            "application/pdf": "/tmp/x",
        }
        result = normalizer().apply([display(data)])
        assert result[0]["data"] == {
            "text/plain": "at <ADDRESS>",
            "text/html": "<td><TMP_PATH></td>",
            "image/svg+xml": "<dc:date><TIMESTAMP></dc:date>",
            "image/png": "2024-01-02T03:04:05",
            "application/pdf": "/tmp/x",
        }

    def test_json_string_leaves_scrubbed_not_keys(self):
        data = {"application/json": {"/tmp/k": ["/tmp/a", 1, {"p": "/tmp/b"}], "n": None}}
        result = normalizer().apply([display(data)])
        assert result[0]["data"]["application/json"] == {"/tmp/k": ["<TMP_PATH>", 1, {"p": "<TMP_PATH>"}], "n": None}

    def test_error_evalue_and_traceback_scrubbed(self):
        result = normalizer().apply([error("at 0x7f3a2b1c4d50", ['File "/tmp/ipykernel_1/2.py", line 1'])])
        assert result == [error("at <ADDRESS>", ['File "<TMP_PATH>", line 1'])]

    def test_apply_does_not_modify_input(self):
        outputs = [stream("/tmp/x\n"), display({"application/json": {"a": "/tmp/y"}})]
        before = copy.deepcopy(outputs)
        normalizer().apply(outputs)
        assert outputs == before


# ----------------------------------------------------------------------------- rule validation


class TestRuleValidation:
    @pytest.mark.parametrize(
        "rule, message",
        [
            (Rule(name="bad", action="replace", pattern="(unclosed"), "rule 'bad': invalid regular expression"),
            (Rule(name="bad", action="explode", pattern="x"), "rule 'bad': unknown action 'explode'"),
            (Rule(name="bad", action="replace"), "rule 'bad': action 'replace' needs a 'pattern'"),
            (Rule(name="bad", action="drop_lines", pattern=""), "rule 'bad': action 'drop_lines' needs a 'pattern'"),
            (Rule(name="bad", action="replace", pattern="a", replacement=r"\2"), "rule 'bad': invalid replacement"),
            (Rule(name="bad", action="replace", pattern="a", replacement=r"\g<x>"), "rule 'bad': invalid replacement"),
            (Rule(name="bad", action="ignore", streams=["stdin"]), "rule 'bad': unknown stream(s) stdin"),
            (Rule(name="bad", action="ignore", indices=["first"]), "rule 'bad': indices must be a list of integers"),
            (Rule(name="uuid", action="ignore"), "rule 'uuid': this name belongs to a built-in scrubber"),
            (Rule(name="", action="ignore"), "has no name"),
        ],
    )
    def test_invalid_rule_rejected_at_construction(self, rule, message):
        with pytest.raises(EngineError) as err:
            normalizer(rule)
        assert message in str(err.value)

    def test_duplicate_rule_names_rejected(self):
        with pytest.raises(EngineError, match="rule 'r': two rules have this name"):
            normalizer(Rule(name="r", action="ignore"), Rule(name="r", action="sort_lines"))

    def test_rules_given_as_mappings(self):
        n = normalizer({"name": "m", "action": "replace", "pattern": "a", "replacement": "b", "indices": ["3"]})
        assert n.apply([stream("a\n")], CTX) == [stream("b\n")]

    def test_mapping_with_unknown_field_rejected(self):
        with pytest.raises(EngineError, match="rule 'm': unknown field.*regex"):
            normalizer({"name": "m", "action": "replace", "regex": "a"})

    def test_mapping_without_action_rejected(self):
        with pytest.raises(EngineError, match="'name' and 'action' are required"):
            normalizer({"name": "m"})


# ----------------------------------------------------------------------------- rule actions


class TestRuleActions:
    def test_replace_with_backreference_counts_substitutions(self):
        n = normalizer(Rule(name="seed", action="replace", pattern=r"seed=(\d+)", replacement=r"seed=N(\1)"), scrubbers=[])
        assert n.apply([stream("seed=1 seed=22\n")]) == [stream("seed=N(1) seed=N(22)\n")]
        assert n.last_fired == {"seed": 2}

    def test_replace_pattern_is_multiline(self):
        n = normalizer(Rule(name="hdr", action="replace", pattern=r"^# .*$", replacement="#"), scrubbers=[])
        assert n.apply([stream("# a\nx\n# b\n")]) == [stream("#\nx\n#\n")]

    def test_drop_lines_counts_lines(self):
        n = normalizer(Rule(name="dbg", action="drop_lines", pattern=r"^DEBUG"), scrubbers=[])
        assert n.apply([stream("DEBUG a\nkeep\nDEBUG b\nlast")]) == [stream("keep\nlast")]
        assert n.last_fired == {"dbg": 2}

    def test_drop_lines_emptying_a_stream_removes_it(self):
        n = normalizer(Rule(name="dbg", action="drop_lines", pattern="DEBUG", streams=["stderr"]), scrubbers=[])
        assert n.apply([stream("a\n"), stream("DEBUG\n", "stderr"), stream("b\n")]) == [stream("a\nb\n")]

    def test_sort_lines(self):
        n = normalizer(Rule(name="set", action="sort_lines"), scrubbers=[])
        assert n.apply([stream("c\na\nb\n")]) == [stream("a\nb\nc\n")]
        assert n.last_fired == {"set": 1}

    def test_sort_lines_with_pattern_sorts_runs_of_matching_lines_only(self):
        n = normalizer(Rule(name="items", action="sort_lines", pattern=r"^- "), scrubbers=[])
        text = "header\n- z\n- a\nmiddle\n- y\n- b\n"
        assert n.apply([stream(text)]) == [stream("header\n- a\n- z\nmiddle\n- b\n- y\n")]
        assert n.last_fired == {"items": 1}
        n.apply([stream("header\n- only one\n")])
        assert n.last_fired == {}

    def test_sort_lines_runs_after_scrubbers(self):
        # addresses differ between runs; sorting on them first would give a run-dependent order
        rule = Rule(name="objs", action="sort_lines")
        golden = normalizer(rule).apply([stream("b at 0x7f0000000001\na at 0x7f0000000002\n")])
        actual = normalizer(rule).apply([stream("b at 0x7f0000000009\na at 0x7f0000000001\n")])
        assert golden == actual == [stream("a at <ADDRESS>\nb at <ADDRESS>\n")]

    def test_user_replace_sees_text_before_scrubbers(self):
        n = normalizer(Rule(name="data", action="replace", pattern=r"/tmp/data\.csv", replacement="DATA"))
        assert n.apply([stream("read /tmp/data.csv and /tmp/other\n")]) == [stream("read DATA and <TMP_PATH>\n")]
        assert n.last_fired == {"data": 1, "tmp_path": 1}

    def test_ignore_whole_outputs(self):
        n = normalizer(Rule(name="all", action="ignore", indices=[3]), scrubbers=[])
        outputs = [stream("a\n"), display({"text/plain": "x"}), error("e", [])]
        assert n.apply(outputs, CTX) == []
        assert n.last_fired == {"all": 3}
        assert n.apply(outputs, {"index": 4}) == outputs

    def test_ignore_mime_entries_only(self):
        n = normalizer(Rule(name="html", action="ignore", mime_types=["text/html"]), scrubbers=[])
        outputs = [display({"text/plain": "t", "text/html": "<b/>"}), display({"text/html": "<i/>"}), stream("s\n")]
        assert n.apply(outputs) == [display({"text/plain": "t"}), stream("s\n")]
        assert n.last_fired == {"html": 2}

    def test_ignore_with_pattern_only_matching_outputs(self):
        n = normalizer(Rule(name="noisy", action="ignore", pattern="Downloading"), scrubbers=[])
        outputs = [stream("Downloading x\n", "stderr"), stream("result\n"), display({"text/plain": "Downloading"})]
        assert n.apply(outputs) == [stream("result\n")]
        assert n.last_fired == {"noisy": 2}

    def test_ignore_between_streams_joins_them_again(self):
        n = normalizer(Rule(name="err", action="ignore", streams=["stderr"]), scrubbers=[])
        outputs = [stream("a\n"), stream("warn\n", "stderr"), stream("b\n")]
        assert n.apply(outputs) == [stream("a\nb\n")]

    def test_ignored_output_is_not_counted_by_scrubbers(self):
        n = normalizer(Rule(name="err", action="ignore", streams=["stderr"]))
        n.apply([stream("/tmp/x\n", "stderr")])
        assert n.last_fired == {"err": 1}


# ----------------------------------------------------------------------------- selectors


def _replace_x(**selector):
    return normalizer(Rule(name="x", action="replace", pattern="x", replacement="Y", **selector), scrubbers=[])


class TestSelectors:
    @pytest.mark.parametrize(
        "selector, selected",
        [
            ({}, True),
            ({"tags": ["net"]}, True),
            ({"tags": ["gpu"]}, False),
            ({"cell_ids": ["abc"]}, True),
            ({"cell_ids": ["other"]}, False),
            ({"indices": [3]}, True),
            ({"indices": [0, 1]}, False),
            ({"tags": ["slow"], "indices": [3]}, True),
            ({"tags": ["slow"], "indices": [4]}, False),  # all cell selectors must match
        ],
    )
    def test_cell_selectors(self, selector, selected):
        result = _replace_x(**selector).apply([stream("x\n")], CTX)
        assert result == [stream("Y\n" if selected else "x\n")]

    def test_cell_selectors_without_context_do_not_match(self):
        assert _replace_x(tags=["net"]).apply([stream("x\n")]) == [stream("x\n")]
        assert _replace_x(cell_ids=["abc"]).apply([stream("x\n")], None) == [stream("x\n")]

    def test_stream_selector(self):
        outputs = [stream("x\n"), stream("x\n", "stderr"), display({"text/plain": "x"}), error("x", ["x"])]
        result = _replace_x(streams=["stderr"]).apply(outputs)
        assert result == [stream("x\n"), stream("Y\n", "stderr"), display({"text/plain": "x"}), error("x", ["x"])]

    def test_mime_selector_with_wildcard(self):
        outputs = [stream("x\n"), display({"text/plain": "x", "text/html": "x", "application/json": {"k": "x"}})]
        result = _replace_x(mime_types=["text/*"]).apply(outputs)
        assert result == [stream("x\n"), display({"text/plain": "Y", "text/html": "Y", "application/json": {"k": "x"}})]

    def test_stream_and_mime_selectors_together(self):
        outputs = [stream("x\n"), stream("x\n", "stderr"), display({"text/plain": "x", "text/html": "x"})]
        result = _replace_x(streams=["stdout"], mime_types=["text/html"]).apply(outputs)
        assert result == [stream("Y\n"), stream("x\n", "stderr"), display({"text/plain": "x", "text/html": "Y"})]

    def test_no_output_selector_reaches_errors(self):
        assert _replace_x().apply([error("x", ["x", "x"])]) == [error("Y", ["Y", "Y"])]


# ----------------------------------------------------------------------------- counts and warnings


class TestCountsAndWarnings:
    def test_fired_accumulates_across_calls_last_fired_per_call(self):
        n = normalizer(Rule(name="r", action="replace", pattern="apple", replacement="b"), scrubbers=["uuid"])
        n.apply([stream("apple apple\n")])
        assert n.last_fired == {"r": 2}
        n.apply([stream("apple 123e4567-e89b-12d3-a456-426614174000\n")])
        assert n.last_fired == {"r": 1, "uuid": 1}
        n.apply([stream("nothing\n")])
        assert n.last_fired == {}
        assert n.fired == {"r": 3, "uuid": 1}

    def test_apply_counted_returns_counts(self):
        n = normalizer(scrubbers=["tmp_path"])
        outputs, counts = n.apply_counted([stream("/tmp/a /tmp/b\n")])
        assert outputs == [stream("<TMP_PATH> <TMP_PATH>\n")]
        assert counts == {"tmp_path": 2}
        assert n.fired == {"tmp_path": 2}

    def test_ignore_mime_types_option_counted(self):
        n = normalizer(scrubbers=[], ignore_mime_types=["application/vnd.jupyter.widget-view+json"])
        outputs = [display({"text/plain": "w", "application/vnd.jupyter.widget-view+json": {"model_id": "1"}})]
        assert n.apply(outputs) == [display({"text/plain": "w"})]
        assert n.last_fired == {"ignore_mime_types": 1}
        assert n.warnings() == []

    def test_warnings_for_user_rules_and_explicit_scrubbers_that_never_fired(self):
        n = normalizer(
            Rule(name="used", action="replace", pattern="a", replacement="b"),
            Rule(name="unused", action="drop_lines", pattern="zzz"),
            scrubbers=["default", "uuid", "tmp_path"],
        )
        n.apply([stream("a /tmp/x\n")])
        warnings = n.warnings()
        assert len(warnings) == 2
        assert "'unused' (drop_lines) never fired" in warnings[0]
        assert "scrubber 'uuid' never fired" in warnings[1]

    def test_default_scrubbers_never_warn(self):
        n = normalizer()
        n.apply([stream("nothing to scrub\n")])
        assert n.fired == {}
        assert n.warnings() == []

    def test_rule_fired_on_one_side_only_does_not_warn(self):
        n = normalizer(Rule(name="seed", action="replace", pattern="seed=\\d+", replacement="seed"), scrubbers=[])
        n.apply([stream("no seed here\n")])
        n.apply([stream("seed=42\n")])
        assert n.warnings() == []


# ----------------------------------------------------------------------------- warnings in stderr


def test_strip_warnings_removes_python_warnings_from_stderr():
    warning = "/tmp/ipykernel_1/2.py:3: DeprecationWarning: old\n  f()\n"
    outputs = [stream("out " + warning), stream("before\n" + warning + "after\n", "stderr"), stream(warning, "stderr")]
    result, removed = norm.strip_warnings(outputs)
    assert removed == 2
    assert result == [stream("out " + warning), stream("before\nafter\n", "stderr")]
