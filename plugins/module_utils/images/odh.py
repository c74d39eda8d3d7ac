# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Open Data Hub notebook ImageStream contract as code.

What the ODH dashboard and the JupyterHub spawner read from an ImageStream (see the project's reference note
``odh-imagestream-contract.md``): labels, annotations, one tag with the software and Python dependencies as JSON
arrays. ``render_imagestream`` writes a manifest; the ``parse_*`` functions read the values back.

Every JSON value is rendered deterministically (sorted keys, compact separators, dependencies sorted by name),
so rendering the same inputs twice gives byte-identical manifests and a re-run changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from .reference import CUSTOM_IMAGE_PREFIX, k8s_safe_name

API_VERSION = "image.openshift.io/v1"
KIND = "ImageStream"

# metadata.labels
LABEL_NOTEBOOK_IMAGE = "opendatahub.io/notebook-image"
LABEL_CREATED_BY = "app.kubernetes.io/created-by"
LABEL_DASHBOARD = "opendatahub.io/dashboard"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# The dashboard lists custom images created by "byon" (bring your own notebook).
DEFAULT_CREATED_BY = "byon"
MANAGED_BY = "mlops.notebooks"

# metadata.annotations
ANNOTATION_NAME = "opendatahub.io/notebook-image-name"
ANNOTATION_DESC = "opendatahub.io/notebook-image-desc"
ANNOTATION_CREATOR = "opendatahub.io/notebook-image-creator"
ANNOTATION_URL = "opendatahub.io/notebook-image-url"
ANNOTATION_ORDER = "opendatahub.io/notebook-image-order"
ANNOTATION_PHASE = "opendatahub.io/notebook-image-phase"
ANNOTATION_MESSAGES = "opendatahub.io/notebook-image-messages"
ANNOTATION_RECOMMENDED_ACCELERATORS = "opendatahub.io/recommended-accelerators"
# Ours: the digest that passed (or failed) validation, so validation runs again only when the digest changes.
ANNOTATION_VALIDATED_DIGEST = "mlops.notebooks/validated-digest"

# spec.tags[].annotations
TAG_ANNOTATION_SOFTWARE = "opendatahub.io/notebook-software"
TAG_ANNOTATION_PYTHON_DEPENDENCIES = "opendatahub.io/notebook-python-dependencies"
TAG_ANNOTATION_IMPORTED_FROM = "openshift.io/imported-from"
TAG_ANNOTATION_DEFAULT_IMAGE = "opendatahub.io/default-image"
TAG_ANNOTATION_RECOMMENDED = "opendatahub.io/workbench-image-recommended"
TAG_ANNOTATION_OUTDATED = "opendatahub.io/image-tag-outdated"

PHASE_IMPORTING = "Importing"
PHASE_VALIDATING = "Validating"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASES = (PHASE_IMPORTING, PHASE_VALIDATING, PHASE_SUCCEEDED, PHASE_FAILED)

SEVERITIES = ("error", "warning", "info")
REFERENCE_POLICIES = ("Source", "Local")
DEFAULT_ORDER = 100


def dumps(value: Any) -> str:
    """The one JSON style of every annotation value: sorted keys, compact, non-ASCII kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize_messages(messages: Optional[Iterable[Any]]) -> list[dict]:
    """``[{"severity", "message"}]`` from message dicts or plain strings (which become errors); order kept."""
    normalized = []
    for entry in messages or ():
        if isinstance(entry, Mapping):
            severity = str(entry.get("severity") or "error").lower()
            text = str(entry.get("message", ""))
        else:
            severity, text = "error", str(entry)
        if severity not in SEVERITIES:
            severity = "error"
        normalized.append({"severity": severity, "message": text})
    return normalized


def messages_json(messages: Optional[Iterable[Any]]) -> str:
    """The ``-messages`` annotation: a JSON array of ``{"severity", "message"}``, or ``''`` when there are none."""
    normalized = normalize_messages(messages)
    return dumps(normalized) if normalized else ""


def normalize_software(software: Optional[Iterable[Mapping[str, Any]]]) -> list[dict]:
    """``[{"name", "version"}]`` with both values strings, entries without a name dropped, order kept."""
    normalized = []
    for entry in software or ():
        name = str(entry.get("name") or "").strip()
        if name:
            normalized.append({"name": name, "version": str(entry.get("version") or "")})
    return normalized


def software_json(software: Optional[Iterable[Mapping[str, Any]]]) -> str:
    """The ``notebook-software`` tag annotation: a JSON array of ``{"name", "version"}`` (``[]`` when empty)."""
    return dumps(normalize_software(software))


def normalize_dependencies(dependencies: Optional[Iterable[Mapping[str, Any]]], visible: bool = True) -> list[dict]:
    """``[{"name", "version", "visible"}]`` sorted by name (case-insensitive), one entry per name.

    Entries without ``visible`` (for instance ``pip list`` output) get ``visible``.
    """
    by_key: dict[str, dict] = {}
    for entry in dependencies or ():
        name = str(entry.get("name") or "").strip()
        if not name:
            continue
        shown = entry.get("visible", visible)
        by_key[name.lower()] = {"name": name, "version": str(entry.get("version") or ""),
                                "visible": shown if isinstance(shown, bool) else str(shown).lower() == "true"}
    return [by_key[key] for key in sorted(by_key)]


def dependencies_json(dependencies: Optional[Iterable[Mapping[str, Any]]], visible: bool = True) -> str:
    """The ``notebook-python-dependencies`` tag annotation: JSON array of ``{"name", "version", "visible"}``."""
    return dumps(normalize_dependencies(dependencies, visible=visible))


def _parse_json_array(text: Optional[str]) -> list:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def parse_messages(text: Optional[str]) -> list[dict]:
    """The ``-messages`` annotation back as a list (``''``, invalid JSON or a non-array give ``[]``)."""
    return normalize_messages(entry for entry in _parse_json_array(text) if isinstance(entry, (Mapping, str)))


def parse_software(text: Optional[str]) -> list[dict]:
    """The ``notebook-software`` tag annotation back as a list (invalid values give ``[]``)."""
    return normalize_software(entry for entry in _parse_json_array(text) if isinstance(entry, Mapping))


def parse_dependencies(text: Optional[str]) -> list[dict]:
    """The ``notebook-python-dependencies`` tag annotation back as a list (invalid values give ``[]``)."""
    return normalize_dependencies(entry for entry in _parse_json_array(text) if isinstance(entry, Mapping))


def custom_imagestream_name(display_name: str) -> str:
    """The ImageStream name the dashboard would give a custom image called ``display_name``."""
    return k8s_safe_name(display_name, prefix=CUSTOM_IMAGE_PREFIX)


def render_imagestream(
    name: str,
    namespace: Optional[str],
    image: str,
    *,
    tag: str = "latest",
    display_name: Optional[str] = None,
    description: str = "",
    creator: str = "",
    url: Optional[str] = None,
    order: int = DEFAULT_ORDER,
    phase: str = PHASE_IMPORTING,
    messages: Optional[Iterable[Any]] = None,
    visible: bool = True,
    software: Optional[Iterable[Mapping[str, Any]]] = None,
    python_dependencies: Optional[Iterable[Mapping[str, Any]]] = None,
    scheduled: bool = False,
    insecure: bool = False,
    reference_policy: str = "Source",
    created_by: str = DEFAULT_CREATED_BY,
    recommended_accelerators: Optional[Iterable[str]] = None,
    labels: Optional[Mapping[str, str]] = None,
    annotations: Optional[Mapping[str, str]] = None,
    tag_annotations: Optional[Mapping[str, str]] = None,
) -> dict:
    """An ImageStream manifest that the ODH dashboard and spawner list as a notebook image.

    ``image`` is the pull spec the tag imports (pinned by digest once known). The label
    ``opendatahub.io/notebook-image`` is ``"true"`` only when ``visible`` and ``phase`` is ``Succeeded``: an image
    is never offered before its validation passed. Every contract annotation is written, empty or not.
    ``labels``, ``annotations`` and ``tag_annotations`` add keys (they cannot replace the contract's keys).
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    if reference_policy not in REFERENCE_POLICIES:
        raise ValueError(f"reference_policy must be one of {', '.join(REFERENCE_POLICIES)}, not {reference_policy!r}")
    if isinstance(order, bool) or not isinstance(order, int):
        raise ValueError(f"order must be an integer, not {order!r}")
    metadata_labels = {
        LABEL_NOTEBOOK_IMAGE: "true" if visible and phase == PHASE_SUCCEEDED else "false",
        LABEL_CREATED_BY: created_by,
        LABEL_DASHBOARD: "true",
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    metadata_annotations = {
        ANNOTATION_NAME: display_name if display_name is not None else name,
        ANNOTATION_DESC: description or "",
        ANNOTATION_CREATOR: creator or "",
        ANNOTATION_URL: url if url is not None else image,
        ANNOTATION_ORDER: str(order),
        ANNOTATION_PHASE: phase,
        ANNOTATION_MESSAGES: messages_json(messages),
    }
    if recommended_accelerators is not None:
        metadata_annotations[ANNOTATION_RECOMMENDED_ACCELERATORS] = dumps([str(a) for a in recommended_accelerators])
    tag_annotation_values = {
        TAG_ANNOTATION_IMPORTED_FROM: image,
        TAG_ANNOTATION_SOFTWARE: software_json(software),
        TAG_ANNOTATION_PYTHON_DEPENDENCIES: dependencies_json(python_dependencies),
    }
    metadata: dict[str, Any] = {
        "name": name,
        "labels": _merge_extra(metadata_labels, labels, "label"),
        "annotations": _merge_extra(metadata_annotations, annotations, "annotation"),
    }
    if namespace:
        metadata["namespace"] = namespace
    import_policy: dict[str, Any] = {"scheduled": bool(scheduled)}
    if insecure:
        import_policy["insecure"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "lookupPolicy": {"local": True},
            "tags": [
                {
                    "name": tag,
                    "annotations": _merge_extra(tag_annotation_values, tag_annotations, "tag annotation"),
                    "from": {"kind": "DockerImage", "name": image},
                    "importPolicy": import_policy,
                    "referencePolicy": {"type": reference_policy},
                }
            ],
        },
    }


def _merge_extra(contract: dict, extra: Optional[Mapping[str, str]], what: str) -> dict:
    merged = dict(contract)
    for key, value in (extra or {}).items():
        if key in contract:
            raise ValueError(f"the {what} {key!r} belongs to the ODH contract and is rendered from its own option")
        merged[key] = str(value)
    return merged


@dataclass
class NotebookImageTag:
    """One tag of a notebook ImageStream as the spawner reads it."""

    name: str
    image: Optional[str]
    imported_from: Optional[str]
    software: list[dict] = field(default_factory=list)
    python_dependencies: list[dict] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class NotebookImage:
    """What an ImageStream says about itself under the ODH contract (``parse_imagestream``)."""

    name: str
    namespace: Optional[str]
    visible: bool
    display_name: Optional[str]
    description: Optional[str]
    creator: Optional[str]
    url: Optional[str]
    order: Optional[int]
    phase: Optional[str]
    messages: list[dict]
    validated_digest: Optional[str]
    tags: list[NotebookImageTag]
    labels: dict[str, str]
    annotations: dict[str, str]


def parse_imagestream(imagestream: Mapping[str, Any]) -> NotebookImage:
    """Read the contract's values from an ImageStream (a dict as the API returns it); missing values are None."""
    metadata = imagestream.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    annotations = dict(metadata.get("annotations") or {})
    try:
        order: Optional[int] = int(annotations[ANNOTATION_ORDER])
    except (KeyError, TypeError, ValueError):
        order = None
    tags = []
    for tag in ((imagestream.get("spec") or {}).get("tags") or []):
        tag_annotations = dict(tag.get("annotations") or {})
        source = tag.get("from") or {}
        tags.append(NotebookImageTag(
            name=str(tag.get("name", "")),
            image=source.get("name") if source.get("kind") == "DockerImage" else None,
            imported_from=tag_annotations.get(TAG_ANNOTATION_IMPORTED_FROM),
            software=parse_software(tag_annotations.get(TAG_ANNOTATION_SOFTWARE)),
            python_dependencies=parse_dependencies(tag_annotations.get(TAG_ANNOTATION_PYTHON_DEPENDENCIES)),
            annotations=tag_annotations,
        ))
    return NotebookImage(
        name=str(metadata.get("name", "")),
        namespace=metadata.get("namespace"),
        visible=labels.get(LABEL_NOTEBOOK_IMAGE) == "true",
        display_name=annotations.get(ANNOTATION_NAME),
        description=annotations.get(ANNOTATION_DESC),
        creator=annotations.get(ANNOTATION_CREATOR),
        url=annotations.get(ANNOTATION_URL),
        order=order,
        phase=annotations.get(ANNOTATION_PHASE),
        messages=parse_messages(annotations.get(ANNOTATION_MESSAGES)),
        validated_digest=annotations.get(ANNOTATION_VALIDATED_DIGEST),
        tags=tags,
        labels=labels,
        annotations=annotations,
    )
