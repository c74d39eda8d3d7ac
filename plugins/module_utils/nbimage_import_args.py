# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of nbimage_import: the argument spec, the request both backends work from, and the result shape."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .cluster.errors import ClusterError
from .images import checks, odh
from .images.reference import ImageReference, InvalidImageReference

VALIDATE_SPEC: dict[str, Any] = dict(
    enabled=dict(type="bool", default=True),
    min_python=dict(type="str", default=checks.DEFAULT_MIN_PYTHON_VERSION),
    required_modules=dict(type="list", elements="str", default=list(checks.DEFAULT_REQUIRED_MODULES)),
    required_commands=dict(type="list", elements="str", default=[]),
    check_home=dict(type="bool", default=True),
    timeout=dict(type="int", default=300),
)

IMPORT_ARG_SPEC: dict[str, Any] = dict(
    name=dict(type="str"),
    namespace=dict(type="str"),
    from_image=dict(type="str", aliases=["image"]),
    tag=dict(type="str"),
    image_pull_secret=dict(type="str"),
    pull_secret_file=dict(type="path"),
    display_name=dict(type="str"),
    description=dict(type="str", default=""),
    creator=dict(type="str", default=""),
    order=dict(type="int", default=odh.DEFAULT_ORDER),
    visible=dict(type="bool", default=True),
    validate=dict(type="dict", default={}, options=VALIDATE_SPEC),
    reference_policy=dict(type="str", default="Source", choices=list(odh.REFERENCE_POLICIES)),
    scheduled=dict(type="bool", default=False),
    insecure=dict(type="bool", default=False),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=300),
    backend=dict(type="str", default="auto", choices=["auto", "openshift", "local"]),
    target_image=dict(type="str"),
)

# Ours, next to the contract's annotations: the settings the recorded validation ran with, and its checks.
ANNOTATION_VALIDATION = "mlops.notebooks/validation"


@dataclass(frozen=True)
class ImportRequest:
    """What to import and how, from the module's options (checked)."""

    reference: ImageReference
    name: str
    namespace: Optional[str]
    tag: str
    pull_secret: Optional[str] = None
    pull_secret_file: Optional[str] = None
    display_name: Optional[str] = None
    description: str = ""
    creator: str = ""
    order: int = odh.DEFAULT_ORDER
    visible: bool = True
    validate: bool = True
    check_settings: checks.CheckSettings = field(default_factory=checks.CheckSettings)
    validation_timeout: int = 300
    reference_policy: str = "Source"
    scheduled: bool = False
    insecure: bool = False
    wait: bool = True
    wait_timeout: int = 300
    target_image: Optional[str] = None

    @property
    def source(self) -> str:
        """The image as the tag imports it (the user's reference, fully qualified)."""
        return self.reference.pull_spec

    def validation_key(self) -> str:
        """A fingerprint of the validation settings: recorded results count only for the same settings."""
        if not self.validate:
            return "disabled"
        settings = self.check_settings
        material = json.dumps({"min_python": settings.min_python_version, "modules": list(settings.required_modules),
                               "commands": list(settings.required_commands), "home": settings.check_home},
                              sort_keys=True)
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def request_from_params(params: dict[str, Any]) -> ImportRequest:
    """The request, or ClusterError(InvalidOptions) naming the option that is wrong."""
    if not params.get("from_image"):
        if params.get("state") == "absent" and params.get("name"):
            reference = None
        else:
            raise ClusterError("InvalidOptions", "from_image is required (and name, with state: absent)")
    else:
        try:
            reference = ImageReference.parse(params["from_image"])
        except InvalidImageReference as error:
            raise ClusterError("InvalidImageReference", f"from_image: {error}") from None
    validate = params.get("validate") or {}
    try:
        settings = checks.CheckSettings(
            min_python_version=validate.get("min_python") or checks.DEFAULT_MIN_PYTHON_VERSION,
            required_modules=tuple(validate.get("required_modules") if validate.get("required_modules") is not None
                                   else checks.DEFAULT_REQUIRED_MODULES),
            required_commands=tuple(validate.get("required_commands") or ()),
            check_home=validate.get("check_home", True) is not False,
        )
    except ValueError as error:
        raise ClusterError("InvalidOptions", f"validate: {error}") from None
    for option in ("wait_timeout",):
        if int(params.get(option) or 0) <= 0:
            raise ClusterError("InvalidOptions", f"{option} must be a positive number of seconds")
    timeout = validate.get("timeout") if validate.get("timeout") is not None else 300
    if timeout <= 0:
        raise ClusterError("InvalidOptions", "validate.timeout must be a positive number of seconds")
    if reference is None:  # state: absent by name only
        placeholder = ImageReference("docker.io", "library/unknown", "latest", None)
        return ImportRequest(reference=placeholder, name=params["name"], namespace=params.get("namespace"),
                             tag=params.get("tag") or "latest")
    name = params.get("name") or reference.suggested_imagestream_name()
    return ImportRequest(
        reference=reference,
        name=name,
        namespace=params.get("namespace"),
        tag=params.get("tag") or reference.tag_or_default,
        pull_secret=params.get("image_pull_secret") or None,
        pull_secret_file=params.get("pull_secret_file") or None,
        display_name=params.get("display_name"),
        description=params.get("description") or "",
        creator=params.get("creator") or "",
        order=int(params.get("order") if params.get("order") is not None else odh.DEFAULT_ORDER),
        visible=params.get("visible", True) is not False,
        validate=validate.get("enabled", True) is not False,
        check_settings=settings,
        validation_timeout=int(timeout),
        reference_policy=params.get("reference_policy") or "Source",
        scheduled=bool(params.get("scheduled")),
        insecure=bool(params.get("insecure")),
        wait=params.get("wait", True) is not False,
        wait_timeout=int(params.get("wait_timeout") or 300),
        target_image=params.get("target_image") or None,
    )


def validation_result(report: Optional[checks.CheckReport], *, skipped: bool = False, reused: bool = False,
                      digest: Optional[str] = None) -> dict[str, Any]:
    """The ``validation`` return value: each check and its result (package lists go to python_dependencies)."""
    if report is None:
        return {"passed": None, "skipped": skipped, "reused": reused, "digest": digest, "checks": [],
                "python_version": None}
    return {
        "passed": report.passed,
        "skipped": skipped,
        "reused": reused,
        "digest": digest,
        "checks": [dict(check) for check in report.checks],
        "python_version": report.python_version,
        "error": report.error,
    }


def empty_result(backend: str) -> dict[str, Any]:
    """Every key of the result, before anything is known (a failure still returns the same shape)."""
    return {
        "changed": False,
        "backend": backend,
        "image": None,
        "digest": None,
        "software": [],
        "python_dependencies": [],
        "phase": None,
        "messages": [],
        "validation": validation_result(None),
        "imagestream": None,
    }
