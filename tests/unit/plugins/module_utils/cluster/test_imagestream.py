# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ImageStream rules: import state from status, generation handling, merge patches, diff views."""

from __future__ import annotations

import copy
from typing import Any, Optional

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster import imagestream

SOURCE = "registry.example.com:5000/team/sub/notebook:1.0"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


def desired_tag(source: str = SOURCE, annotations: Optional[dict[str, str]] = None) -> dict[str, Any]:
    return {
        "name": "1.0",
        "from": {"kind": "DockerImage", "name": source},
        "importPolicy": {"insecure": False, "scheduled": False},
        "referencePolicy": {"type": "Source"},
        "annotations": {"openshift.io/imported-from": source, **(annotations or {})},
    }


def desired(source: str = SOURCE, labels: Optional[dict[str, str]] = None, annotations: Optional[dict[str, str]] = None,
            tag_annotations: Optional[dict[str, str]] = None) -> dict[str, Any]:
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "custom-notebook", "namespace": "ns",
                     "labels": labels or {"opendatahub.io/notebook-image": "false"},
                     "annotations": annotations or {"opendatahub.io/notebook-image-name": "Notebook"}},
        "spec": {"lookupPolicy": {"local": True}, "tags": [desired_tag(source, tag_annotations)]},
    }


def stored(definition: dict[str, Any], generation: int = 1, status_tags: Optional[list] = None,
           tag_generation: Optional[int] = None) -> dict[str, Any]:
    """``definition`` as the API server returns it."""
    stream = copy.deepcopy(definition)
    stream["metadata"].update({"generation": generation, "resourceVersion": "7", "uid": "u"})
    if tag_generation is not None:
        stream["spec"]["tags"][0]["generation"] = tag_generation
    stream["status"] = {"dockerImageRepository": "", "tags": status_tags or []}
    return stream


def item(generation: int, digest: str = DIGEST) -> dict[str, Any]:
    return {"created": "2024-01-01T00:00:00Z", "dockerImageReference": f"registry.example.com:5000/team/sub/notebook@{digest}",
            "image": digest, "generation": generation}


def failure(generation: int, reason: str = "NotFound", message: str = "not found") -> dict[str, Any]:
    return {"type": "ImportSuccess", "status": "False", "reason": reason, "message": message, "generation": generation}


class TestImportState:
    def test_pending_without_status(self) -> None:
        state = imagestream.import_state(stored(desired()), "1.0")
        assert state.status == "Pending"

    def test_imported_when_an_item_reaches_the_generation(self) -> None:
        stream = stored(desired(), generation=3, status_tags=[{"tag": "1.0", "items": [item(3)]}])
        state = imagestream.import_state(stream, "1.0")
        assert (state.status, state.digest) == ("Imported", DIGEST)
        assert state.reference.endswith("@" + DIGEST)

    def test_an_older_item_is_still_pending(self) -> None:
        stream = stored(desired(), generation=4, status_tags=[{"tag": "1.0", "items": [item(3)]}])
        assert imagestream.import_state(stream, "1.0").status == "Pending"

    def test_the_tag_generation_wins_over_the_stream_generation(self) -> None:
        # OpenShift: the stream generation moves on with every spec change, the tag's only with its reference.
        stream = stored(desired(), generation=9, tag_generation=3, status_tags=[{"tag": "1.0", "items": [item(3)]}])
        assert imagestream.import_state(stream, "1.0").imported

    def test_failure_condition_of_this_generation(self) -> None:
        stream = stored(desired(), generation=2, status_tags=[{"tag": "1.0", "items": None, "conditions": [
            failure(2, "Unauthorized", "you may not have access")]}])
        state = imagestream.import_state(stream, "1.0")
        assert (state.status, state.condition_reason) == ("Failed", "Unauthorized")

    def test_a_newer_failure_hides_an_older_item(self) -> None:
        stream = stored(desired(), generation=5, status_tags=[{"tag": "1.0", "items": [item(4)],
                                                               "conditions": [failure(5)]}])
        assert imagestream.import_state(stream, "1.0").failed

    def test_an_old_failure_does_not_count_after_a_successful_reimport(self) -> None:
        stream = stored(desired(), generation=6, status_tags=[{"tag": "1.0", "items": [item(6)],
                                                               "conditions": [failure(5)]}])
        assert imagestream.import_state(stream, "1.0").imported

    def test_other_tags_are_ignored(self) -> None:
        stream = stored(desired(), generation=1, status_tags=[{"tag": "other", "items": [item(1)]}])
        assert imagestream.import_state(stream, "1.0").status == "Pending"


class TestReferenceChanged:
    def test_same_reference_with_false_defaults_spelled_out(self) -> None:
        existing = {"name": "1.0", "from": {"kind": "DockerImage", "name": SOURCE}, "importPolicy": {},
                    "referencePolicy": {"type": "Source"}, "generation": 2}
        assert not imagestream.reference_changed(existing, desired_tag())

    def test_other_source(self) -> None:
        assert imagestream.reference_changed(desired_tag(), desired_tag(SOURCE.replace("1.0", "2.0")))

    def test_import_policy_matters(self) -> None:
        changed = desired_tag()
        changed["importPolicy"] = {"insecure": True}
        assert imagestream.reference_changed(desired_tag(), changed)

    def test_missing_tag(self) -> None:
        assert imagestream.reference_changed(None, desired_tag())


class TestStreamPatch:
    def test_nothing_to_do(self) -> None:
        stream = stored(desired(), status_tags=[{"tag": "1.0", "items": [item(1)]}], tag_generation=1)
        assert imagestream.stream_patch(stream, desired(), "1.0") is None

    def test_only_changed_metadata_keys(self) -> None:
        stream = stored(desired(), tag_generation=1)
        stream["metadata"]["annotations"]["someone.else/note"] = "kept"
        wanted = desired(annotations={"opendatahub.io/notebook-image-name": "Renamed"})
        patch = imagestream.stream_patch(stream, wanted, "1.0")
        assert patch == {"metadata": {"annotations": {"opendatahub.io/notebook-image-name": "Renamed"}}}

    def test_unchanged_reference_keeps_the_server_generation(self) -> None:
        stream = stored(desired(), tag_generation=4, generation=6)
        patch = imagestream.stream_patch(stream, desired(tag_annotations={"opendatahub.io/notebook-software": "[]"}), "1.0")
        (tag,) = patch["spec"]["tags"]
        assert tag["generation"] == 4
        assert tag["annotations"]["opendatahub.io/notebook-software"] == "[]"

    def test_unchanged_reference_pins_the_imported_generation_where_no_server_sets_it(self) -> None:
        # A CRD-served ImageStream: every spec change bumps metadata.generation; pinning the tag's generation to
        # the imported item keeps an annotation change from looking like a new import.
        stream = stored(desired(), generation=3, status_tags=[{"tag": "1.0", "items": [item(3)]}])
        patch = imagestream.stream_patch(stream, desired(tag_annotations={"x/y": "1"}), "1.0")
        assert patch["spec"]["tags"][0]["generation"] == 3
        after = imagestream.apply_patch(stream, patch)
        after["metadata"]["generation"] = 4
        assert imagestream.import_state(after, "1.0").imported

    def test_changed_reference_drops_the_generation(self) -> None:
        stream = stored(desired(), tag_generation=4)
        patch = imagestream.stream_patch(stream, desired(SOURCE.replace("1.0", "1.1")), "1.0")
        (tag,) = patch["spec"]["tags"]
        assert "generation" not in tag
        assert tag["from"]["name"].endswith(":1.1")

    def test_reimport_sets_zero_then_removes_it(self) -> None:
        stream = stored(desired(), tag_generation=4)
        patch = imagestream.stream_patch(stream, desired(), "1.0", reimport=True)
        assert patch["spec"]["tags"][0]["generation"] == 0
        again = imagestream.apply_patch(stream, patch)
        second = imagestream.stream_patch(again, desired(), "1.0", reimport=True)
        assert "generation" not in second["spec"]["tags"][0]
        assert second["spec"]["tags"] != again["spec"]["tags"]

    def test_other_tags_survive(self) -> None:
        stream = stored(desired(), tag_generation=1)
        stream["spec"]["tags"].insert(0, {"name": "keep", "from": {"kind": "DockerImage", "name": "x.io/a:b"}})
        patch = imagestream.stream_patch(stream, desired(SOURCE.replace("1.0", "1.1")), "1.0")
        assert [tag["name"] for tag in patch["spec"]["tags"]] == ["keep", "1.0"]

    def test_new_stream_patch_is_everything(self) -> None:
        patch = imagestream.stream_patch(None, desired(), "1.0")
        assert patch["metadata"]["labels"] == {"opendatahub.io/notebook-image": "false"}
        assert patch["spec"]["lookupPolicy"] == {"local": True}


class TestApplyPatchAndViews:
    def test_apply_patch_merges_and_deletes(self) -> None:
        assert imagestream.apply_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == \
            {"a": {"c": 2, "e": 3}, "d": [2]}

    def test_managed_view_hides_foreign_keys_and_generation(self) -> None:
        stream = stored(desired(), tag_generation=2)
        stream["metadata"]["annotations"]["someone.else/note"] = "x"
        view = imagestream.managed_view(stream, desired(), "1.0")
        assert "someone.else/note" not in view["metadata"]["annotations"]
        assert "generation" not in view["spec"]["tags"][0]
        assert imagestream.managed_view(None, desired(), "1.0") == {}
