"""The HTTPS server behind the ``v1.build.openshift.io`` APIService.

Every request comes from the kube-apiserver's front proxy: a client certificate signed by the request-header CA
(with a name in ``requestheader-allowed-names``) proves it, and the headers carry the end user. Each request is
then authorized with a SubjectAccessReview against the real API server, and served from objects stored as
``buildstore.sim.mlops.test`` custom resources.
"""

from __future__ import annotations

import json
import logging
import select
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from . import builds, translate
from .translate import GROUP, VERSION, PathError, ResourcePath
from .upstream import Upstream

LOG = logging.getLogger("aggregator")
LOG_FOLLOW_LIMIT_SECONDS = 2 * 3600
AGGREGATED_DISCOVERY_VERSIONS = ("v2", "v2beta1")


@dataclass
class RequestHeaderAuth:
    """The front-proxy settings the kube-apiserver publishes in kube-system/extension-apiserver-authentication."""

    client_ca_pem: str
    allowed_names: list[str]
    username_headers: list[str] = field(default_factory=lambda: ["X-Remote-User"])
    uid_headers: list[str] = field(default_factory=list)
    group_headers: list[str] = field(default_factory=lambda: ["X-Remote-Group"])
    extra_prefixes: list[str] = field(default_factory=lambda: ["X-Remote-Extra-"])

    @classmethod
    def from_configmap(cls, data: dict[str, str]) -> "RequestHeaderAuth":
        def names(key: str, default: list[str]) -> list[str]:
            raw = data.get(key)
            return json.loads(raw) if raw else default

        ca = data.get("requestheader-client-ca-file")
        if not ca:
            raise RuntimeError("the API server publishes no requestheader-client-ca-file: start kube-apiserver with "
                               "--requestheader-client-ca-file so aggregated API servers can trust its front proxy")
        return cls(
            client_ca_pem=ca,
            allowed_names=names("requestheader-allowed-names", []),
            username_headers=names("requestheader-username-headers", ["X-Remote-User"]),
            uid_headers=names("requestheader-uid-headers", []),
            group_headers=names("requestheader-group-headers", ["X-Remote-Group"]),
            extra_prefixes=names("requestheader-extra-headers-prefix", ["X-Remote-Extra-"]),
        )


@dataclass
class User:
    name: str
    groups: list[str]
    extra: dict[str, list[str]]
    uid: str = ""


class AuthenticationError(Exception):
    pass


class BuildAPI:
    """Request handling, independent of the HTTP plumbing."""

    def __init__(self, upstream: Upstream, auth: RequestHeaderAuth, log_dir: Path):
        self.upstream = upstream
        self.auth = auth
        self.log_dir = log_dir

    # -- authentication and authorization -------------------------------------------------------------------

    def authenticate(self, handler: "Handler", user_required: bool = True) -> User:
        peer = handler.connection.getpeercert() if isinstance(handler.connection, ssl.SSLSocket) else None
        if not peer:
            raise AuthenticationError("no client certificate from the front proxy")
        common_names = [value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"]
        if self.auth.allowed_names and not set(common_names) & set(self.auth.allowed_names):
            raise AuthenticationError(f"client certificate {common_names} is not in requestheader-allowed-names")
        headers = handler.headers
        name = next((headers[h] for h in self.auth.username_headers if headers.get(h)), "")
        if not name and user_required:
            raise AuthenticationError("the front proxy sent no user")
        uid = next((headers[h] for h in self.auth.uid_headers if headers.get(h)), "")
        groups = [g for h in self.auth.group_headers for g in headers.get_all(h) or []]
        extra: dict[str, list[str]] = {}
        for header, value in headers.items():
            for prefix in self.auth.extra_prefixes:
                if header.lower().startswith(prefix.lower()):
                    extra.setdefault(unquote(header[len(prefix):]).lower(), []).append(value)
        return User(name, groups, extra, uid)

    def authorize(self, user: User, verb: str, target: ResourcePath) -> tuple[bool, str]:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.name,
                "groups": user.groups,
                "extra": user.extra,
                "uid": user.uid,
                "resourceAttributes": {
                    "namespace": target.namespace or "",
                    "verb": verb,
                    "group": GROUP,
                    "version": VERSION,
                    "resource": target.resource,
                    "subresource": target.subresource or "",
                    "name": target.name or "",
                },
            },
        }
        code, body = self.upstream.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        if code != 201:
            raise RuntimeError(f"SubjectAccessReview failed ({code}): {body.get('message')}")
        result = body.get("status") or {}
        return bool(result.get("allowed")) and not result.get("denied"), result.get("reason", "")

    # -- dispatch ---------------------------------------------------------------------------------------------

    def handle(self, handler: "Handler") -> None:
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        query = dict(query_pairs)
        method = handler.command
        if path in ("/healthz", "/livez", "/readyz"):
            handler.send_text(200, "ok")
            return
        discovery = method == "GET" and path in ("/apis", f"/apis/{GROUP}", f"/apis/{GROUP}/{VERSION}")
        try:
            # Discovery is public on a Kubernetes API server; the aggregator's availability check may send no user.
            user = self.authenticate(handler, user_required=not discovery)
        except AuthenticationError as error:
            handler.send_json(401, translate.status(401, "Unauthorized", f"Unauthorized: {error}"))
            return
        if discovery:
            self.discovery(handler, path)
            return
        if path.startswith("/openapi") or path == "/version":
            handler.send_json(404, translate.status(404, "NotFound", "the server could not find the requested resource"))
            return
        try:
            target = translate.parse_resource_path(path)
            verb = translate.request_verb(method, target, query)
        except PathError as error:
            handler.send_json(404, translate.status(404, "NotFound", str(error)))
            return
        allowed, reason = self.authorize(user, verb, target)
        if not allowed:
            denial = translate.forbidden(user.name, verb, target)
            if reason:
                denial["message"] += f": {reason}"
            handler.send_json(403, denial)
            return
        if target.subresource == "instantiate":
            self.instantiate(handler, target)
        elif target.subresource == "log":
            self.build_log(handler, target, query)
        elif verb == "watch":
            self.watch(handler, target, query_pairs)
        else:
            self.forward(handler, target, verb, query_pairs)

    def discovery(self, handler: "Handler", path: str) -> None:
        if path == "/apis":
            accepted = handler.headers.get("Accept", "")
            for version in AGGREGATED_DISCOVERY_VERSIONS:
                media = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                if media in accepted.replace(" ", ""):
                    handler.send_json(200, translate.aggregated_discovery(version), content_type=media)
                    return
            handler.send_json(200, translate.api_group_list())
        elif path == f"/apis/{GROUP}":
            handler.send_json(200, translate.api_group())
        else:
            handler.send_json(200, translate.api_resource_list())

    # -- plain resources: forwarded to the storage group ------------------------------------------------------

    def forward(self, handler: "Handler", target: ResourcePath, verb: str, query_pairs: list[tuple[str, str]]) -> None:
        raw = handler.read_body()
        content_type = (handler.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body: Any = None
        if verb in ("create", "update"):
            try:
                obj = _parse_object(raw)
            except ValueError as error:
                handler.send_json(400, translate.status(400, "BadRequest", str(error)))
                return
            expected_kind = translate.KINDS[target.resource]
            if obj.get("kind") not in (None, expected_kind) or obj.get("apiVersion") not in (None, translate.GROUP_VERSION):
                handler.send_json(400, translate.status(
                    400, "BadRequest",
                    f"the body is {obj.get('apiVersion')}/{obj.get('kind')}, expected {translate.GROUP_VERSION}/{expected_kind}"))
                return
            obj.setdefault("apiVersion", translate.GROUP_VERSION)
            obj.setdefault("kind", expected_kind)
            builds.apply_defaults(expected_kind, obj)
            try:
                builds.validate(expected_kind, obj)
            except builds.Invalid as error:
                handler.send_json(422, error.status())
                return
            body = json.dumps(translate.to_storage(obj)).encode()
            content_type = "application/json"
        elif verb == "patch":
            if content_type == "application/strategic-merge-patch+json":
                # Custom resources have no strategic merge; OpenShift's Build types hold no merge keys that matter
                # to clients, so a JSON merge patch is the honest equivalent.
                content_type = "application/merge-patch+json"
            if content_type == "application/apply-patch+yaml":
                try:
                    body = json.dumps(translate.to_storage(_parse_object(raw))).encode()
                except ValueError as error:
                    handler.send_json(400, translate.status(400, "BadRequest", str(error)))
                    return
            else:
                body = _patch_to_storage(raw)
        elif raw:
            body = raw  # DeleteOptions
        headers = _forwarded_headers(handler)
        response = self.upstream.request(handler.command, target.storage_path(), params=query_pairs, body=body,
                                         content_type=content_type if body is not None else None, headers=headers)
        handler.send_upstream(response)

    def watch(self, handler: "Handler", target: ResourcePath, query_pairs: list[tuple[str, str]]) -> None:
        params = [(k, v) for k, v in query_pairs if k != "watch"] + [("watch", "true")]
        storage = ResourcePath(target.resource, target.namespace, target.name, None, watch_prefix=False)
        if target.name is not None:
            # /watch/namespaces/<ns>/<plural>/<name> is a watch on one object: a field selector on its name.
            params.append(("fieldSelector", f"metadata.name={target.name}"))
            storage = ResourcePath(target.resource, target.namespace)
        response = self.upstream.request("GET", storage.storage_path(), params=params, stream=True, timeout=None,
                                         headers=_forwarded_headers(handler))
        if response.status_code != 200:
            handler.send_upstream(response)
            return
        handler.start_stream("application/json")
        stop = handler.close_when_client_leaves(response)
        try:
            for line in response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if not handler.write_chunk(json.dumps(translate.to_public(event)).encode() + b"\n"):
                    break
        except Exception as error:  # the upstream stream was closed under us because the client left
            LOG.debug("watch ended: %s", error)
        finally:
            stop.set()
            response.close()
        handler.end_stream()

    # -- subresources -------------------------------------------------------------------------------------------

    def instantiate(self, handler: "Handler", target: ResourcePath) -> None:
        try:
            request = _parse_object(handler.read_body() or b"{}")
        except ValueError as error:
            handler.send_json(400, translate.status(400, "BadRequest", str(error)))
            return
        if request.get("kind") not in (None, "BuildRequest"):
            handler.send_json(400, translate.status(400, "BadRequest",
                                                    f"instantiate takes a BuildRequest, not {request.get('kind')}"))
            return
        requested_name = (request.get("metadata") or {}).get("name")
        if requested_name and requested_name != target.name:
            handler.send_json(400, translate.status(
                400, "BadRequest", f"the BuildRequest's name {requested_name!r} does not match the BuildConfig {target.name!r}"))
            return
        config_path = target.storage_path()
        for _attempt in range(20):
            code, config = self.upstream.json("GET", config_path)
            if code == 404:
                handler.send_json(404, translate.not_found(target))
                return
            if code != 200:
                handler.send_json(code, translate.to_public(config))
                return
            status = config.setdefault("status", {})
            number = int(status.get("lastVersion") or 0) + 1
            status["lastVersion"] = number
            code, updated = self.upstream.json("PUT", config_path, body=config)
            if code == 409:  # someone else started a build at the same time: read again and take the next number
                continue
            if code != 200:
                handler.send_json(code, translate.to_public(updated))
                return
            break
        else:
            handler.send_json(409, translate.status(409, "Conflict", "could not bump status.lastVersion: too many "
                                                    f"concurrent updates of buildconfig {target.name}"))
            return
        build = builds.build_from_config(translate.to_public(updated), number, request)
        builds_path = ResourcePath("builds", target.namespace).storage_path()
        code, created = self.upstream.json("POST", builds_path, body=translate.to_storage(build),
                                           headers=_forwarded_headers(handler))
        handler.send_json(code, translate.to_public(created))

    def build_log(self, handler: "Handler", target: ResourcePath, query: dict[str, str]) -> None:
        build_path = ResourcePath("builds", target.namespace, target.name).storage_path()
        code, build = self.upstream.json("GET", build_path)
        if code == 404:
            handler.send_json(404, translate.not_found(target))
            return
        if code != 200:
            handler.send_json(code, translate.to_public(build))
            return
        log_file = self.log_dir / str(target.namespace) / f"{target.name}.log"
        follow = query.get("follow") in ("true", "1")
        if not follow:
            data = log_file.read_bytes() if log_file.exists() else b""
            handler.send_bytes(200, _limit_log(data, query), "text/plain; charset=utf-8")
            return
        handler.start_stream("text/plain; charset=utf-8")
        offset = 0
        deadline = time.monotonic() + LOG_FOLLOW_LIMIT_SECONDS
        phase = (build.get("status") or {}).get("phase")
        next_check = 0.0
        while time.monotonic() < deadline:
            chunk = b""
            if log_file.exists():
                with open(log_file, "rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read()
            if chunk:
                offset += len(chunk)
                if not handler.write_chunk(chunk):
                    return
                continue
            if phase in builds.TERMINAL_PHASES:
                break
            if time.monotonic() >= next_check:
                code, build = self.upstream.json("GET", build_path)
                if code != 200:
                    break
                phase = (build.get("status") or {}).get("phase")
                next_check = time.monotonic() + 1.0
                if phase in builds.TERMINAL_PHASES:
                    continue  # read what the build wrote last, then stop
            time.sleep(0.2)
        handler.end_stream()


def _parse_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ValueError("the request has no body")
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ValueError(f"the body is neither JSON nor YAML: {error}") from None
    if not isinstance(value, dict):
        raise ValueError("the body must be an object")
    return value


def _patch_to_storage(raw: bytes) -> bytes:
    """A merge patch or JSON patch that names build.openshift.io/v1 (clients often send the whole object) must name
    the storage group instead, or the storage API server rejects the apiVersion."""
    try:
        patch = json.loads(raw)
    except ValueError:
        return raw  # the API server answers with its own 400
    if isinstance(patch, dict):
        return json.dumps(translate.to_storage(patch)).encode()
    if isinstance(patch, list):
        for operation in patch:
            if isinstance(operation, dict) and operation.get("path") == "/apiVersion" \
                    and operation.get("value") == translate.GROUP_VERSION:
                operation["value"] = translate.STORAGE_GROUP_VERSION
        return json.dumps(patch).encode()
    return raw


def _forwarded_headers(handler: "Handler") -> dict[str, str]:
    headers = {}
    accept = handler.headers.get("Accept")
    if accept and "protobuf" not in accept:
        headers["Accept"] = accept
    else:
        headers["Accept"] = "application/json"
    agent = handler.headers.get("User-Agent")
    if agent:  # managedFields name the client's manager after its user agent, as on a real server
        headers["User-Agent"] = agent
    return headers


def _limit_log(data: bytes, query: dict[str, str]) -> bytes:
    if query.get("tailLines"):
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) > 0 else b""
    if query.get("limitBytes"):
        data = data[: int(query["limitBytes"])]
    return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "AggregatorServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        LOG.info("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        try:
            self.server.api.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug or an unreachable API server: a 500 Status, never a dropped socket
            LOG.exception("request failed")
            try:
                self.send_json(500, translate.status(500, "InternalError", f"Internal error occurred: {error}"))
            except OSError:
                self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def send_bytes(self, code: int, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, code: int, body: dict[str, Any], content_type: str = "application/json") -> None:
        self.send_bytes(code, json.dumps(body).encode(), content_type)

    def send_text(self, code: int, text: str) -> None:
        self.send_bytes(code, text.encode(), "text/plain; charset=utf-8")

    def send_upstream(self, response: Any) -> None:
        content_type = response.headers.get("Content-Type", "application/json")
        data = response.content
        if "json" in content_type and data:
            try:
                data = json.dumps(translate.to_public(json.loads(data))).encode()
            except ValueError:
                pass
        extra = {"Warning": response.headers["Warning"]} if response.headers.get("Warning") else None
        self.send_bytes(response.status_code, data, content_type, extra)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def close_when_client_leaves(self, response: Any) -> threading.Event:
        """Close the upstream stream when the client hangs up, so an idle watch does not hold a thread forever."""
        stop = threading.Event()
        sock = self.connection

        def monitor() -> None:
            while not stop.is_set():
                readable, _writable, _errored = select.select([sock], [], [], 1.0)
                # The front proxy sends nothing more during a stream: readable means it closed the connection.
                if readable and not stop.is_set():
                    self.close_connection = True
                    response.close()
                    return

        threading.Thread(target=monitor, daemon=True).start()
        return stop


class AggregatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: BuildAPI, ssl_context: ssl.SSLContext):
        super().__init__(address, Handler)
        self.api = api
        self.ssl_context = ssl_context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, so a slow client never blocks accept().
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            LOG.info("TLS handshake with %s failed: %s", client_address, error)
            try:
                request.close()
            except OSError:
                pass
            return
        self.RequestHandlerClass(tls, client_address, self)


def make_ssl_context(cert_file: Path, key_file: Path, client_ca_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.load_verify_locations(cadata=client_ca_pem)
    # Optional at the TLS layer so a request without a certificate gets a proper 401 Status, not a reset.
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def serve(api: BuildAPI, context: ssl.SSLContext, port: int = 0) -> AggregatorServer:
    server = AggregatorServer(("127.0.0.1", port), api, context)
    threading.Thread(target=server.serve_forever, name="https", daemon=True).start()
    return server
