"""HTTP access to the real API server with the aggregator's own (administrator) credentials."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import requests


class Upstream:
    """A thin, thread-safe JSON client for the Kubernetes API server named by a kubeconfig."""

    def __init__(self, kubeconfig: str):
        # The kubernetes package resolves contexts, inline certificate data and tokens the way kubectl does.
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration, persist_config=False)
        self.host = configuration.host.rstrip("/")
        self._verify: str | bool = configuration.ssl_ca_cert or configuration.verify_ssl
        self._cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        self._headers: dict[str, str] = {}
        token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
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

    def request(self, method: str, path: str, *, params: Any = None, body: Any = None, content_type: str | None = None,
                headers: dict[str, str] | None = None, stream: bool = False, timeout: float | None = 60) -> requests.Response:
        all_headers = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type or "application/json"
        return self._session().request(method, self.host + path, params=params, data=data, headers=all_headers,
                                       stream=stream, timeout=timeout)

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.request(method, path, **kwargs)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"message": response.text}

    def apply(self, path: str, manifest: dict[str, Any], field_manager: str = "mlops-sim") -> dict[str, Any]:
        """Server-side apply one object at its own path (``.../<plural>/<name>``), taking over conflicting fields."""
        code, body = self.json("PATCH", path, body=manifest, content_type="application/apply-patch+yaml",
                               params={"fieldManager": field_manager, "force": "true"})
        if code >= 300:
            raise RuntimeError(f"applying {path} failed ({code}): {body.get('message', body)}")
        return body

    def wait_for(self, path: str, ready: Any, timeout: float, what: str) -> dict[str, Any]:
        """Poll ``path`` until ``ready(object)`` is true; raise with ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, body = self.json("GET", path)
            if code == 200 and ready(body):
                return body
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s; last state: {json.dumps(body.get('status', body))[:500]}")

    def watch_lines(self, path: str, params: dict[str, str]) -> Iterator[bytes]:
        response = self.request("GET", path, params={**params, "watch": "true"}, stream=True, timeout=None)
        with response:
            if response.status_code != 200:
                yield response.content
                return
            for line in response.iter_lines():
                if line:
                    yield line


def condition_true(obj: dict[str, Any], condition_type: str) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition.get("status") == "True"
    return False
