"""The image import controller: fills an ImageStream's ``status.tags`` from the registries, as OpenShift does.

For each ``spec.tags[]`` whose ``from`` is a DockerImage, the reference is resolved through the distribution API
(with the namespace's dockerconfigjson Secrets, and plain HTTP only when ``importPolicy.insecure`` is true), and the
tag's status gets an item (created, dockerImageReference ``<registry>/<repo>@sha256:...``, image, generation) or an
``ImportSuccess=False`` condition with OpenShift's reason (NotFound, Unauthorized, InternalError). A tag whose
``from`` is an ImageStreamTag follows that tag. With an import (or a build's push), ``status.dockerImageRepository``
names the stream's repository in the local registry, which plays OpenShift's internal registry (builds push
there); a stream with nothing to import is not written to.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from .distribution import ImportFailure, parse_reference, resolve
from .kube import ApiError, Kube, meta, now, scenario, start_informer
from .kubelet import docker_auths

LOG = logging.getLogger("simulator.imports")
PATH = "/apis/image.openshift.io/v1"
HISTORY_LIMIT = 5


def stream_path(namespace: str, name: str) -> str:
    return f"{PATH}/namespaces/{namespace}/imagestreams/{name}"


class ImageImporter:
    def __init__(self, kube: Kube, registry: str, stop: threading.Event):
        self.kube = kube
        self.registry = registry
        self.stop = stop
        self.queue: "queue.Queue[tuple[str, str]]" = queue.Queue()

    def start(self) -> None:
        threading.Thread(target=self._work, name="image-import", daemon=True).start()
        start_informer(self.kube, f"{PATH}/imagestreams", self.on_event, self.stop, name="imagestreams")

    def on_event(self, event: str, stream: dict[str, Any]) -> None:
        if event != "DELETED":
            self.queue.put((meta(stream)["namespace"], meta(stream)["name"]))

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                namespace, name = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                stream = self.kube.get(stream_path(namespace, name))
                if stream is not None:
                    self.sync(stream)
            except Exception:  # one stream's failure must not stop the controller
                LOG.exception("import of imagestream %s/%s", namespace, name)

    def namespace_auths(self, namespace: str) -> dict[str, Any]:
        auths: dict[str, Any] = {}
        for secret_type in ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"):
            listing = self.kube.call("GET", f"/api/v1/namespaces/{namespace}/secrets",
                                     params={"fieldSelector": f"type={secret_type}"})
            for secret in listing.get("items") or []:
                auths.update(docker_auths(secret))
        return auths

    def sync(self, stream: dict[str, Any]) -> None:
        hook = scenario(stream)
        if hook in ("hang", "hang-import"):
            return
        metadata = meta(stream)
        namespace, name = metadata["namespace"], metadata["name"]
        status = stream.get("status") or {}
        tags = {entry["tag"]: entry for entry in status.get("tags") or [] if entry.get("tag")}
        changed = False
        auths: dict[str, Any] | None = None
        for spec_tag in (stream.get("spec") or {}).get("tags") or []:
            tag_name = spec_tag.get("name")
            source = spec_tag.get("from") or {}
            if not tag_name or source.get("kind") not in ("DockerImage", "ImageStreamTag"):
                continue
            generation = spec_tag.get("generation") or metadata.get("generation") or 1
            existing = tags.get(tag_name) or {"tag": tag_name}
            if _imported(existing, generation):
                continue
            try:
                if hook == "fail-import":
                    raise ImportFailure("InternalError", "Internal error occurred: simulated import failure "
                                        "(sim.mlops.test/scenario=fail-import)")
                if source["kind"] == "DockerImage":
                    reference = parse_reference(source.get("name", ""))
                    if auths is None:
                        auths = self.namespace_auths(namespace)
                    policy = spec_tag.get("importPolicy") or {}
                    digest = resolve(reference, bool(policy.get("insecure")), auths,
                                     preserve_original=policy.get("importMode") == "PreserveOriginal")
                    item = {"created": now(), "dockerImageReference": reference.with_digest(digest), "image": digest,
                            "generation": generation}
                else:
                    item = self._follow_tag(namespace, name, source, stream)
                    item["generation"] = generation
                history = [old for old in existing.get("items") or [] if old.get("image") != item["image"]]
                tags[tag_name] = {"tag": tag_name, "items": [item] + history[: HISTORY_LIMIT - 1]}
            except ImportFailure as failure:
                tags[tag_name] = {
                    "tag": tag_name,
                    "items": existing.get("items") or None,
                    "conditions": [{
                        "type": "ImportSuccess",
                        "status": "False",
                        "lastTransitionTime": now(),
                        "reason": failure.reason,
                        "message": str(failure),
                        "generation": generation,
                    }],
                }
            changed = True
        if not changed:
            # Streams with nothing to import are left alone (their status is only written with an import or a push).
            return
        repository = f"{self.registry}/{namespace}/{name}" if self.registry else status.get("dockerImageRepository", "")
        new_status = {**status, "dockerImageRepository": repository, "tags": list(tags.values())}
        try:
            self.kube.replace_status(stream_path(namespace, name) + "/status", new_status, metadata["resourceVersion"])
        except ApiError as error:
            if error.code in (409, 422):  # changed meanwhile: its watch event brings it back with the new version
                return
            if error.code != 404:
                raise

    def _follow_tag(self, namespace: str, name: str, source: dict[str, Any], stream: dict[str, Any]) -> dict[str, Any]:
        other_name, _colon, other_tag = source.get("name", "").partition(":")
        other_namespace = source.get("namespace") or namespace
        other = stream if (other_namespace, other_name) == (namespace, name) else self.kube.get(
            stream_path(other_namespace, other_name))
        for entry in ((other or {}).get("status") or {}).get("tags") or []:
            if entry.get("tag") == (other_tag or "latest") and entry.get("items"):
                latest = dict(entry["items"][0])
                latest["created"] = now()
                return latest
        raise ImportFailure("NotFound", f'imagestreamtag.image.openshift.io "{other_name}:{other_tag or "latest"}" not found')

    def record_push(self, namespace: str, name: str, tag: str, image_reference: str, digest: str) -> None:
        """A build pushed ``<registry>/<namespace>/<name>:<tag>``: make the stream (if needed) and tag it, as the
        internal registry does on push."""
        path = stream_path(namespace, name)
        for _attempt in range(5):
            stream = self.kube.get(path)
            if stream is None:
                try:
                    stream = self.kube.create(f"{PATH}/namespaces/{namespace}/imagestreams", {
                        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                        "metadata": {"name": name, "namespace": namespace}, "spec": {}})
                except ApiError as error:
                    if error.code == 409:
                        continue
                    raise
            status = stream.get("status") or {}
            tags = [entry for entry in status.get("tags") or [] if entry.get("tag") != tag]
            previous = next((entry for entry in status.get("tags") or [] if entry.get("tag") == tag), {})
            history = [old for old in previous.get("items") or [] if old.get("image") != digest]
            item = {"created": now(), "dockerImageReference": image_reference, "image": digest,
                    "generation": meta(stream).get("generation", 1)}
            tags.append({"tag": tag, "items": [item] + history[: HISTORY_LIMIT - 1]})
            repository = f"{self.registry}/{namespace}/{name}"
            try:
                self.kube.replace_status(path + "/status", {**status, "dockerImageRepository": repository, "tags": tags},
                                         meta(stream)["resourceVersion"])
            except ApiError as error:
                if error.code in (409, 422):  # changed meanwhile: read it again
                    continue
                raise
            return


def _imported(status_tag: dict[str, Any], generation: int) -> bool:
    items = status_tag.get("items") or []
    if items and int(items[0].get("generation") or 0) >= generation:
        return True
    return any(int(c.get("generation") or 0) >= generation for c in status_tag.get("conditions") or [])
