"""Pure parts of the build.openshift.io aggregated API server: URL parsing, discovery documents, and the
renaming between the public group (build.openshift.io) and the hidden storage group the objects live in.

No I/O here, so the rules are unit-tested directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

GROUP = "build.openshift.io"
VERSION = "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
# Objects are stored as custom resources of this group (installed by the aggregator); the aggregator renames
# them on the way in and out, so clients only ever see build.openshift.io.
STORAGE_GROUP = "buildstore.sim.mlops.test"
STORAGE_GROUP_VERSION = f"{STORAGE_GROUP}/{VERSION}"

KINDS = {"buildconfigs": "BuildConfig", "builds": "Build"}
# Subresources this server implements, with the verb a client uses on them and the kind they take or return.
SUBRESOURCES = {
    ("buildconfigs", "instantiate"): ("create", "BuildRequest"),
    ("builds", "log"): ("get", "BuildLog"),
}
READ_WRITE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourcePath:
    """A request for build.openshift.io/v1 resources, parsed from the URL path."""

    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_prefix: bool = False  # the deprecated /watch/ form of a watch request

    def storage_path(self) -> str:
        """The same request against the storage group (without the subresource, which the aggregator serves)."""
        parts = ["/apis", STORAGE_GROUP, VERSION]
        if self.watch_prefix:
            parts.append("watch")
        if self.namespace is not None:
            parts += ["namespaces", self.namespace]
        parts.append(self.resource)
        if self.name is not None:
            parts.append(self.name)
        return "/".join(parts)

    @property
    def qualified_resource(self) -> str:
        return f"{self.resource}.{GROUP}"


class PathError(ValueError):
    """The URL names no resource of this API; the message says what is wrong."""


_SEGMENT = re.compile(r"^[^/]+$")


def parse_resource_path(path: str) -> ResourcePath:
    """Parse ``/apis/build.openshift.io/v1/...`` into a ResourcePath, or raise PathError (a 404 for the client)."""
    prefix = f"/apis/{GROUP}/{VERSION}/"
    if not path.startswith(prefix):
        raise PathError(f"the path {path!r} is not under /apis/{GROUP_VERSION}")
    segments = [unquote(part) for part in path[len(prefix):].strip("/").split("/")]
    if not segments or not all(_SEGMENT.match(part) for part in segments):
        raise PathError(f"the path {path!r} has an empty segment")
    watch_prefix = segments[0] == "watch"
    if watch_prefix:
        segments = segments[1:]
    namespace = None
    if len(segments) >= 2 and segments[0] == "namespaces":
        namespace = segments[1]
        segments = segments[2:]
    if not segments or segments[0] not in KINDS:
        raise PathError(f"the server could not find the requested resource ({path})")
    resource = segments[0]
    name = segments[1] if len(segments) >= 2 else None
    subresource = segments[2] if len(segments) >= 3 else None
    if len(segments) > 3:
        raise PathError(f"the server could not find the requested resource ({path})")
    if subresource is not None and (resource, subresource) not in SUBRESOURCES:
        raise PathError(f"the server could not find the requested resource ({resource}/{subresource})")
    if namespace is None and name is not None:
        raise PathError(f"{resource} are namespaced: the path {path!r} needs /namespaces/<namespace>/")
    if watch_prefix and subresource is not None:
        raise PathError(f"cannot watch a subresource ({path})")
    return ResourcePath(resource, namespace, name, subresource, watch_prefix)


def request_verb(method: str, target: ResourcePath, query: dict[str, str]) -> str:
    """The Kubernetes verb of a request, as an authorizer sees it."""
    method = method.upper()
    if target.subresource is not None:
        return SUBRESOURCES[(target.resource, target.subresource)][0]
    if method == "GET":
        if target.watch_prefix or query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if target.name is not None else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    raise PathError(f"the method {method} is not supported")


def to_public(value: Any) -> Any:
    """Rename every mention of the storage group to build.openshift.io (apiVersions, Status details, messages)."""
    if isinstance(value, str):
        return value.replace(STORAGE_GROUP, GROUP) if STORAGE_GROUP in value else value
    if isinstance(value, dict):
        return {key: to_public(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_public(item) for item in value]
    return value


def to_storage(body: Any) -> Any:
    """Point a client's object (or list of objects) at the storage group; only apiVersion fields change."""
    if isinstance(body, dict):
        converted = {key: to_storage(item) if key in ("items", "object") else item for key, item in body.items()}
        if converted.get("apiVersion") == GROUP_VERSION:
            converted["apiVersion"] = STORAGE_GROUP_VERSION
        return converted
    if isinstance(body, list):
        return [to_storage(item) for item in body]
    return body


def api_resource_list() -> dict[str, Any]:
    """``/apis/build.openshift.io/v1``, with the resources and subresources this server implements."""
    resources = [
        {
            "name": "buildconfigs",
            "singularName": "buildconfig",
            "namespaced": True,
            "kind": "BuildConfig",
            "verbs": READ_WRITE_VERBS,
            "shortNames": ["bc"],
            "categories": ["all"],
        },
        {"name": "buildconfigs/instantiate", "singularName": "", "namespaced": True, "kind": "BuildRequest",
         "verbs": ["create"]},
        {
            "name": "builds",
            "singularName": "build",
            "namespaced": True,
            "kind": "Build",
            "verbs": READ_WRITE_VERBS,
            "categories": ["all"],
        },
        {"name": "builds/log", "singularName": "", "namespaced": True, "kind": "BuildLog", "verbs": ["get"]},
    ]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version], "preferredVersion": version}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def aggregated_discovery(api_version: str) -> dict[str, Any]:
    """``/apis`` as an APIGroupDiscoveryList (``apidiscovery.k8s.io/<api_version>``), which the API server asks for
    first; the same facts as the legacy documents above."""
    resources = []
    by_name = {entry["name"]: entry for entry in api_resource_list()["resources"]}
    for plural in ("buildconfigs", "builds"):
        entry = by_name[plural]
        item: dict[str, Any] = {
            "resource": plural,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": entry["kind"]},
            "scope": "Namespaced",
            "singularResource": entry["singularName"],
            "verbs": entry["verbs"],
            "categories": entry["categories"],
        }
        if "shortNames" in entry:
            item["shortNames"] = entry["shortNames"]
        subresources = []
        for (parent, sub), (verb, kind) in SUBRESOURCES.items():
            if parent == plural:
                subresources.append({
                    "subresource": sub,
                    "responseKind": {"group": GROUP if kind != "BuildLog" else "", "version": VERSION, "kind": kind},
                    "verbs": [verb],
                })
        if subresources:
            item["subresources"] = subresources
        resources.append(item)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{api_version}",
        "metadata": {},
        "items": [{
            "metadata": {"name": GROUP},
            "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}],
        }],
    }


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status failure, as every Kubernetes API server returns for errors."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def forbidden(user: str, verb: str, target: ResourcePath) -> dict[str, Any]:
    """The 403 Status of the Kubernetes authorizer, word for word in its shape."""
    resource = target.resource if target.subresource is None else f"{target.resource}/{target.subresource}"
    subject = f'{target.qualified_resource} "{target.name}"' if target.name else target.qualified_resource
    where = f' in the namespace "{target.namespace}"' if target.namespace else " at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{GROUP}"{where}'
    )
    details: dict[str, Any] = {"group": GROUP, "kind": target.resource}
    if target.name:
        details["name"] = target.name
    return status(403, "Forbidden", message, details)


def not_found(target: ResourcePath, name: str | None = None) -> dict[str, Any]:
    name = name or target.name or ""
    return status(404, "NotFound", f'{target.qualified_resource} "{name}" not found',
                  {"name": name, "group": GROUP, "kind": target.resource})
