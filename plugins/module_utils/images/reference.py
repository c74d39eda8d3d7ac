# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container image references: ``[registry[:port]/]path/of/repository[:tag][@algorithm:digest]``.

Follows the grammar of the OCI distribution reference (as docker, podman, skopeo and OpenShift read it):

- the first component is a registry when it contains ``.`` or ``:``, is ``localhost`` or has upper-case letters;
  otherwise the registry is ``docker.io``, and a single-component name there means ``library/<name>``;
- the repository path keeps every component (``quay.io/a/b/c`` is ``a/b/c`` in ``quay.io``) and must be lower-case;
- no tag and no digest means the tag ``latest``; a digest alone keeps no tag; both may be given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Optional

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
OFFICIAL_IMAGES_NAMESPACE = "library"
# The ODH dashboard names the ImageStreams of custom images ``custom-<k8s-safe name>``.
CUSTOM_IMAGE_PREFIX = "custom-"
# Names the registry of docker.io is known under; all mean docker.io.
_DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_TRANSPORT_PREFIX = "docker://"
_MAX_NAME_LENGTH = 255
_K8S_NAME_MAX_LENGTH = 63

_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::(?P<port>[0-9]+))?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<encoded>[a-zA-Z0-9=_-]+)$")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidImageReference(ValueError):
    """The text is not a container image reference; the message says what is wrong with it."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. ``registry`` always set (``docker.io`` by default), ``tag`` and ``digest``
    as given (``tag`` is ``latest`` when neither was given)."""

    registry: str
    repository_path: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> "ImageReference":
        """Parse ``text``; raise ``InvalidImageReference`` with the reason when it is not a valid reference."""
        return parse(text)

    @property
    def name(self) -> str:
        """``registry/repository/path`` without tag or digest."""
        return f"{self.registry}/{self.repository_path}"

    @property
    def pull_spec(self) -> str:
        """The canonical, fully qualified reference: ``registry/path[:tag][@digest]``."""
        spec = self.name
        if self.tag is not None:
            spec += f":{self.tag}"
        if self.digest is not None:
            spec += f"@{self.digest}"
        return spec

    @property
    def tag_or_default(self) -> str:
        """The tag, or ``latest`` for a reference given by digest only (the name an ImageStream tag gets)."""
        return self.tag if self.tag is not None else DEFAULT_TAG

    @property
    def last_component(self) -> str:
        """The last component of the repository path (``notebook`` for ``quay.io/org/team/notebook:1``)."""
        return self.repository_path.rsplit("/", 1)[-1]

    def by_digest(self, digest: str) -> str:
        """The pull spec pinned to ``digest``, without tag: ``registry/path@sha256:...``."""
        return f"{self.name}@{validate_digest(digest)}"

    def suggested_imagestream_name(self) -> str:
        """An ImageStream name in the ODH dashboard's style: ``custom-<last path component>``, k8s-safe."""
        return k8s_safe_name(self.last_component, prefix=CUSTOM_IMAGE_PREFIX)

    def __str__(self) -> str:
        return self.pull_spec


def parse(text: str) -> ImageReference:
    """Parse an image reference (a leading ``docker://`` transport is accepted and dropped)."""
    if not isinstance(text, str):
        raise InvalidImageReference(f"an image reference must be a string, not {type(text).__name__}")
    original = text
    text = text.strip()
    if text.startswith(_TRANSPORT_PREFIX):
        text = text[len(_TRANSPORT_PREFIX):]
    if not text:
        raise InvalidImageReference("the image reference is empty")
    if any(character.isspace() for character in text):
        raise InvalidImageReference(f"invalid image reference {original!r}: it contains white space")
    if "://" in text:
        raise InvalidImageReference(
            f"invalid image reference {original!r}: only the docker:// transport is understood, as in "
            "registry.example.com/org/image:tag")

    name_and_tag, at_sign, digest_text = text.partition("@")
    digest = None
    if at_sign:
        try:
            digest = validate_digest(digest_text)
        except InvalidImageReference as error:
            raise InvalidImageReference(f"invalid image reference {original!r}: {error}") from None

    name, tag = name_and_tag, None
    last_slash = name_and_tag.rfind("/")
    colon = name_and_tag.rfind(":")
    if colon > last_slash:
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidImageReference(
                f"invalid image reference {original!r}: tag {tag!r} must be 1 to 128 letters, digits, '_', '.' "
                "or '-', not starting with '.' or '-'")
    if not name:
        raise InvalidImageReference(f"invalid image reference {original!r}: the repository name is missing")

    registry, path = _split_registry(name, original)
    if registry in _DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"{OFFICIAL_IMAGES_NAMESPACE}/{path}"
    for component in path.split("/"):
        if not component:
            raise InvalidImageReference(f"invalid image reference {original!r}: empty path component")
        if component.lower() != component:
            raise InvalidImageReference(
                f"invalid image reference {original!r}: repository names must be lower-case ({component!r})")
        if not _PATH_COMPONENT.match(component):
            raise InvalidImageReference(
                f"invalid image reference {original!r}: repository path component {component!r} may hold only "
                "lower-case letters and digits, separated by '.', '_', '__' or dashes")
    if len(registry) + 1 + len(path) > _MAX_NAME_LENGTH:
        raise InvalidImageReference(
            f"invalid image reference {original!r}: the name is longer than {_MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository_path=path, tag=tag, digest=digest)


def _split_registry(name: str, original: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    is_registry = bool(slash) and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if not is_registry:
        return DEFAULT_REGISTRY, name
    match = _REGISTRY.match(first)
    if not match:
        raise InvalidImageReference(f"invalid image reference {original!r}: {first!r} is not a valid registry host")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidImageReference(f"invalid image reference {original!r}: port {port} is out of range")
    # Host names are case-insensitive: the canonical form is lower-case.
    return first.lower(), rest


def validate_digest(digest: str) -> str:
    """Return ``digest`` when it is ``algorithm:hex`` of a known algorithm (sha256/384/512), else raise."""
    match = _DIGEST.match(digest or "")
    if not match:
        raise InvalidImageReference(f"digest {digest!r} must look like sha256:<64 hex digits>")
    algorithm, encoded = match.group("algorithm"), match.group("encoded")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidImageReference(
            f"digest {digest!r} uses an unsupported algorithm {algorithm!r} (expected one of "
            f"{', '.join(sorted(_DIGEST_HEX_LENGTHS))})")
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise InvalidImageReference(f"digest {digest!r}: a {algorithm} digest is {length} lower-case hex digits")
    return digest


def k8s_safe_name(text: str, prefix: str = "", max_length: int = _K8S_NAME_MAX_LENGTH) -> str:
    """``prefix`` + ``text`` as a Kubernetes name (DNS label: lower-case letters, digits, '-').

    Other characters become dashes, like the ODH dashboard does for display names. A name that must be
    shortened ends with 8 hex digits of a hash of the whole text, so long names stay distinct.
    """
    body = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")
    name = f"{prefix}{body}".strip("-") if body else f"{prefix}image".strip("-")
    if len(name) > max_length:
        suffix = hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:8]
        name = f"{name[:max_length - len(suffix) - 1].rstrip('-')}-{suffix}"
    if not name or not name[0].isalnum():
        name = f"x{name}"[:max_length]
    return name
