"""The aggregator's retry of reads that the API server answers 429 (tests/cluster/aggregator/upstream.py)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
if str(CLUSTER_DIR) not in sys.path:
    sys.path.insert(0, str(CLUSTER_DIR))

from aggregator.upstream import Upstream, retry_after_seconds, send_with_retry  # noqa: E402

# What kube-apiserver answers while a resource's watch cache is initializing.
INITIALIZING = json.dumps({
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "storage is (re)initializing",
    "reason": "TooManyRequests", "details": {"retryAfterSeconds": 1}, "code": 429,
}).encode()


@pytest.mark.parametrize(
    ("status_code", "body", "headers", "expected"),
    [
        (429, INITIALIZING, {}, 1.0),
        (429, INITIALIZING, {"Retry-After": "7"}, 1.0),  # the Status's own field wins
        (429, b'{"kind": "Status", "code": 429}', {"Retry-After": "3"}, 3.0),
        (429, b"too many requests", {"Retry-After": "2"}, 2.0),
        (429, b'{"kind": "Status", "code": 429}', {}, None),  # no delay: not a request to retry
        (429, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        (429, json.dumps({"details": {"retryAfterSeconds": -1}}).encode(), {}, None),
        (200, INITIALIZING, {"Retry-After": "1"}, None),
        (503, INITIALIZING, {"Retry-After": "1"}, None),
    ],
)
def test_retry_after_seconds(status_code: int, body: bytes, headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(status_code, body, headers) == expected


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _server(answers: list[tuple[int, float | None]]) -> tuple[list[int], object, object]:
    """A sender that hands out ``answers`` in turn (status, delay), and what it was asked."""
    sent: list[int] = []

    def send() -> tuple[int, float | None]:
        sent.append(len(sent))
        return answers[min(len(sent) - 1, len(answers) - 1)]

    def delay_of(answer: tuple[int, float | None]) -> float | None:
        return answer[1]

    return sent, send, delay_of


def test_retries_until_the_server_answers() -> None:
    clock = FakeClock()
    sent, send, delay_of = _server([(429, 1.0), (429, 1.0), (200, None)])
    answer = send_with_retry(send, delay_of, 30.0, sleep=clock.sleep, clock=clock.time)
    assert answer == (200, None)
    assert len(sent) == 3
    assert clock.sleeps == [1.0, 1.0]


def test_gives_the_429_back_when_the_budget_is_spent() -> None:
    clock = FakeClock()
    sent, send, delay_of = _server([(429, 1.0)])
    answer = send_with_retry(send, delay_of, 5.5, sleep=clock.sleep, clock=clock.time)
    assert answer == (429, 1.0)
    assert sum(clock.sleeps) <= 5.5
    assert len(sent) == 6  # tries at 0, 1, 2, 3, 4, 5 s; the next would wait past 5.5 s


def test_a_delay_longer_than_the_budget_is_not_waited_for() -> None:
    clock = FakeClock()
    sent, send, delay_of = _server([(429, 60.0), (200, None)])
    answer = send_with_retry(send, delay_of, 30.0, sleep=clock.sleep, clock=clock.time)
    assert answer == (429, 60.0)
    assert len(sent) == 1
    assert not clock.sleeps


def test_a_zero_delay_still_waits_a_little() -> None:
    clock = FakeClock()
    sent, send, delay_of = _server([(429, 0.0), (200, None)])
    assert send_with_retry(send, delay_of, 30.0, sleep=clock.sleep, clock=clock.time) == (200, None)
    assert len(sent) == 2
    assert clock.sleeps and clock.sleeps[0] > 0


def test_no_budget_means_one_try() -> None:
    clock = FakeClock()
    sent, send, delay_of = _server([(429, 1.0), (200, None)])
    assert send_with_retry(send, delay_of, 0.0, sleep=clock.sleep, clock=clock.time) == (429, 1.0)
    assert len(sent) == 1


class _StartingApiServer(BaseHTTPRequestHandler):
    """An HTTP server that answers like kube-apiserver while a watch cache initializes, for its first 429s."""

    protocol_version = "HTTP/1.1"
    initializing_answers = 2
    requests_seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
        pass

    def _answer(self) -> None:
        type(self).requests_seen.append(self.command)
        body_length = int(self.headers.get("Content-Length") or 0)
        if body_length:
            self.rfile.read(body_length)
        if self.command != "GET" or len([m for m in self.requests_seen if m == "GET"]) <= self.initializing_answers:
            body = INITIALIZING.replace(b'"retryAfterSeconds": 1', b'"retryAfterSeconds": 0')  # keeps the test quick
            self.send_response(429)
            self.send_header("Retry-After", "0")
        else:
            body = b'{"kind": "BuildConfigList", "items": []}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


@pytest.fixture
def starting_api_server(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig naming a local HTTP server that answers 429 to its first two GETs and to every POST."""
    _StartingApiServer.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StartingApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "anyone", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "anyone"}}],
    }))
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("stream", [False, True], ids=["list", "watch"])
def test_upstream_reads_wait_for_the_storage(starting_api_server: Path, stream: bool) -> None:
    upstream = Upstream(str(starting_api_server))
    response = upstream.request("GET", "/apis/buildstore.sim.mlops.test/v1/buildconfigs", stream=stream)
    assert response.status_code == 200
    assert json.loads(response.content)["kind"] == "BuildConfigList"
    assert _StartingApiServer.requests_seen == ["GET", "GET", "GET"]


def test_upstream_writes_are_not_repeated(starting_api_server: Path) -> None:
    upstream = Upstream(str(starting_api_server))
    response = upstream.request("POST", "/apis/buildstore.sim.mlops.test/v1/namespaces/ns/buildconfigs", body={})
    assert response.status_code == 429
    assert _StartingApiServer.requests_seen == ["POST"]


def test_upstream_reads_give_up_without_budget(starting_api_server: Path) -> None:
    upstream = Upstream(str(starting_api_server))
    response = upstream.request("GET", "/apis/buildstore.sim.mlops.test/v1/buildconfigs", retry_budget=0)
    assert response.status_code == 429
    assert json.loads(response.content)["message"] == "storage is (re)initializing"
    assert _StartingApiServer.requests_seen == ["GET"]
