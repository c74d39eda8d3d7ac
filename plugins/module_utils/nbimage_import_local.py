# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local backend of nbimage_import: skopeo and buildah on this machine, the OpenShift backend's result shape.

The image is resolved with ``skopeo inspect``, validated by ``buildah run`` of the same checks under an arbitrary
UID, and copied to ``target_image`` when asked (skipped when the target already holds the digest). Credentials
come from a dockerconfigjson file (``pull_secret_file``) or from the cluster's pull secret when one is configured,
and reach the tools only as a private authfile that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Optional

from .cluster.errors import ClusterError
from .images import checks, local, odh
from .images.authfile import dockerconfigjson_to_authfile
from .images.errors import IMAGE_NOT_FOUND, ImageError, InvalidPullSecret
from .nbimage_import_args import ImportRequest, empty_result, validation_result

SecretReader = Callable[[str, str], Optional[dict[str, Any]]]


class LocalOutcome:
    """Same fields as the OpenShift backend's Outcome."""

    def __init__(self, result: dict[str, Any], changed: bool, error: Optional[ClusterError], warnings: list[str],
                 diff: Optional[dict[str, Any]] = None) -> None:
        self.result = result
        self.changed = changed
        self.error = error
        self.warnings = warnings
        self.diff = diff


def _cluster_error(error: ImageError) -> ClusterError:
    return ClusterError(error.reason, error.message, temporary=error.temporary)


class LocalImport:
    """One run of the module on this machine."""

    def __init__(self, request: ImportRequest, *, check_mode: bool = False,
                 read_secret: Optional[SecretReader] = None, tools: Optional[local.LocalTools] = None) -> None:
        self.request = request
        self.check_mode = check_mode
        self.read_secret = read_secret
        self.tools = tools
        self.result = empty_result("local")
        self.warnings: list[str] = []
        self.changed = False

    @contextlib.contextmanager
    def authfile(self) -> Iterator[Optional[str]]:
        """A private authfile for the tools (None without credentials), removed afterwards."""
        request = self.request
        content: Any = None
        if request.pull_secret_file:
            try:
                with open(request.pull_secret_file, encoding="utf-8") as handle:
                    content = handle.read()
            except OSError as error:
                raise ClusterError("InvalidSecret", f"pull_secret_file {request.pull_secret_file}: {error.strerror}") from None
        elif request.pull_secret:
            if self.read_secret is None or not request.namespace:
                raise ClusterError("InvalidOptions", "image_pull_secret names a secret in the cluster, but the local "
                                                     "backend has no cluster (or namespace) to read it from; give "
                                                     "pull_secret_file instead")
            secret = self.read_secret(request.namespace, request.pull_secret)
            if secret is None:
                raise ClusterError("RequiredSecretMissing", f"the image pull secret {request.pull_secret!r} does not "
                                                            f"exist in namespace {request.namespace!r}")
            content = secret.get("data") or {}
        if content is None:
            yield None
            return
        try:
            path = dockerconfigjson_to_authfile(content)
        except InvalidPullSecret as error:
            raise ClusterError("InvalidSecret", f"the pull secret cannot be used: {error}") from None
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def present(self) -> LocalOutcome:
        try:
            with self.authfile() as authfile:
                self._run(authfile)
        except ImageError as error:
            return self._finish(_cluster_error(error))
        except InvalidPullSecret as error:
            return self._finish(ClusterError("InvalidSecret", f"the pull secret cannot be used: {error}"))
        except ClusterError as error:
            return self._finish(error)
        return self._finish(None)

    def absent(self) -> LocalOutcome:
        # Nothing is kept on this machine: run_checks removes its container and the image it pulled.
        self.warnings.append("state: absent has nothing to remove with the local backend")
        return self._finish(None)

    def _run(self, authfile: Optional[str]) -> None:
        request = self.request
        tls_verify = not request.insecure
        self.result["phase"] = odh.PHASE_IMPORTING
        found = local.inspect(request.reference, authfile=authfile, tls_verify=tls_verify,
                              timeout=float(request.wait_timeout), tools=self.tools)
        digest = found["digest"]
        self.result["digest"] = digest
        self.result["image"] = found["image"]
        report: Optional[checks.CheckReport] = None
        if request.validate and self.check_mode:
            self.warnings.append(f"check mode: {found['image']} is not validated")
        elif request.validate:
            self.result["phase"] = odh.PHASE_VALIDATING
            report = local.run_checks(found["image"], request.check_settings, authfile=authfile, tls_verify=tls_verify,
                                      timeout=float(request.validation_timeout), tools=self.tools)
            self.result["validation"] = validation_result(report, digest=digest)
            self.result["software"] = list(report.software)
            self.result["python_dependencies"] = odh.normalize_dependencies(report.packages)
            messages = checks.report_messages(report)
            self.result["messages"] = odh.normalize_messages(messages)
            if not report.passed:
                self.result["phase"] = odh.PHASE_FAILED
                raise ClusterError("ValidationFailed", "the image failed validation: " + "; ".join(
                    message["message"] for message in messages if message["severity"] == "error"))
        else:
            self.result["validation"] = validation_result(None, skipped=True, digest=digest)
            self.result["messages"] = [{"severity": "warning", "message": "not validated (validate.enabled is false)"}]
        if request.target_image:
            self._copy(found["image"], digest, authfile, tls_verify)
        self.result["phase"] = odh.PHASE_SUCCEEDED if not self.check_mode or not request.validate else odh.PHASE_VALIDATING

    def _copy(self, image: str, digest: str, authfile: Optional[str], tls_verify: bool) -> None:
        target = self.request.target_image or ""
        try:
            current = local.inspect(target, authfile=authfile, tls_verify=tls_verify, tools=self.tools)
        except ImageError as error:
            if error.reason != IMAGE_NOT_FOUND:
                raise
            current = None
        if current is not None and current["digest"] == digest:
            self.result["target"] = {"image": current["image"], "digest": digest, "copied": False}
            return
        self.changed = True
        if self.check_mode:
            self.result["target"] = {"image": None, "digest": digest, "copied": True}
            return
        copied = local.copy(image, target, src_authfile=authfile, dest_authfile=authfile, tls_verify=tls_verify,
                            tools=self.tools)
        self.result["target"] = {"image": copied["image"], "digest": copied["digest"], "copied": True}

    def _finish(self, error: Optional[ClusterError]) -> LocalOutcome:
        if error is not None and self.result["phase"] not in (None, odh.PHASE_FAILED):
            self.result["phase"] = odh.PHASE_FAILED
        if error is not None and not self.result["messages"]:
            self.result["messages"] = [{"severity": "error", "message": error.message}]
        self.result["changed"] = self.changed
        diff = None
        if self.request.target_image:
            before = {"target_digest": None if self.changed else self.result["digest"]}
            diff = {"before": before, "after": {"target_digest": self.result["digest"]}}
        return LocalOutcome(self.result, self.changed, error, self.warnings, diff)
