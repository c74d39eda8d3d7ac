# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pull secrets as authentication files for skopeo and buildah (containers-auth.json).

A ``kubernetes.io/dockerconfigjson`` secret holds ``{"auths": {registry: {"auth": base64(user:password)}}}``
under the key ``.dockerconfigjson``; the older ``kubernetes.io/dockercfg`` holds the inner mapping under
``.dockercfg``. The file written here is what ``--authfile`` expects: credentials go to the tools through a
private file (mode 0600), never through a command line. Messages never contain secret content.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from typing import Any, Iterator, Mapping, Optional, Union

from .errors import InvalidPullSecret

DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
DOCKERCFG_KEY = ".dockercfg"
_DOCKER_HUB_KEYS = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


def auth_config(secret_data: Union[Mapping[str, Any], str, bytes]) -> dict:
    """``{"auths": {registry: {"auth": ...}}}`` from a secret's ``data`` (base64 values) or ``stringData``, from
    the ``.dockerconfigjson`` content itself (JSON text, base64 of it, or already parsed), or from ``.dockercfg``.
    """
    config = _decode(secret_data)
    if isinstance(config, dict) and DOCKERCONFIGJSON_KEY in config:
        config = _decode(config[DOCKERCONFIGJSON_KEY])
    elif isinstance(config, dict) and DOCKERCFG_KEY in config:
        config = {"auths": _decode(config[DOCKERCFG_KEY])}
    if not isinstance(config, dict):
        raise InvalidPullSecret("the pull secret is not a JSON object")
    auths = config.get("auths") if "auths" in config else _legacy_auths(config)
    if not isinstance(auths, dict) or not auths:
        raise InvalidPullSecret("the pull secret names no registry: expected {\"auths\": {\"<registry>\": {...}}}")
    normalized: dict[str, dict] = {}
    for registry, entry in auths.items():
        if not isinstance(entry, dict):
            raise InvalidPullSecret(f"the pull secret's entry for {registry} is not an object")
        normalized[_registry_key(str(registry))] = _auth_entry(str(registry), entry)
    return {"auths": normalized}


def dockerconfigjson_to_authfile(secret_data: Union[Mapping[str, Any], str, bytes],
                                 directory: Optional[str] = None) -> str:
    """Write the secret's credentials to a new private file (mode 0600) and return its path.

    The caller removes the file (see ``authfile_from_secret`` for a context manager that does).
    """
    config = auth_config(secret_data)
    handle, path = tempfile.mkstemp(prefix="mlops-notebooks-auth-", suffix=".json", dir=directory)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(config, file)
    except BaseException:
        os.unlink(path)
        raise
    return path


@contextlib.contextmanager
def authfile_from_secret(secret_data: Optional[Union[Mapping[str, Any], str, bytes]],
                         directory: Optional[str] = None) -> Iterator[Optional[str]]:
    """An authfile path for the block (None when ``secret_data`` is None), removed afterwards."""
    if secret_data is None:
        yield None
        return
    path = dockerconfigjson_to_authfile(secret_data, directory=directory)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _decode(value: Any) -> Any:
    """Parsed JSON from a dict (as is), JSON text, or base64-encoded JSON text."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise InvalidPullSecret(f"the pull secret holds a {type(value).__name__} where JSON was expected")
    text = value.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
        return json.loads(decoded)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidPullSecret("the pull secret is neither JSON nor base64-encoded JSON") from None


def _legacy_auths(config: dict) -> Optional[dict]:
    # .dockercfg content: the registry mapping at the top level, each entry with "auth" or credentials.
    if config and all(isinstance(entry, dict) and ({"auth", "username"} & set(entry)) for entry in config.values()):
        return config
    return None


def _registry_key(registry: str) -> str:
    # Docker's config files often use "https://index.docker.io/v1/"; containers-auth.json wants "docker.io".
    key = registry.strip()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    for suffix in ("/v1/", "/v2/", "/v1", "/v2"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    key = key.rstrip("/")
    return "docker.io" if key in _DOCKER_HUB_KEYS else key


def _auth_entry(registry: str, entry: dict) -> dict:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user_and_password = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidPullSecret(f"the pull secret's auth value for {registry} is not base64") from None
        if ":" not in user_and_password:
            raise InvalidPullSecret(f"the pull secret's auth value for {registry} is not user:password")
        return {"auth": auth}
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return {"auth": base64.b64encode(f"{username}:{password}".encode("utf-8")).decode("ascii")}
    if isinstance(entry.get("identitytoken"), str):
        return {"identitytoken": entry["identitytoken"]}
    raise InvalidPullSecret(f"the pull secret's entry for {registry} has neither auth nor username and password")
