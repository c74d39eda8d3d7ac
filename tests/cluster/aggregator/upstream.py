"""HTTP access to the real API server with the aggregator's own (administrator) credentials."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterator, Mapping, TypeVar

import requests

LOG = logging.getLogger("aggregator")
# How long a read may wait in total for an API server that answers 429 with retryAfterSeconds, as it does while a
# resource's watch cache is (re)initializing (just after start-up, or after its CRD was established).
RETRY_BUDGET_SECONDS = 30.0
# Only reads are repeated (get, list and watch are GETs): repeating them changes nothing on the server.
RETRIED_METHODS = frozenset({"GET"})
_Answer = TypeVar("_Answer")


def retry_after_seconds(status_code: int, body: bytes, headers: Mapping[str, str]) -> float | None:
    """The delay a 429 answer asks for (its Status's ``details.retryAfterSeconds``, else a numeric ``Retry-After``
    header), or None when the answer is not a 429 that asks to be retried."""
    if status_code != 429:
        return None
    seconds: Any = None
    try:
        status = json.loads(body) if body else None
    except ValueError:
        status = None
    if isinstance(status, dict) and isinstance(status.get("details"), dict):
        seconds = status["details"].get("retryAfterSeconds")
    if seconds is None:
        seconds = headers.get("Retry-After")
    try:
        delay = float(seconds)
    except (TypeError, ValueError):
        return None
    return delay if delay >= 0 else None


def send_with_retry(send: Callable[[], _Answer], delay_of: Callable[[_Answer], float | None], budget: float,
                    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> _Answer:
    """Call ``send`` until ``delay_of`` its answer is None, sleeping that delay in between, for at most ``budget``
    seconds in all; an answer whose delay would overrun the budget is returned as it is."""
    deadline = clock() + budget
    while True:
        answer = send()
        delay = delay_of(answer)
        if delay is None:
            return answer
        # A zero delay still waits a little, so a server that says "now" is not hammered in a busy loop.
        delay = max(delay, 0.1)
        if clock() + delay > deadline:
            return answer
        sleep(delay)


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
                headers: dict[str, str] | None = None, stream: bool = False, timeout: float | None = 60,
                retry_budget: float = RETRY_BUDGET_SECONDS) -> requests.Response:
        """One request; a read answered 429 with a retry delay is repeated for up to ``retry_budget`` seconds, so
        clients (whose watches do not retry a 429) never see the API server's start-up."""
        all_headers = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type or "application/json"

        def send() -> requests.Response:
            return self._session().request(method, self.host + path, params=params, data=data, headers=all_headers,
                                           stream=stream, timeout=timeout)

        def delay_of(response: requests.Response) -> float | None:
            if response.status_code != 429:
                return None
            delay = retry_after_seconds(response.status_code, response.content, response.headers)
            if delay is not None:
                LOG.info("%s %s: the API server answered 429 (%s), asking to retry after %.1f s",
                         method, path, response.text[:200], delay)
                response.close()
            return delay

        if method.upper() not in RETRIED_METHODS or retry_budget <= 0:
            return send()
        return send_with_retry(send, delay_of, retry_budget)

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
