"""What OpenShift's API server does to BuildConfigs and Builds besides storing them: defaults, validation, and
turning a BuildConfig plus a BuildRequest into a Build (the ``instantiate`` subresource).

Pure functions over dicts; the server module does the I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from .translate import GROUP_VERSION

# The keys of a BuildConfig's spec that describe how to start builds, not a build itself.
_CONFIG_ONLY_SPEC_KEYS = ("triggers", "runPolicy", "successfulBuildsHistoryLimit", "failedBuildsHistoryLimit")
_STRATEGY_TYPES = {
    "dockerStrategy": "Docker",
    "sourceStrategy": "Source",
    "customStrategy": "Custom",
    "jenkinsPipelineStrategy": "JenkinsPipeline",
}
_OUTPUT_KINDS = ("ImageStreamTag", "DockerImage", "ImageStreamImage")
TERMINAL_PHASES = ("Complete", "Failed", "Error", "Cancelled")


class Invalid(ValueError):
    """An object breaks a validation rule; carries the causes for a 422 Status."""

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str, str]]):
        # causes: (reason such as FieldValueRequired, field path, message)
        self.kind = kind
        self.name = name
        self.causes = causes
        summary = ", ".join(f"{field}: {message}" for _reason, field, message in causes)
        super().__init__(f'{kind}.build.openshift.io "{name}" is invalid: {summary}')

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": str(self),
            "reason": "Invalid",
            "code": 422,
            "details": {
                "name": self.name,
                "group": "build.openshift.io",
                "kind": self.kind,
                "causes": [{"reason": reason, "message": message, "field": field}
                           for reason, field, message in self.causes],
            },
        }


def _default_common_spec(spec: dict[str, Any]) -> None:
    # The v1 defaults of the shared CommonSpec, as an OpenShift API server returns them.
    source = spec.setdefault("source", {})
    if isinstance(source, dict) and "type" not in source:
        if "git" in source:
            source["type"] = "Git"
        elif "binary" in source:
            source["type"] = "Binary"
        elif "dockerfile" in source:
            source["type"] = "Dockerfile"
        elif "images" in source:
            source["type"] = "Image"
        else:
            source["type"] = "None"
    strategy = spec.get("strategy")
    if isinstance(strategy, dict) and "type" not in strategy:
        for key, strategy_type in _STRATEGY_TYPES.items():
            if key in strategy:
                strategy["type"] = strategy_type
                break
    spec.setdefault("output", {})
    spec.setdefault("resources", {})
    spec.setdefault("postCommit", {})
    spec.setdefault("nodeSelector", None)


def apply_defaults(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields OpenShift defaults on create and update; returns the same dict."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    _default_common_spec(spec)
    if kind == "BuildConfig":
        spec.setdefault("runPolicy", "Serial")
        spec.setdefault("triggers", [])
        spec.setdefault("successfulBuildsHistoryLimit", 5)
        spec.setdefault("failedBuildsHistoryLimit", 5)
        status = obj.setdefault("status", {})
        if isinstance(status, dict):
            status.setdefault("lastVersion", 0)
    elif kind == "Build":
        status = obj.setdefault("status", {})
        if isinstance(status, dict):
            status.setdefault("phase", "New")
    return obj


def validate(kind: str, obj: dict[str, Any]) -> None:
    """The rules a client most often breaks; raises Invalid with one cause per broken rule."""
    name = (obj.get("metadata") or {}).get("name") or ""
    causes: list[tuple[str, str, str]] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise Invalid(kind, name, [("FieldValueRequired", "spec", "Required value")])
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict) or not any(key in strategy for key in _STRATEGY_TYPES):
        causes.append(("FieldValueRequired", "spec.strategy", "Required value: must provide a value for exactly "
                       "one of sourceStrategy, customStrategy, dockerStrategy, or jenkinsPipelineStrategy"))
    else:
        present = [key for key in _STRATEGY_TYPES if key in strategy]
        if len(present) > 1:
            causes.append(("FieldValueInvalid", "spec.strategy",
                           f"Invalid value: must provide a value for exactly one strategy, got {present}"))
        strategy_type = strategy.get("type")
        if strategy_type is not None and present and _STRATEGY_TYPES[present[0]] != strategy_type:
            causes.append(("FieldValueInvalid", "spec.strategy.type",
                           f"Invalid value: {strategy_type!r}: does not match {present[0]}"))
        from_ref = (strategy.get("sourceStrategy") or {}).get("from")
        if "sourceStrategy" in strategy and not (isinstance(from_ref, dict) and from_ref.get("name")):
            causes.append(("FieldValueRequired", "spec.strategy.sourceStrategy.from.name", "Required value"))
    output_to = (spec.get("output") or {}).get("to")
    if output_to is not None:
        if not isinstance(output_to, dict) or output_to.get("kind") not in _OUTPUT_KINDS:
            causes.append(("FieldValueNotSupported", "spec.output.to.kind",
                           f"Unsupported value: {(output_to or {}).get('kind')!r}: supported values: "
                           + ", ".join(f'"{k}"' for k in _OUTPUT_KINDS)))
        elif not output_to.get("name"):
            causes.append(("FieldValueRequired", "spec.output.to.name", "Required value"))
        elif output_to["kind"] == "ImageStreamTag" and ":" not in output_to["name"]:
            causes.append(("FieldValueInvalid", "spec.output.to.name",
                           f"Invalid value: {output_to['name']!r}: ImageStreamTag object references must be in the "
                           "form <name>:<tag>"))
    source = spec.get("source") or {}
    git = source.get("git") if isinstance(source, dict) else None
    if git is not None and not (isinstance(git, dict) and git.get("uri")):
        causes.append(("FieldValueRequired", "spec.source.git.uri", "Required value"))
    if kind == "BuildConfig" and spec.get("runPolicy") not in (None, "Serial", "Parallel", "SerialLatestOnly"):
        causes.append(("FieldValueInvalid", "spec.runPolicy", f"Invalid value: {spec.get('runPolicy')!r}"))
    if causes:
        raise Invalid(kind, name, causes)


def build_from_config(build_config: dict[str, Any], number: int, request: dict[str, Any]) -> dict[str, Any]:
    """The Build that ``POST buildconfigs/<name>/instantiate`` creates: ``<bc>-<number>``, the BuildConfig's spec
    with the request's overrides, labelled, annotated and owned as OpenShift does."""
    metadata = build_config["metadata"]
    config_name = metadata["name"]
    spec = copy.deepcopy(build_config.get("spec") or {})
    for key in _CONFIG_ONLY_SPEC_KEYS:
        spec.pop(key, None)
    strategy = spec.get("strategy") or {}
    strategy_key = next((key for key in _STRATEGY_TYPES if key in strategy), None)
    strategy_spec = strategy.get(strategy_key) if strategy_key else None
    request_env = request.get("env") or []
    if isinstance(strategy_spec, dict) and request_env:
        # Request env entries replace BuildConfig entries of the same name and add the others.
        names = {entry.get("name") for entry in request_env}
        strategy_spec["env"] = [e for e in strategy_spec.get("env") or [] if e.get("name") not in names] + request_env
    if isinstance(strategy_spec, dict) and request.get("from"):
        strategy_spec["from"] = copy.deepcopy(request["from"])
    docker_options = request.get("dockerStrategyOptions") or {}
    if strategy_key == "dockerStrategy" and isinstance(strategy_spec, dict):
        if docker_options.get("buildArgs"):
            names = {entry.get("name") for entry in docker_options["buildArgs"]}
            strategy_spec["buildArgs"] = [
                e for e in strategy_spec.get("buildArgs") or [] if e.get("name") not in names
            ] + docker_options["buildArgs"]
        if "noCache" in docker_options:
            strategy_spec["noCache"] = docker_options["noCache"]
    if request.get("revision"):
        spec["revision"] = copy.deepcopy(request["revision"])
    spec["triggeredBy"] = copy.deepcopy(request.get("triggeredBy") or [{"message": "Manually triggered"}])
    _default_common_spec(spec)

    build_name = f"{config_name}-{number}"
    request_metadata = request.get("metadata") or {}
    labels = dict(metadata.get("labels") or {})
    labels.update(request_metadata.get("labels") or {})
    labels.update({
        "buildconfig": config_name,
        "openshift.io/build-config.name": config_name,
        "openshift.io/build.start-policy": (build_config.get("spec") or {}).get("runPolicy", "Serial"),
    })
    annotations = dict(request_metadata.get("annotations") or {})
    annotations.update({
        "openshift.io/build-config.name": config_name,
        "openshift.io/build.number": str(number),
        "openshift.io/build.pod-name": f"{build_name}-build",
    })
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Build",
        "metadata": {
            "name": build_name,
            "namespace": metadata["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": GROUP_VERSION,
                "kind": "BuildConfig",
                "name": config_name,
                "uid": metadata["uid"],
                "controller": True,
            }],
        },
        "spec": spec,
        "status": {
            "phase": "New",
            "config": {"kind": "BuildConfig", "namespace": metadata["namespace"], "name": config_name},
        },
    }
