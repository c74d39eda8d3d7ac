"""What a kubelet derives from a pod spec before it starts anything: the user, the environment, the command line and
the volume files. Pure functions (plus a lookup callback for ConfigMaps and Secrets), unit-testable."""

from __future__ import annotations

import base64
import re
from typing import Any, Callable

# OpenShift's restricted SCC gives each namespace a UID range (annotation openshift.io/sa.scc.uid-range,
# "<start>/<size>") and runs containers as its first UID when the pod names none.
UID_RANGE_ANNOTATION = "openshift.io/sa.scc.uid-range"
DEFAULT_ARBITRARY_UID = 1000920000
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

Lookup = Callable[[str, str], "dict[str, Any] | None"]  # (kind "configmaps"|"secrets", name) -> object or None


class ConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError): a missing Secret, key, or user."""


def run_as(pod: dict[str, Any], container: dict[str, Any], namespace: dict[str, Any] | None) -> tuple[int, int]:
    """(uid, gid) the container runs as: runAsUser / runAsGroup of the container, else of the pod, else the
    namespace's OpenShift UID range start, else 1000920000; the group defaults to 0 (root group), as OpenShift."""
    pod_context = (pod.get("spec") or {}).get("securityContext") or {}
    container_context = container.get("securityContext") or {}
    uid = container_context.get("runAsUser", pod_context.get("runAsUser"))
    if uid is None:
        annotation = (((namespace or {}).get("metadata") or {}).get("annotations") or {}).get(UID_RANGE_ANNOTATION, "")
        match = re.match(r"^(\d+)/\d+$", annotation)
        uid = int(match.group(1)) if match else DEFAULT_ARBITRARY_UID
    gid = container_context.get("runAsGroup", pod_context.get("runAsGroup", 0))
    run_as_non_root = container_context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if run_as_non_root and int(uid) == 0:
        raise ConfigError("container's runAsUser breaks non-root policy")
    return int(uid), int(gid)


def field_value(pod: dict[str, Any], field_path: str) -> str:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", field_path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    if field_path in ("metadata.labels", "metadata.annotations"):
        items = metadata.get(field_path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(items.items()))
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if field_path not in simple:
        raise ConfigError(f"unsupported fieldRef {field_path!r}")
    return str(simple[field_path])


def resource_value(container: dict[str, Any], resource: str, node_allocatable: dict[str, str]) -> str:
    section, _dot, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name)
    return str(value if value is not None else node_allocatable.get(name, "0"))


def _config_value(lookup: Lookup, kind: str, reference: dict[str, Any]) -> str | None:
    name, key, optional = reference.get("name", ""), reference.get("key", ""), bool(reference.get("optional"))
    obj = lookup(kind, name)
    singular = "configmap" if kind == "configmaps" else "secret"
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{singular} "{name}" not found')
    if kind == "secrets":
        encoded = (obj.get("data") or {}).get(key)
        value = base64.b64decode(encoded).decode(errors="replace") if encoded is not None else None
    else:
        value = (obj.get("data") or {}).get(key)
    if value is None and not optional:
        raise ConfigError(f"couldn't find key {key} in {singular} {obj['metadata'].get('namespace')}/{name}")
    return value


def environment(pod: dict[str, Any], container: dict[str, Any], lookup: Lookup,
                node_allocatable: dict[str, str]) -> dict[str, str]:
    """The container's env and envFrom, resolved; later entries win, $(VAR) refers to earlier ones."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            reference = source.get(key)
            if reference is None:
                continue
            obj = lookup(kind, reference.get("name", ""))
            if obj is None:
                if reference.get("optional"):
                    continue
                raise ConfigError(f'{"configmap" if kind == "configmaps" else "secret"} "{reference.get("name")}" not found')
            for data_key, value in (obj.get("data") or {}).items():
                env[prefix + data_key] = (base64.b64decode(value).decode(errors="replace") if kind == "secrets" else value)
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry or "valueFrom" not in entry:
            env[name] = expand(entry.get("value", ""), env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"]["resource"], node_allocatable)
        elif "configMapKeyRef" in source:
            value = _config_value(lookup, "configmaps", source["configMapKeyRef"])
            if value is not None:
                env[name] = value
        elif "secretKeyRef" in source:
            value = _config_value(lookup, "secrets", source["secretKeyRef"])
            if value is not None:
                env[name] = value
    return env


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, an undefined one is left as written, $$ is $."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def command_line(container: dict[str, Any], image_config: dict[str, Any], env: dict[str, str]) -> list[str]:
    """command replaces the image's ENTRYPOINT (and drops its CMD); args replace CMD."""
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = list(command) + list(args or [])
    else:
        argv = list(image_config.get("Entrypoint") or []) + list(args if args is not None else image_config.get("Cmd") or [])
    return [expand(part, env) for part in argv]


def key_files(obj: dict[str, Any] | None, items: list[dict[str, Any]] | None, binary: bool) -> dict[str, bytes]:
    """The files of a ConfigMap or Secret volume: every key, or only ``items`` (key -> path)."""
    if obj is None:
        return {}
    values: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        values[key] = base64.b64decode(value) if binary else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        values[key] = base64.b64decode(value)
    if not items:
        return values
    files = {}
    for item in items:
        if item["key"] not in values:
            raise ConfigError(f"configmap or secret references non-existent key {item['key']}")
        files[item["path"]] = values[item["key"]]
    return files
