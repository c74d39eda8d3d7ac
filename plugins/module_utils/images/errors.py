# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why an image operation failed, and whether trying again later can help.

The same reasons serve the local backend (skopeo/buildah stderr) and the cluster backend (ImageStream import
conditions, pod pull errors): ``classify_registry_message`` understands the registry errors both report.
"""

from __future__ import annotations

import re
from typing import Any, Optional

IMAGE_NOT_FOUND = "ImageNotFound"
AUTHENTICATION_FAILED = "AuthenticationFailed"
REGISTRY_UNREACHABLE = "RegistryUnreachable"
VALIDATION_FAILED = "ValidationFailed"
TIMEOUT = "Timeout"
TOOL_MISSING = "ToolMissing"
# A tool failed in a way none of the patterns below recognise; its own message is kept.
TOOL_FAILED = "ToolFailed"

REASONS = (IMAGE_NOT_FOUND, AUTHENTICATION_FAILED, REGISTRY_UNREACHABLE, VALIDATION_FAILED, TIMEOUT, TOOL_MISSING,
           TOOL_FAILED)
# Trying again later can help with these; the others need a change (image, credentials, settings, machine).
TEMPORARY_REASONS = frozenset((REGISTRY_UNREACHABLE, TIMEOUT))

_AUTH_PATTERNS = (
    "unauthorized",
    "authentication required",
    "invalid username/password",
    "incorrect username or password",
    "requested access to the resource is denied",
    "access denied",
    "access to the requested resource is not authorized",
    "403 forbidden",
)
_NOT_FOUND_PATTERNS = (
    "manifest unknown",
    "name unknown",
    "repository name not known to registry",
    "not found: manifest",
    "404 not found",
    "no image found in manifest list",
    "does not exist",
)
# The registry answers, but not the way the settings expect: retrying cannot help, a setting must change.
_TLS_PATTERNS = (
    "server gave http response to https client",
    "x509:",
    "certificate signed by unknown authority",
    "first record does not look like a tls handshake",
    "tls: ",
)
_UNREACHABLE_PATTERNS = (
    "connection refused",
    "no such host",
    "network is unreachable",
    "no route to host",
    "i/o timeout",
    "connection reset",
    "tls handshake timeout",
    "server misbehaving",
    "temporary failure in name resolution",
    "dial tcp",
    "toomanyrequests",
    "too many requests",
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "internal server error",
    "unexpected http status: 5",
    ": eof",
)

_GO_LOG_LINE = re.compile(r'^time="[^"]*"\s+level=(\w+)\s+msg="(.*)"\s*$')
_TOOL_WRAPPERS = re.compile(r'^(?:Error parsing image name "[^"]*": |initializing source \S+: )+')


class ImageError(Exception):
    """An image operation failed. ``reason`` is one of ``REASONS``; ``temporary`` says whether a retry can help.

    ``report`` carries the validation report (``checks.CheckReport``) when the reason is ``ValidationFailed``.
    """

    def __init__(self, reason: str, message: str, temporary: Optional[bool] = None, report: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.temporary = (reason in TEMPORARY_REASONS) if temporary is None else temporary
        self.report = report

    def to_dict(self) -> dict:
        """The failure as Ansible results carry it: ``{"reason", "temporary", "message"}``."""
        return {"reason": self.reason, "temporary": self.temporary, "message": self.message}


class InvalidPullSecret(ValueError):
    """A pull secret or authfile is unusable (malformed, missing); the message never contains its content."""


def tool_message(stderr: str) -> str:
    """The meaningful part of a Go tool's stderr: the ``msg`` of logrus lines, ``Error: `` prefixes dropped.

    Retry warnings ("Failed, retrying in 2s ...") are skipped; the last error line is the one that counts.
    """
    lines: list[str] = []
    for raw_line in (stderr or "").splitlines():
        line = raw_line.strip()
        if not line:
            continue
        match = _GO_LOG_LINE.match(line)
        if match:
            level, message = match.groups()
            if level == "warning" and "retrying" in message:
                continue
            line = message.replace('\\"', '"')
        if line.startswith("Error: "):
            line = line[len("Error: "):]
        # The image name is in our own message already: drop the tools' wrappers that repeat it.
        line = _TOOL_WRAPPERS.sub("", line)
        lines.append(line)
    return lines[-1] if lines else ""


def classify_registry_message(message: str) -> Optional[tuple[str, bool]]:
    """``(reason, temporary)`` for a registry error message (skopeo, buildah, ImageStream import), or None.

    Plain-HTTP or certificate mismatches are reported as ``RegistryUnreachable`` but permanent: the registry
    answers, only the TLS setting (``tls_verify``) or the trust store can fix it.
    """
    text = (message or "").lower()
    if not text:
        return None
    if any(pattern in text for pattern in _AUTH_PATTERNS):
        return AUTHENTICATION_FAILED, False
    if any(pattern in text for pattern in _NOT_FOUND_PATTERNS):
        return IMAGE_NOT_FOUND, False
    if any(pattern in text for pattern in _TLS_PATTERNS):
        return REGISTRY_UNREACHABLE, False
    if any(pattern in text for pattern in _UNREACHABLE_PATTERNS):
        return REGISTRY_UNREACHABLE, True
    if "timeout" in text or "deadline exceeded" in text or "timed out" in text:
        return TIMEOUT, True
    return None


def validation_failed(image: str, report: Any) -> ImageError:
    """``ValidationFailed`` (permanent) for a ``checks.CheckReport`` that did not pass; each failed check is named."""
    failures = [check.get("message") or check.get("name") for check in getattr(report, "failed_checks", [])
                if check.get("required", True)]
    if not failures and getattr(report, "error", None):
        failures = [report.error]
    details = "; ".join(failures) or "no check passed"
    return ImageError(VALIDATION_FAILED, f"image {image} is not a usable notebook image: {details}", temporary=False,
                      report=report)


def registry_error(image: str, message: str, context: str = "") -> ImageError:
    """An ``ImageError`` for a failed registry operation on ``image``, with a message a person can act on.

    ``message`` is the tool's or the API's error text (kept at the end); ``context`` (such as "copying A to B")
    comes first when given.
    """
    classified = classify_registry_message(message)
    detail = message.strip() or "(no error message)"
    prefix = f"{context}: " if context else ""
    if classified is None:
        return ImageError(TOOL_FAILED, f"{prefix}the registry operation on {image} failed: {detail}", temporary=False)
    reason, temporary = classified
    if reason == AUTHENTICATION_FAILED:
        text = (f"the registry refused access to {image} (wrong or missing credentials: check the pull secret; "
                f"some registries also answer this way for images that do not exist): {detail}")
    elif reason == IMAGE_NOT_FOUND:
        text = f"image {image} does not exist in its registry: {detail}"
    elif reason == REGISTRY_UNREACHABLE and not temporary:
        text = (f"the registry of {image} does not speak the expected protocol (plain HTTP or an untrusted "
                f"certificate: set tls_verify to false for such a registry, or trust its CA): {detail}")
    elif reason == REGISTRY_UNREACHABLE:
        text = f"the registry of {image} is not reachable: {detail}"
    else:
        text = f"the registry operation on {image} timed out: {detail}"
    return ImageError(reason, prefix + text, temporary=temporary)
