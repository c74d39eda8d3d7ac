# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ImageStream the import publishes: what to change on it, whether its tag was imported, and the API calls.

Only the keys the module renders are managed (labels, annotations, ``lookupPolicy`` and the one tag); anything
else on the stream (other tags, other annotations) is left as it is, and writes are JSON merge patches.

Tag generations. On OpenShift the API server sets ``spec.tags[].generation`` when a tag's reference changes and
the importer answers with a status item (or an ``ImportSuccess=False`` condition) of at least that generation.
Where ImageStreams are a CRD (the local control plane) no server sets it, and the importer falls back to
``metadata.generation``, which every spec change bumps. So: a write that keeps the reference carries the tag's
generation over (pinning it to the imported one when the server never set it), a write that changes the reference
drops it, and a re-import is asked for by setting it to 0 (OpenShift's documented trigger; where 0 is already
there, by removing it, which is a spec change too).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ClusterError, api_error, classify_import_condition
from .waits import Deadline, poll

API_VERSION = "image.openshift.io/v1"
KIND = "ImageStream"
TAG_REFERENCE_KEYS = ("from", "importPolicy", "referencePolicy")


@dataclass(frozen=True)
class ImportState:
    """Where the import of one tag stands: ``Imported`` (with the digest), ``Failed`` (with the condition) or
    ``Pending``."""

    status: str
    digest: Optional[str] = None
    reference: Optional[str] = None
    condition_reason: str = ""
    condition_message: str = ""
    generation: int = 0

    @property
    def imported(self) -> bool:
        return self.status == "Imported"

    @property
    def failed(self) -> bool:
        return self.status == "Failed"


# ------------------------------------------------------------------------------------------ reading


def find_tag(tags: Optional[list], tag_name: str, key: str = "name") -> Optional[dict[str, Any]]:
    for entry in tags or []:
        if isinstance(entry, dict) and entry.get(key) == tag_name:
            return entry
    return None


def spec_tag(stream: Optional[dict[str, Any]], tag_name: str) -> Optional[dict[str, Any]]:
    return find_tag(((stream or {}).get("spec") or {}).get("tags"), tag_name)


def status_tag(stream: Optional[dict[str, Any]], tag_name: str) -> Optional[dict[str, Any]]:
    return find_tag(((stream or {}).get("status") or {}).get("tags"), tag_name, key="tag")


def reference_generation(stream: dict[str, Any], tag_name: str) -> int:
    """The generation an import of the tag's current reference must reach (see the module docstring)."""
    tag = spec_tag(stream, tag_name) or {}
    return int(tag.get("generation") or (stream.get("metadata") or {}).get("generation") or 1)


def import_state(stream: dict[str, Any], tag_name: str) -> ImportState:
    """Whether the tag's current reference has been imported, failed to import, or not yet."""
    wanted = reference_generation(stream, tag_name)
    entry = status_tag(stream, tag_name) or {}
    items = entry.get("items") or []
    latest = items[0] if items and isinstance(items[0], dict) else None
    failure = None
    for condition in entry.get("conditions") or []:
        if condition.get("type") == "ImportSuccess" and condition.get("status") == "False":
            failure = condition
    item_generation = int((latest or {}).get("generation") or 0)
    failure_generation = int((failure or {}).get("generation") or 0)
    # A failure newer than the latest item wins: the last import attempt is what counts.
    if failure is not None and failure_generation >= wanted and failure_generation >= item_generation:
        return ImportState("Failed", condition_reason=str(failure.get("reason") or ""),
                           condition_message=str(failure.get("message") or ""), generation=failure_generation)
    if latest is not None and item_generation >= wanted and latest.get("image"):
        return ImportState("Imported", digest=str(latest["image"]), reference=str(latest.get("dockerImageReference") or ""),
                           generation=item_generation)
    return ImportState("Pending", generation=wanted)


def _normalized_reference(tag: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The parts of a tag that decide what is imported, with unset and false-like values dropped."""
    result: dict[str, Any] = {}
    for key in TAG_REFERENCE_KEYS:
        value = (tag or {}).get(key)
        if isinstance(value, dict):
            value = {inner: inner_value for inner, inner_value in value.items() if inner_value not in (None, False, "")}
        if value:
            result[key] = value
    return result


def reference_changed(existing_tag: Optional[dict[str, Any]], desired_tag: dict[str, Any]) -> bool:
    """True when the desired tag imports something else (source, import or reference policy) than the stream's."""
    return _normalized_reference(existing_tag) != _normalized_reference(desired_tag)


# ------------------------------------------------------------------------------------------ writing


def _changed_entries(existing: Optional[dict[str, Any]], desired: dict[str, Any]) -> dict[str, Any]:
    existing = existing or {}
    return {key: value for key, value in desired.items() if existing.get(key) != value}


def tag_to_write(existing_stream: Optional[dict[str, Any]], desired_tag: dict[str, Any], *,
                 reimport: bool = False) -> dict[str, Any]:
    """The tag as it must be sent: desired fields over the existing tag, with the generation rule applied."""
    existing_tag = spec_tag(existing_stream, desired_tag["name"])
    merged = copy.deepcopy(existing_tag) if existing_tag else {}
    merged.update({key: copy.deepcopy(value) for key, value in desired_tag.items() if key != "annotations"})
    annotations = dict((existing_tag or {}).get("annotations") or {})
    annotations.update(desired_tag.get("annotations") or {})
    merged["annotations"] = annotations
    if existing_tag is None or reference_changed(existing_tag, desired_tag):
        merged.pop("generation", None)
    elif reimport:
        merged["generation"] = None if existing_tag.get("generation") == 0 else 0
    elif not existing_tag.get("generation"):
        state = import_state(existing_stream or {}, desired_tag["name"])
        if state.imported:
            merged["generation"] = state.generation
    if merged.get("generation", 0) is None:
        merged.pop("generation")
    return merged


def stream_patch(existing: Optional[dict[str, Any]], desired: dict[str, Any], tag_name: str, *,
                 reimport: bool = False) -> Optional[dict[str, Any]]:
    """The JSON merge patch that brings the managed parts of ``existing`` to ``desired``; None when they match.

    ``reimport`` asks the importer to import the tag again even though nothing else changes."""
    desired_meta = desired.get("metadata") or {}
    existing_meta = (existing or {}).get("metadata") or {}
    patch: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for section in ("labels", "annotations"):
        changed = _changed_entries(existing_meta.get(section), desired_meta.get(section) or {})
        if changed:
            metadata[section] = changed
    if metadata:
        patch["metadata"] = metadata
    spec: dict[str, Any] = {}
    desired_spec = desired.get("spec") or {}
    existing_spec = (existing or {}).get("spec") or {}
    for key, value in desired_spec.items():
        if key != "tags" and existing_spec.get(key) != value:
            spec[key] = copy.deepcopy(value)
    desired_tag = find_tag(desired_spec.get("tags"), tag_name)
    if desired_tag is not None:
        new_tag = tag_to_write(existing, desired_tag, reimport=reimport)
        old_tag = spec_tag(existing, tag_name)
        if reimport or new_tag != old_tag:
            others = [tag for tag in existing_spec.get("tags") or [] if tag.get("name") != tag_name]
            spec["tags"] = others + [new_tag]
    if spec:
        patch["spec"] = spec
    return patch or None


def apply_patch(existing: Optional[dict[str, Any]], patch: Optional[dict[str, Any]]) -> dict[str, Any]:
    """RFC 7386 merge patch applied locally (check mode's prediction of the server's answer)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(existing) if isinstance(existing, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = apply_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def managed_view(stream: Optional[dict[str, Any]], desired: dict[str, Any], tag_name: str) -> dict[str, Any]:
    """The parts of ``stream`` the module manages (the keys ``desired`` renders), for --diff output."""
    if not stream:
        return {}
    meta = stream.get("metadata") or {}
    desired_meta = desired.get("metadata") or {}
    view: dict[str, Any] = {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")}}
    for section in ("labels", "annotations"):
        present = {key: (meta.get(section) or {}).get(key) for key in desired_meta.get(section) or {}
                   if key in (meta.get(section) or {})}
        if present:
            view["metadata"][section] = present
    spec = stream.get("spec") or {}
    view_spec = {key: spec[key] for key in desired.get("spec") or {} if key != "tags" and key in spec}
    tag = spec_tag(stream, tag_name)
    if tag is not None:
        view_spec["tags"] = [{key: value for key, value in tag.items() if key != "generation"}]
    if view_spec:
        view["spec"] = view_spec
    return view


# ------------------------------------------------------------------------------------------ the API


class ImageStreams:
    """ImageStream calls through kubernetes.core's ``K8sService`` (its client, dry-run handling and errors)."""

    def __init__(self, service: Any, namespace: str) -> None:
        self.service = service
        self.namespace = namespace
        self._resource: Any = None

    @property
    def resource(self) -> Any:
        if self._resource is None:
            self._resource = self.service.find_resource(KIND, API_VERSION, fail=False)
            if self._resource is None:
                raise ClusterError("PlatformUnsupported",
                                   f"the cluster does not serve {API_VERSION} ImageStreams; use backend: local")
        return self._resource

    def get(self, name: str) -> Optional[dict[str, Any]]:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self.service.client.get(self.resource, name=name, namespace=self.namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as error:  # the client's ApiException family: reported with what was being done
            raise api_error(f"reading ImageStream {self.namespace}/{name}", error) from error

    def create(self, definition: dict[str, Any]) -> dict[str, Any]:
        name = definition["metadata"]["name"]
        try:
            created = self.service.client.create(self.resource, definition, namespace=self.namespace)
            return created.to_dict()
        except Exception as error:
            raise api_error(f"creating ImageStream {self.namespace}/{name}", error) from error

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        try:
            patched = self.service.client.patch(self.resource, patch, name=name, namespace=self.namespace,
                                                content_type="application/merge-patch+json")
            return patched.to_dict()
        except Exception as error:
            raise api_error(f"updating ImageStream {self.namespace}/{name}", error) from error

    def delete(self, name: str) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.service.client.delete(self.resource, name=name, namespace=self.namespace)
        except NotFoundError:
            return
        except Exception as error:
            raise api_error(f"deleting ImageStream {self.namespace}/{name}", error) from error

    def wait_for_import(self, name: str, tag_name: str, image: str, deadline: Deadline) -> tuple[dict[str, Any], ImportState]:
        """Wait until the tag resolves to a digest; raise at once on the import failure condition, and Timeout
        (temporary) when the deadline passes first."""
        last: dict[str, Any] = {}

        def probe() -> Optional[tuple[dict[str, Any], ImportState]]:
            stream = self.get(name)
            if stream is None:
                raise ClusterError("ApiError", f"ImageStream {self.namespace}/{name} was deleted while its import ran")
            last["stream"] = stream
            state = import_state(stream, tag_name)
            if state.failed:
                raise classify_import_condition(state.condition_reason, state.condition_message, image)
            return (stream, state) if state.imported else None

        outcome = poll(probe, deadline, first_interval=0.2, max_interval=2.0)
        if outcome is None:
            raise ClusterError(
                "Timeout",
                f"the import of {image} into ImageStream {self.namespace}/{name}:{tag_name} did not finish within "
                f"{deadline.seconds:g} s (no digest and no import failure reported); is the image import controller "
                f"running and the registry answering?",
                details={"stream": last.get("stream")},
            )
        return outcome
