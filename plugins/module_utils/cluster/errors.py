# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure reasons of the cluster backends, each with whether retrying later can help.

A reason is *temporary* when the same inputs can succeed later without anyone changing them (a secret that
is still being created, a registry that is down, a deadline that was too short for a slow pull); it is
*permanent* when a person has to change something first (the image, the credential, the settings).
"""

from __future__ import annotations

import json
from typing import Any

from ..images import errors as image_errors

# reason -> temporary
REASONS: dict[str, bool] = {
    "RequiredSecretMissing": True,
    "InvalidSecret": False,
    "AuthenticationFailed": False,
    "ImageNotFound": False,
    "InvalidImageReference": False,
    "RegistryUnreachable": True,
    "ImportFailed": False,
    "ValidationFailed": False,
    "ValidationPodFailed": True,
    "ImagePullFailed": True,
    "Timeout": True,
    "Forbidden": False,
    "ApiError": True,
    "PlatformUnsupported": False,
    "ToolMissing": False,
    "InvalidOptions": False,
}


class ClusterError(Exception):
    """A failure the module reports as ``reason`` and ``temporary``, with a message a person can act on."""

    def __init__(self, reason: str, message: str, *, temporary: bool | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.temporary = REASONS.get(reason, False) if temporary is None else temporary
        self.details: dict[str, Any] = dict(details or {})

    def as_result(self) -> dict[str, Any]:
        return {"reason": self.reason, "temporary": self.temporary, "msg": self.message}


def classify_import_condition(condition_reason: str, condition_message: str, image: str) -> ClusterError:
    """Turn an ImageStream tag's ``ImportSuccess=False`` condition into a failure with one of our reasons."""
    source = condition_message.strip() or condition_reason
    if condition_reason == "NotFound":
        return ClusterError("ImageNotFound", f"the image {image} does not exist in its registry ({source})")
    if condition_reason in ("Unauthorized", "Forbidden"):
        return ClusterError(
            "AuthenticationFailed",
            f"the registry refused access to {image}: the pull secret is missing or its credential is wrong "
            f"(registries that hide private repositories answer the same way for an image that does not exist) "
            f"({source})",
        )
    classified = image_errors.classify_registry_message(source)
    if classified is not None:
        reason, temporary = classified
        if reason == image_errors.REGISTRY_UNREACHABLE and not temporary:
            return ClusterError(reason, f"the registry of {image} does not speak the expected protocol (plain HTTP "
                                        f"needs insecure: true; an untrusted certificate needs the cluster to trust "
                                        f"its CA) ({source})", temporary=False)
        return ClusterError(reason, f"the import of {image} failed: {source}", temporary=temporary)
    # An unexplained InternalError is the import controller's own trouble: worth another try.
    return ClusterError("ImportFailed", f"the import of {image} failed: {condition_reason}: {source}",
                        temporary=condition_reason == "InternalError")


def classify_pull_failure(waiting_reason: str, waiting_message: str, image: str) -> ClusterError:
    """A validation pod whose image cannot be pulled (ErrImagePull, ImagePullBackOff, InvalidImageName)."""
    text = f"{waiting_reason}: {waiting_message}".strip(": ")
    if waiting_reason == "InvalidImageName":
        return ClusterError("InvalidImageReference", f"the node rejected the image name {image} ({text})")
    classified = image_errors.classify_registry_message(waiting_message)
    if classified is not None:
        reason, temporary = classified
        return ClusterError(reason, f"the node could not pull {image} for validation ({text})", temporary=temporary)
    return ClusterError("ImagePullFailed", f"the node could not pull {image} for validation ({text})")


def api_error(action: str, error: Exception) -> ClusterError:
    """An exception of the Kubernetes client, as a failure that says what was being done."""
    status = getattr(error, "status", None)
    body = getattr(error, "body", None)
    detail = _status_message(body) or getattr(error, "summary", lambda: "")() or str(error)
    if status == 403:
        return ClusterError("Forbidden", f"{action}: forbidden ({detail}); see docs/nbimage_import.md for the Role "
                                         f"the module needs")
    if status == 401:
        return ClusterError("Forbidden", f"{action}: the API server did not accept the credentials ({detail})")
    if status in (400, 404, 409, 422):
        return ClusterError("ApiError", f"{action}: {detail}", temporary=status == 409)
    return ClusterError("ApiError", f"{action}: {detail}")


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body (bytes, str or dict), or ''."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("message") or "")
    return ""
