# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image pull secret: it must exist before anything is imported, and hold credentials for the image's registry.

OpenShift's importer uses the namespace's dockerconfigjson secrets, and the validation pod names the secret in
``imagePullSecrets``; a secret that does not exist (yet) is the temporary condition ``RequiredSecretMissing``,
not an import that fails later as "unauthorized". The secret's content never leaves this file: only the
registry host names it holds credentials for.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional

from .errors import ClusterError, api_error

PULL_SECRET_TYPES = ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")


def registry_hosts(secret: dict[str, Any]) -> list[str]:
    """The registry hosts (``host[:port]``) a dockerconfigjson/dockercfg secret holds credentials for."""
    data = secret.get("data") or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        return []
    try:
        config = json.loads(base64.b64decode(raw).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ClusterError("InvalidSecret", f"the pull secret {secret.get('metadata', {}).get('name')!r} does not hold "
                                            f"valid JSON ({error.__class__.__name__})") from None
    auths = config.get("auths", config) if isinstance(config, dict) else {}
    return sorted({re.sub(r"^https?://", "", str(key)).split("/")[0].lower() for key in auths})


def covers(hosts: list[str], registry: str) -> bool:
    """Whether credentials for ``hosts`` apply to ``registry`` (docker.io has several names)."""
    docker_hub = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
    registry = registry.lower()
    if registry in docker_hub:
        return bool(docker_hub.intersection(hosts))
    return registry in hosts


def check_pull_secret(service: Any, namespace: str, name: str, registry: str) -> list[str]:
    """Fail with ``RequiredSecretMissing`` (temporary) when the secret does not exist, ``InvalidSecret`` when it is
    not a pull secret; return warnings (no credentials for ``registry`` in it)."""
    from kubernetes.dynamic.exceptions import NotFoundError

    resource = service.find_resource("Secret", "v1", fail=True)
    try:
        secret: Optional[dict[str, Any]] = service.client.get(resource, name=name, namespace=namespace).to_dict()
    except NotFoundError:
        secret = None
    except Exception as error:
        raise api_error(f"reading the pull secret {namespace}/{name}", error) from error
    if secret is None:
        raise ClusterError(
            "RequiredSecretMissing",
            f"the image pull secret {name!r} does not exist in namespace {namespace!r}; create it (type "
            f"kubernetes.io/dockerconfigjson, for example with 'oc create secret docker-registry {name} ...') and run "
            f"again",
            details={"secret": name},
        )
    if secret.get("type") not in PULL_SECRET_TYPES:
        raise ClusterError("InvalidSecret", f"the secret {namespace}/{name} is of type {secret.get('type')!r}; an image "
                                            f"pull secret is of type kubernetes.io/dockerconfigjson")
    hosts = registry_hosts(secret)
    if not covers(hosts, registry):
        return [f"the pull secret {name!r} holds no credentials for {registry} (only for: {', '.join(hosts) or 'none'})"]
    return []
