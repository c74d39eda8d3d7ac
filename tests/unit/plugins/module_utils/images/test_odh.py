"""The ODH notebook ImageStream contract: exact annotation shapes, the visibility label, deterministic rendering."""

from __future__ import annotations

import json

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images import odh

IMAGE = "quay.io/org/team/notebook@sha256:" + "ab" * 32


def _render(**overrides):
    arguments = dict(
        name="custom-notebook",
        namespace="opendatahub",
        image=IMAGE,
        tag="2024.1",
        display_name="Team notebook",
        description="JupyterLab with our tools",
        creator="data-team",
        order=50,
        phase=odh.PHASE_SUCCEEDED,
        software=[{"name": "Python", "version": "3.11.2"}, {"name": "JupyterLab", "version": "4.2.1"}],
        python_dependencies=[{"name": "numpy", "version": "1.26.4"}, {"name": "Pandas", "version": "2.2.2"}],
    )
    arguments.update(overrides)
    return odh.render_imagestream(**arguments)


def test_rendered_imagestream_has_the_contract_shape():
    manifest = _render()
    assert manifest["apiVersion"] == "image.openshift.io/v1"
    assert manifest["kind"] == "ImageStream"
    assert manifest["metadata"]["name"] == "custom-notebook"
    assert manifest["metadata"]["namespace"] == "opendatahub"
    assert manifest["metadata"]["labels"] == {
        "opendatahub.io/notebook-image": "true",
        "app.kubernetes.io/created-by": "byon",
        "opendatahub.io/dashboard": "true",
        "app.kubernetes.io/managed-by": "mlops.notebooks",
    }
    assert manifest["metadata"]["annotations"] == {
        "opendatahub.io/notebook-image-name": "Team notebook",
        "opendatahub.io/notebook-image-desc": "JupyterLab with our tools",
        "opendatahub.io/notebook-image-creator": "data-team",
        "opendatahub.io/notebook-image-url": IMAGE,
        "opendatahub.io/notebook-image-order": "50",
        "opendatahub.io/notebook-image-phase": "Succeeded",
        "opendatahub.io/notebook-image-messages": "",
    }
    assert manifest["spec"]["lookupPolicy"] == {"local": True}
    assert manifest["spec"]["tags"] == [
        {
            "name": "2024.1",
            "annotations": {
                "openshift.io/imported-from": IMAGE,
                "opendatahub.io/notebook-software":
                    '[{"name":"Python","version":"3.11.2"},{"name":"JupyterLab","version":"4.2.1"}]',
                "opendatahub.io/notebook-python-dependencies":
                    '[{"name":"numpy","version":"1.26.4","visible":true},'
                    '{"name":"Pandas","version":"2.2.2","visible":true}]',
            },
            "from": {"kind": "DockerImage", "name": IMAGE},
            "importPolicy": {"scheduled": False},
            "referencePolicy": {"type": "Source"},
        }
    ]


def test_every_metadata_annotation_is_written_even_when_empty():
    manifest = odh.render_imagestream("custom-x", None, "quay.io/x/y:1")
    annotations = manifest["metadata"]["annotations"]
    for key in (odh.ANNOTATION_NAME, odh.ANNOTATION_DESC, odh.ANNOTATION_CREATOR, odh.ANNOTATION_URL,
                odh.ANNOTATION_ORDER, odh.ANNOTATION_PHASE, odh.ANNOTATION_MESSAGES):
        assert isinstance(annotations[key], str), key
    assert annotations[odh.ANNOTATION_NAME] == "custom-x"
    assert annotations[odh.ANNOTATION_ORDER] == "100"
    assert annotations[odh.ANNOTATION_PHASE] == "Importing"
    assert "namespace" not in manifest["metadata"]
    tag = manifest["spec"]["tags"][0]
    assert tag["name"] == "latest"
    assert tag["annotations"][odh.TAG_ANNOTATION_SOFTWARE] == "[]"
    assert tag["annotations"][odh.TAG_ANNOTATION_PYTHON_DEPENDENCIES] == "[]"


@pytest.mark.parametrize(
    "phase, visible, label",
    [
        (odh.PHASE_IMPORTING, True, "false"),
        (odh.PHASE_VALIDATING, True, "false"),
        (odh.PHASE_FAILED, True, "false"),
        (odh.PHASE_SUCCEEDED, True, "true"),
        (odh.PHASE_SUCCEEDED, False, "false"),
    ],
)
def test_image_is_offered_only_once_validation_succeeded(phase, visible, label):
    manifest = _render(phase=phase, visible=visible)
    assert manifest["metadata"]["labels"][odh.LABEL_NOTEBOOK_IMAGE] == label


def test_messages_annotation_is_a_json_array_of_severity_and_message():
    manifest = _render(phase=odh.PHASE_FAILED, messages=[
        {"severity": "error", "message": "module jupyterlab does not import"},
        {"severity": "WARNING", "message": "cannot list packages"},
        "HOME is not writable",
    ])
    text = manifest["metadata"]["annotations"][odh.ANNOTATION_MESSAGES]
    assert text == ('[{"message":"module jupyterlab does not import","severity":"error"},'
                    '{"message":"cannot list packages","severity":"warning"},'
                    '{"message":"HOME is not writable","severity":"error"}]')
    assert odh.parse_messages(text) == [
        {"severity": "error", "message": "module jupyterlab does not import"},
        {"severity": "warning", "message": "cannot list packages"},
        {"severity": "error", "message": "HOME is not writable"},
    ]


def test_json_helpers():
    assert odh.messages_json([]) == ""
    assert odh.messages_json(None) == ""
    assert odh.messages_json([{"severity": "fatal", "message": 1}]) == '[{"message":"1","severity":"error"}]'
    assert odh.software_json([{"name": "R", "version": 4}, {"name": "", "version": "x"}]) == \
        '[{"name":"R","version":"4"}]'
    assert odh.dependencies_json([{"name": "b", "version": "1"}, {"name": "A", "version": "2", "visible": False}]) == \
        '[{"name":"A","version":"2","visible":false},{"name":"b","version":"1","visible":true}]'
    assert odh.dependencies_json([{"name": "x", "version": "1"}], visible=False) == \
        '[{"name":"x","version":"1","visible":false}]'
    assert odh.software_json([{"name": "Émile", "version": "1"}]) == '[{"name":"Émile","version":"1"}]'


def test_rendering_is_byte_identical_for_the_same_inputs_in_any_order():
    first = _render()
    second = _render(python_dependencies=[{"version": "2.2.2", "name": "Pandas"}, {"name": "numpy", "version": "1.26.4"}])
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    changed = _render(python_dependencies=[{"name": "numpy", "version": "2.0.0"}])
    assert json.dumps(first, sort_keys=True) != json.dumps(changed, sort_keys=True)


def test_import_policy_and_reference_policy_options():
    tag = _render(scheduled=True, insecure=True, reference_policy="Local")["spec"]["tags"][0]
    assert tag["importPolicy"] == {"scheduled": True, "insecure": True}
    assert tag["referencePolicy"] == {"type": "Local"}


def test_extra_labels_and_annotations_cannot_replace_contract_keys():
    manifest = _render(labels={"example.com/owner": "x"}, annotations={"example.com/note": "n"},
                       tag_annotations={odh.TAG_ANNOTATION_DEFAULT_IMAGE: "true"},
                       recommended_accelerators=["nvidia.com/gpu"])
    assert manifest["metadata"]["labels"]["example.com/owner"] == "x"
    assert manifest["metadata"]["annotations"]["example.com/note"] == "n"
    assert manifest["metadata"]["annotations"][odh.ANNOTATION_RECOMMENDED_ACCELERATORS] == '["nvidia.com/gpu"]'
    assert manifest["spec"]["tags"][0]["annotations"][odh.TAG_ANNOTATION_DEFAULT_IMAGE] == "true"
    with pytest.raises(ValueError, match="belongs to the ODH contract"):
        _render(labels={odh.LABEL_NOTEBOOK_IMAGE: "true"})
    with pytest.raises(ValueError, match="belongs to the ODH contract"):
        _render(tag_annotations={odh.TAG_ANNOTATION_SOFTWARE: "[]"})


@pytest.mark.parametrize("overrides, message", [
    ({"phase": "Done"}, "phase must be one of"),
    ({"reference_policy": "Remote"}, "reference_policy"),
    ({"order": "10"}, "order must be an integer"),
    ({"order": True}, "order must be an integer"),
])
def test_invalid_render_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        _render(**overrides)


def test_parse_imagestream_reads_back_what_was_rendered():
    manifest = _render(phase=odh.PHASE_FAILED, messages=[{"severity": "error", "message": "no python"}],
                       annotations={odh.ANNOTATION_VALIDATED_DIGEST: "sha256:" + "ab" * 32})
    image = odh.parse_imagestream(manifest)
    assert image.name == "custom-notebook"
    assert image.namespace == "opendatahub"
    assert image.visible is False
    assert (image.display_name, image.description, image.creator, image.order, image.phase) == (
        "Team notebook", "JupyterLab with our tools", "data-team", 50, "Failed")
    assert image.messages == [{"severity": "error", "message": "no python"}]
    assert image.validated_digest == "sha256:" + "ab" * 32
    assert len(image.tags) == 1
    tag = image.tags[0]
    assert (tag.name, tag.image, tag.imported_from) == ("2024.1", IMAGE, IMAGE)
    assert tag.software == [{"name": "Python", "version": "3.11.2"}, {"name": "JupyterLab", "version": "4.2.1"}]
    assert tag.python_dependencies == [{"name": "numpy", "version": "1.26.4", "visible": True},
                                       {"name": "Pandas", "version": "2.2.2", "visible": True}]


def test_parse_imagestream_tolerates_missing_and_broken_values():
    image = odh.parse_imagestream({
        "metadata": {"name": "odd", "annotations": {odh.ANNOTATION_ORDER: "first", odh.ANNOTATION_MESSAGES: "{"}},
        "spec": {"tags": [{"name": "t", "from": {"kind": "ImageStreamTag", "name": "other:1"},
                           "annotations": {odh.TAG_ANNOTATION_SOFTWARE: '{"not": "a list"}',
                                           odh.TAG_ANNOTATION_PYTHON_DEPENDENCIES: '[1, {"name": "ok"}]'}}]},
    })
    assert image.order is None
    assert image.messages == []
    assert image.visible is False
    assert image.phase is None
    assert image.tags[0].image is None
    assert image.tags[0].software == []
    assert image.tags[0].python_dependencies == [{"name": "ok", "version": "", "visible": True}]
    assert odh.parse_imagestream({}).tags == []


def test_custom_imagestream_name():
    assert odh.custom_imagestream_name("Team Notebook (GPU)") == "custom-team-notebook-gpu"
