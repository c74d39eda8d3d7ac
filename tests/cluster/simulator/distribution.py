"""Resolving an image reference to a digest through the OCI distribution API, as OpenShift's image import does."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import requests

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> str:
        return f"{self.registry}/{self.repository}@{digest}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.registry}/{self.repository}@{self.digest}"
        return f"{self.registry}/{self.repository}:{self.tag or 'latest'}"


class ImportFailure(Exception):
    """An import failed; ``reason`` is OpenShift's condition reason (NotFound, Unauthorized, InternalError...)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


_REFERENCE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z0-9_+.-]+:[0-9a-fA-F]{32,}))?$")


def parse_reference(text: str) -> ImageReference:
    """Docker's rules: the first path part is a registry when it has a dot or a port or is localhost."""
    match = _REFERENCE.match(text.strip())
    if not match:
        raise ImportFailure("InvalidImageReference", f"invalid image reference {text!r}")
    name = match.group("name")
    first, _slash, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", name if "/" in name else f"library/{name}"
    tag = match.group("tag")
    digest = match.group("digest")
    if not tag and not digest:
        tag = "latest"
    return ImageReference(registry, repository, tag, digest)


def credentials_for(registry: str, auths: dict[str, Any]) -> tuple[str, str] | None:
    """The username and password a docker config holds for ``registry`` (keys may carry a scheme or a path)."""
    for key, entry in auths.items():
        host = re.sub(r"^https?://", "", key).split("/")[0]
        if host != registry:
            continue
        if entry.get("username") is not None:
            return entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            username, _colon, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return username, password
    return None


def _authorize(session: requests.Session, response: requests.Response, credentials: tuple[str, str] | None) -> bool:
    """Answer a 401 challenge (Basic or Bearer token service); True when the session now carries credentials."""
    challenge = response.headers.get("WWW-Authenticate", "")
    if challenge.lower().startswith("basic") and credentials:
        session.auth = credentials
        return True
    if challenge.lower().startswith("bearer"):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            return False
        token_response = session.get(realm, params=params, auth=credentials, timeout=20)
        if token_response.status_code != 200:
            return False
        token = token_response.json().get("token") or token_response.json().get("access_token")
        session.headers["Authorization"] = f"Bearer {token}"
        return True
    return False


def resolve(reference: ImageReference, insecure: bool, auths: dict[str, Any], preserve_original: bool = False) -> str:
    """The digest ``reference`` names now. A manifest list resolves to its linux/amd64 image unless
    ``preserve_original`` (importMode PreserveOriginal). Raises ImportFailure with OpenShift's reasons."""
    credentials = credentials_for(reference.registry, auths)
    schemes = ["https", "http"] if insecure else ["https"]
    last_error = ""
    for scheme in schemes:
        session = requests.Session()
        session.verify = not insecure
        url = f"{scheme}://{reference.registry}/v2/{reference.repository}/manifests/{reference.reference}"
        try:
            response = session.get(url, headers={"Accept": MANIFEST_TYPES}, timeout=20)
            if response.status_code == 401 and _authorize(session, response, credentials):
                response = session.get(url, headers={"Accept": MANIFEST_TYPES}, timeout=20)
        except requests.exceptions.SSLError:
            last_error = (f'Get "https://{reference.registry}/v2/": http: server gave HTTP response to HTTPS client'
                          if _answers_http(reference.registry) else f"TLS handshake with {reference.registry} failed")
            continue
        except requests.exceptions.RequestException as error:
            last_error = f'Get "{scheme}://{reference.registry}/v2/": {error.__class__.__name__}: {error}'
            continue
        if response.status_code in (401, 403):
            raise ImportFailure("Unauthorized", f'you may not have access to the container image "{reference}"')
        if response.status_code == 404:
            raise ImportFailure("NotFound", f'dockerimage.image.openshift.io "{reference}" not found')
        if response.status_code != 200:
            raise ImportFailure("InternalError", f"Internal error occurred: {reference}: registry answered "
                                f"{response.status_code} {response.text[:200]}")
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        digest = response.headers.get("Docker-Content-Digest", "")
        if media_type in INDEX_TYPES and not preserve_original:
            for entry in response.json().get("manifests") or []:
                platform = entry.get("platform") or {}
                if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
                    return entry["digest"]
            raise ImportFailure("NotFound", f"{reference}: the manifest list has no linux/amd64 image")
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        return digest
    raise ImportFailure("InternalError", f"Internal error occurred: {last_error}")


def _answers_http(registry: str) -> bool:
    try:
        return requests.get(f"http://{registry}/v2/", timeout=5).status_code in (200, 401)
    except requests.exceptions.RequestException:
        return False
