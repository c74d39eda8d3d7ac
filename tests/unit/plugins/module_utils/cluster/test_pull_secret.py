# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which registries a pull secret covers, without its content leaking into messages."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster import pull_secret
from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.errors import ClusterError


def secret(config: object, key: str = ".dockerconfigjson") -> dict:
    raw = config if isinstance(config, str) else json.dumps(config)
    return {"metadata": {"name": "creds"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {key: base64.b64encode(raw.encode()).decode()}}


def test_hosts_of_dockerconfigjson_and_dockercfg() -> None:
    config = {"auths": {"https://Registry.Example.com:5000/v2/": {"auth": "dTpw"}, "quay.io": {"auth": "dTpw"}}}
    assert pull_secret.registry_hosts(secret(config)) == ["quay.io", "registry.example.com:5000"]
    assert pull_secret.registry_hosts(secret({"quay.io": {"auth": "dTpw"}}, ".dockercfg")) == ["quay.io"]


def test_docker_hub_aliases() -> None:
    assert pull_secret.covers(["index.docker.io"], "docker.io")
    assert not pull_secret.covers(["quay.io"], "docker.io")


def test_invalid_json_names_no_content() -> None:
    with pytest.raises(ClusterError) as caught:
        pull_secret.registry_hosts(secret("not json s3cret"))
    assert caught.value.reason == "InvalidSecret"
    assert "s3cret" not in caught.value.message
