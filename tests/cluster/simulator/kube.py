"""A small Kubernetes client for the simulator's controllers: JSON requests and a list-then-watch loop."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from typing import Any, Callable, Iterator

import requests

LOG = logging.getLogger("simulator.kube")
WATCH_TIMEOUT_SECONDS = 290


class ApiError(RuntimeError):
    def __init__(self, code: int, body: Any, what: str):
        self.code = code
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(f"{what}: {code} {self.body.get('reason', '')} {self.body.get('message', '')}".strip())


def now() -> str:
    """An RFC 3339 timestamp in seconds, as Kubernetes writes them."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Thread-safe: one requests session per thread."""

    def __init__(self, kubeconfig: str):
        from kubernetes import client, config  # resolves contexts and inline certificates as kubectl does

        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration, persist_config=False)
        self.host = configuration.host.rstrip("/")
        self.ca_file = configuration.ssl_ca_cert
        self._verify: str | bool = configuration.ssl_ca_cert or configuration.verify_ssl
        self._cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        self._headers = {"User-Agent": "mlops-simulator"}
        if token:
            self._headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Without this, REQUESTS_CA_BUNDLE or proxy variables of the environment override the cluster's CA.
            session.trust_env = False
            session.verify = self._verify
            session.cert = self._cert
            session.headers.update(self._headers)
            self._local.session = session
        return session

    def request(self, method: str, path: str, *, params: Any = None, body: Any = None,
                content_type: str = "application/json", stream: bool = False, timeout: float | None = 60) -> requests.Response:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        return self._session().request(method, self.host + path, params=params, data=data, headers=headers,
                                       stream=stream, timeout=timeout)

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text}
        if response.status_code not in ok:
            raise ApiError(response.status_code, body, f"{method} {path}")
        return body

    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.call("GET", path)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body=body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", path, body=body, content_type="application/merge-patch+json")

    def replace_status(self, path: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
        """Set ``status`` whole with a JSON patch: unlike a merge patch, it keeps explicit nulls (OpenShift's
        ImageStream status has ``items: null`` for a tag that failed to import). The patch applies only to
        ``resource_version`` (else an ApiError 409/422), so a concurrent writer is never overwritten."""
        operations = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
                      {"op": "add", "path": "/status", "value": status}]
        return self.call("PATCH", path, body=operations, content_type="application/json-patch+json")

    def apply(self, path: str, body: dict[str, Any], manager: str = "mlops-simulator") -> dict[str, Any]:
        return self.call("PATCH", path, body=body, content_type="application/apply-patch+yaml",
                         params={"fieldManager": manager, "force": "true"})

    def delete(self, path: str, params: Any = None, body: Any = None) -> None:
        self.call("DELETE", path, params=params, body=body, ok=(200, 202, 404))

    def events(self, path: str, params: dict[str, str], resource_version: str) -> Iterator[dict[str, Any]]:
        query = {**params, "watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS)}
        response = self.request("GET", path, params=query, stream=True, timeout=WATCH_TIMEOUT_SECONDS + 30)
        with response:
            if response.status_code != 200:
                raise ApiError(response.status_code, response.text[:300], f"watch {path}")
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def run_informer(kube: Kube, path: str, on_event: Callable[[str, dict[str, Any]], None], stop: threading.Event,
                 params: dict[str, str] | None = None, name: str = "") -> None:
    """List ``path``, hand every object to ``on_event("SYNC", obj)``, then watch from that point and hand over every
    change; list again when the watch expires. Runs until ``stop`` is set. Errors are logged and retried, since a
    controller must outlive a restarting API server or a group that is not served yet."""
    params = params or {}
    while not stop.is_set():
        try:
            listing = kube.call("GET", path, params=params)
            resource_version = listing["metadata"]["resourceVersion"]
            for item in listing.get("items") or []:
                _deliver(on_event, "SYNC", item, name)
            while not stop.is_set():
                for event in kube.events(path, params, resource_version):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise ApiError(obj.get("code", 500), obj, f"watch {path}")
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                    if kind != "BOOKMARK":
                        _deliver(on_event, kind, obj, name)
                    if stop.is_set():
                        return
        except Gone:
            continue
        except Exception as error:  # keep the controller alive; the next list starts over
            LOG.info("%s: %s; retrying", name or path, error)
            stop.wait(2.0)


def _deliver(on_event: Callable[[str, dict[str, Any]], None], kind: str, obj: dict[str, Any], name: str) -> None:
    try:
        on_event(kind, obj)
    except Exception:  # one bad object must not stop the watch
        LOG.exception("%s: handling %s %s failed", name, kind, (obj.get("metadata") or {}).get("name"))


def start_informer(kube: Kube, path: str, on_event: Callable[[str, dict[str, Any]], None], stop: threading.Event,
                   params: dict[str, str] | None = None, name: str = "") -> threading.Thread:
    thread = threading.Thread(target=run_informer, args=(kube, path, on_event, stop, params, name),
                              name=f"informer-{name or path}", daemon=True)
    thread.start()
    return thread


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def scenario(obj: dict[str, Any]) -> str:
    """The failure scenario an object asks for through its ``sim.mlops.test/scenario`` annotation ('' = none)."""
    return ((meta(obj).get("annotations") or {}).get("sim.mlops.test/scenario") or "").strip()
