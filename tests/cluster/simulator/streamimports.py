"""ImageStreamImport, OpenShift's create-only import request, played on the ``imagestreamimports`` CRD.

On OpenShift a POST of an ImageStreamImport imports its ``spec.images`` (or ``spec.repository``) into the
ImageStream named by ``metadata.name`` and answers with ``status.images``; nothing is stored. Here the CRD stores
the request and this controller does the import: for each new ImageStreamImport it resolves every image through
the distribution API (with the namespace's pull secrets, as the image import controller does), and with
``spec.import: true`` sets the stream's ``spec.tags`` (from, importPolicy, referencePolicy; the stream is created
when missing) and its ``status.tags`` with the resolved digest. It then writes the ImageStreamImport's
``status.images`` (``status`` Success or Failure with reason and message, ``image`` with ``metadata.name`` = digest
and ``dockerImageReference``) and deletes the object a few seconds later, so the same name can be imported again.

Clients such as community.okd's openshift_import_image send the stream's ``resourceVersion`` in the request's
metadata, which OpenShift accepts and a CRD's storage refuses on create; a mutating admission webhook served here
(over TLS with the kubelet serving certificate, signed by the cluster CA) removes it before storage.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import queue
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .distribution import ImportFailure, parse_reference, resolve
from .imports import HISTORY_LIMIT, PATH, ImageImporter, stream_path
from .kube import ApiError, Kube, meta, now, start_informer

LOG = logging.getLogger("simulator.streamimports")
WEBHOOK_NAME = "mlops-simulator-imagestreamimports"
WEBHOOK_PATH = "/mutate-imagestreamimports"
# OpenShift keeps nothing; the object lives this long so a client (or a test) can read status.images
DELETE_AFTER_SECONDS = 2.0


def isi_path(namespace: str, name: str) -> str:
    return f"{PATH}/namespaces/{namespace}/imagestreamimports/{name}"


class StreamImportController:
    def __init__(self, kube: Kube, importer: ImageImporter, certs: dict[str, Any], stop: threading.Event):
        self.kube = kube
        self.importer = importer
        self.certs = certs
        self.stop = stop
        self.queue: "queue.Queue[tuple[str, str]]" = queue.Queue()

    def start(self) -> None:
        port = serve_webhook(self.certs)
        self.register_webhook(port)
        threading.Thread(target=self._work, name="imagestreamimport", daemon=True).start()
        start_informer(self.kube, f"{PATH}/imagestreamimports", self.on_event, self.stop, name="imagestreamimports")

    def register_webhook(self, port: int) -> None:
        ca_bundle = base64.b64encode(Path(self.certs["ca"]["cert"]).read_bytes()).decode()
        self.kube.apply(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_NAME}", {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_NAME},
            "webhooks": [{
                "name": "imagestreamimports.sim.mlops.test",
                "clientConfig": {"url": f"https://127.0.0.1:{port}{WEBHOOK_PATH}", "caBundle": ca_bundle},
                "rules": [{"apiGroups": ["image.openshift.io"], "apiVersions": ["v1"], "operations": ["CREATE"],
                           "resources": ["imagestreamimports"], "scope": "Namespaced"}],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                # only ImageStreamImports pass here, and without the simulator nothing would import them anyway
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }],
        })

    def on_event(self, event: str, isi: dict[str, Any]) -> None:
        if event == "DELETED":
            return
        if (isi.get("status") or {}).get("images") is not None or (isi.get("status") or {}).get("repository"):
            self.schedule_delete(isi)  # done before (e.g. by a simulator that stopped before deleting it)
            return
        self.queue.put((meta(isi)["namespace"], meta(isi)["name"]))

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                namespace, name = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                isi = self.kube.get(isi_path(namespace, name))
                if isi is not None and not (isi.get("status") or {}).get("images"):
                    self.process(isi)
            except Exception:  # one request's failure must not stop the controller
                LOG.exception("imagestreamimport %s/%s", namespace, name)

    def process(self, isi: dict[str, Any]) -> None:
        metadata = meta(isi)
        namespace, name = metadata["namespace"], metadata["name"]
        spec = isi.get("spec") or {}
        auths = self.importer.namespace_auths(namespace)
        results: list[dict[str, Any]] = []
        tags: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for request in spec.get("images") or []:
            result, tag = _import_one(request, auths)
            results.append(result)
            if tag is not None:
                tags.append((tag, result))
        status: dict[str, Any] = {"images": results}
        if spec.get("repository"):
            # a whole repository needs the registry's tag list, which this simulator does not read
            status["repository"] = {"status": _status("Failure", "BadRequest", "the simulator imports images by tag "
                                                      "(spec.images); spec.repository is not supported")}
        if spec.get("import") and tags:
            stream = self.tag_stream(namespace, name, tags)
            if stream is not None:
                status["import"] = stream
        try:
            done = self.kube.replace_status(isi_path(namespace, name) + "/status", status, metadata["resourceVersion"])
        except ApiError as error:
            if error.code in (404, 409, 422):  # deleted or replaced meanwhile
                return
            raise
        LOG.info("imagestreamimport %s/%s: %s", namespace, name,
                 ", ".join(f"{r['tag']}={r['status']['status']}" for r in results) or "nothing to import")
        self.schedule_delete(done)

    def tag_stream(self, namespace: str, name: str, tags: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any] | None:
        """Set ``spec.tags`` and, for the images that resolved, ``status.tags`` of the stream (created when missing).
        Writes nothing when the stream already says all of it (a re-import of unchanged images)."""
        path = stream_path(namespace, name)
        for _attempt in range(5):
            stream = self.kube.get(path)
            try:
                if stream is None:
                    stream = self.kube.create(f"{PATH}/namespaces/{namespace}/imagestreams", {
                        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"tags": [tag for tag, _result in tags]}})
                else:
                    spec_tags = list((stream.get("spec") or {}).get("tags") or [])
                    changed = False
                    for tag, _result in tags:
                        index = next((i for i, old in enumerate(spec_tags) if old.get("name") == tag["name"]), None)
                        if index is None:
                            spec_tags.append(tag)
                            changed = True
                        else:
                            merged = {**spec_tags[index], **{k: v for k, v in tag.items() if k != "annotations"}}
                            changed = changed or merged != spec_tags[index]
                            spec_tags[index] = merged
                    if changed:
                        updated = copy.deepcopy(stream)
                        updated.setdefault("spec", {})["tags"] = spec_tags
                        stream = self.kube.call("PUT", path, body=updated)
                return self._record_images(stream, tags)
            except ApiError as error:
                if error.code in (409, 422):  # written meanwhile (by the import controller): read it again
                    continue
                raise
        LOG.warning("imagestream %s/%s kept changing; its tags were not updated", namespace, name)
        return None

    def _record_images(self, stream: dict[str, Any], tags: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
        metadata = meta(stream)
        generation = metadata.get("generation") or 1
        status = stream.get("status") or {}
        status_tags = {entry["tag"]: entry for entry in status.get("tags") or [] if entry.get("tag")}
        changed = False
        for tag, result in tags:
            image = result.get("image")
            if not image:
                continue  # a failed image: the import controller records the failure condition on the stream
            previous = status_tags.get(tag["name"]) or {}
            items = previous.get("items") or []
            if items and items[0].get("image") == image["metadata"]["name"] and not previous.get("conditions") \
                    and int(items[0].get("generation") or 0) >= generation:
                continue
            item = {"created": now(), "dockerImageReference": image["dockerImageReference"],
                    "image": image["metadata"]["name"], "generation": generation}
            history = [old for old in items if old.get("image") != item["image"]]
            status_tags[tag["name"]] = {"tag": tag["name"], "items": [item] + history[: HISTORY_LIMIT - 1]}
            changed = True
        if not changed:
            return stream
        repository = f"{self.importer.registry}/{metadata['namespace']}/{metadata['name']}" if self.importer.registry \
            else status.get("dockerImageRepository", "")
        return self.kube.replace_status(stream_path(metadata["namespace"], metadata["name"]) + "/status",
                                        {**status, "dockerImageRepository": repository, "tags": list(status_tags.values())},
                                        metadata["resourceVersion"])

    def schedule_delete(self, isi: dict[str, Any]) -> None:
        metadata = meta(isi)
        timer = threading.Timer(DELETE_AFTER_SECONDS, self._delete, args=(metadata["namespace"], metadata["name"], metadata["uid"]))
        timer.daemon = True
        timer.start()

    def _delete(self, namespace: str, name: str, uid: str) -> None:
        try:
            # the uid precondition spares a newer request of the same name
            self.kube.delete(isi_path(namespace, name), body={"preconditions": {"uid": uid}})
        except ApiError as error:
            if error.code != 409:
                LOG.warning("deleting imagestreamimport %s/%s: %s", namespace, name, error)


def _status(outcome: str, reason: str = "", message: str = "", code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"metadata": {}, "status": outcome}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if code:
        status["code"] = code
    return status


FAILURE_CODES = {"NotFound": 404, "Unauthorized": 401, "InternalError": 500, "BadRequest": 400}


def _import_one(request: dict[str, Any], auths: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The ``status.images`` item for one ``spec.images`` item, and the ImageStream spec tag it sets (None when the
    request names no DockerImage)."""
    source = request.get("from") or {}
    tag_name = (request.get("to") or {}).get("name") or ""
    if source.get("kind") != "DockerImage" or not source.get("name"):
        message = f"only DockerImage sources can be imported, not {source.get('kind')!r}"
        return {"tag": tag_name, "status": _status("Failure", "BadRequest", message, 400)}, None
    try:
        reference = parse_reference(source["name"])
    except ImportFailure as failure:
        return {"tag": tag_name, "status": _status("Failure", failure.reason, str(failure), 400)}, None
    tag_name = tag_name or reference.tag or "latest"
    policy = request.get("importPolicy") or {}
    # annotations is always present (null when empty), as OpenShift serializes a TagReference; clients rely on it
    spec_tag: dict[str, Any] = {"name": tag_name, "annotations": None, "from": {"kind": "DockerImage", "name": source["name"]},
                                "importPolicy": {key: value for key, value in policy.items() if value is not None},
                                "referencePolicy": {"type": (request.get("referencePolicy") or {}).get("type") or "Source"}}
    try:
        digest = resolve(reference, bool(policy.get("insecure")), auths,
                         preserve_original=policy.get("importMode") == "PreserveOriginal")
    except ImportFailure as failure:
        return {"tag": tag_name, "status": _status("Failure", failure.reason, str(failure),
                                                   FAILURE_CODES.get(failure.reason))}, spec_tag
    image = {"metadata": {"name": digest}, "dockerImageReference": reference.with_digest(digest)}
    return {"tag": tag_name, "status": _status("Success"), "image": image}, spec_tag


class WebhookHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        LOG.debug(format, *args)

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        length = int(self.headers.get("Content-Length") or 0)
        try:
            review = json.loads(self.rfile.read(length))
            request = review["request"]
        except (ValueError, KeyError, TypeError):
            self.send_error(400, "expected an AdmissionReview")
            return
        response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
        if self.path.split("?")[0] == WEBHOOK_PATH and meta(request.get("object") or {}).get("resourceVersion"):
            patch = [{"op": "remove", "path": "/metadata/resourceVersion"}]
            response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        self.RequestHandlerClass(tls, client_address, self)


def serve_webhook(certs: dict[str, Any]) -> int:
    """Start the admission webhook's HTTPS server; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # the kubelet's serving certificate names 127.0.0.1 and is signed by the cluster CA the API server is given
    context.load_cert_chain(certs["kubelet_serving"]["cert"], certs["kubelet_serving"]["key"])
    server = WebhookServer(context)
    threading.Thread(target=server.serve_forever, name="imagestreamimport-webhook", daemon=True).start()
    return server.server_address[1]
