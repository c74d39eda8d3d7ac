"""Pull secrets (kubernetes.io/dockerconfigjson and dockercfg) as private authfiles for skopeo and buildah."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images.authfile import (
    auth_config,
    authfile_from_secret,
    dockerconfigjson_to_authfile,
)
from ansible_collections.mlops.notebooks.plugins.module_utils.images.errors import InvalidPullSecret

AUTH = base64.b64encode(b"robot:s3cret").decode()
CONFIG = {"auths": {"registry.example.com:5000": {"auth": AUTH}}}
CONFIG_TEXT = json.dumps(CONFIG)


@pytest.mark.parametrize("secret_data", [
    {".dockerconfigjson": base64.b64encode(CONFIG_TEXT.encode()).decode()},  # a Secret's data
    {".dockerconfigjson": CONFIG_TEXT},  # a Secret's stringData
    CONFIG_TEXT,
    CONFIG_TEXT.encode(),
    base64.b64encode(CONFIG_TEXT.encode()).decode(),
    CONFIG,
    {".dockercfg": json.dumps({"registry.example.com:5000": {"auth": AUTH, "email": "x@example.com"}})},
    {"registry.example.com:5000": {"username": "robot", "password": "s3cret"}},
])
def test_secret_shapes_become_one_auth_config(secret_data):
    assert auth_config(secret_data) == CONFIG


def test_docker_hub_keys_and_credentials_are_normalized():
    config = auth_config({"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p:w"}},
                          "credsStore": "desktop"})
    assert config == {"auths": {"docker.io": {"auth": base64.b64encode(b"u:p:w").decode()}}}
    assert auth_config({"auths": {"quay.io/org": {"auth": AUTH}}}) == {"auths": {"quay.io/org": {"auth": AUTH}}}


def test_authfile_is_private_and_removed_by_the_context_manager(tmp_path):
    path = dockerconfigjson_to_authfile({".dockerconfigjson": CONFIG_TEXT}, directory=str(tmp_path))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, encoding="utf-8") as file:
            assert json.load(file) == CONFIG
    finally:
        os.unlink(path)
    with authfile_from_secret(CONFIG, directory=str(tmp_path)) as managed:
        assert managed is not None and os.path.isfile(managed)
    assert not os.path.exists(managed)
    with authfile_from_secret(None) as nothing:
        assert nothing is None


@pytest.mark.parametrize("secret_data, message", [
    ("not json at all", "neither JSON nor base64"),
    ({".dockerconfigjson": "%%%"}, "neither JSON nor base64"),
    ({"auths": {}}, "names no registry"),
    ({"auths": {"r": "x"}}, "not an object"),
    ({"auths": {"r": {"auth": "***"}}}, "not base64"),
    ({"auths": {"r": {"auth": base64.b64encode(b"no-colon").decode()}}}, "not user:password"),
    ({"auths": {"r": {"email": "x"}}}, "neither auth nor username"),
    ("[1, 2]", "not a JSON object"),
    ([1, 2], "holds a list"),
    ({".dockerconfigjson": 5}, "holds a int"),
])
def test_unusable_secrets_are_reported_without_their_content(secret_data, message):
    with pytest.raises(InvalidPullSecret, match=message) as raised:
        auth_config(secret_data)
    assert "s3cret" not in str(raised.value)
