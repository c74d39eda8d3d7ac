# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Platform detection from the discoverer's cached groups, with one refresh for a missing group."""

from __future__ import annotations

from typing import Any

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster import platform


class CachedDiscoverer:
    """Stands in for kubernetes.core's LazyDiscoverer: a cached group list, and what the server has now."""

    def __init__(self, cached: list[str], served: list[str]) -> None:
        self.cached = cached
        self.served = served
        self.refreshes = 0

    def parse_api_groups(self, request_resources: bool = False, update: bool = False) -> dict[str, Any]:
        return {"api": {"": {}}, "apis": {name: {} for name in self.cached}}

    def invalidate_cache(self) -> None:
        self.refreshes += 1
        self.cached = list(self.served)


class Client:
    def __init__(self, discoverer: CachedDiscoverer) -> None:
        self.client = type("Dynamic", (), {"resources": discoverer})()


def test_openshift_from_the_cache_without_refresh() -> None:
    groups = ["apps", "build.openshift.io", "image.openshift.io"]
    discoverer = CachedDiscoverer(groups, groups)
    found = platform.detect(Client(discoverer))
    assert found.openshift and found.imagestreams and not found.tekton
    assert discoverer.refreshes == 0


def test_a_group_installed_after_the_cache_was_written_is_found() -> None:
    discoverer = CachedDiscoverer(["apps"], ["apps", "image.openshift.io", "tekton.dev"])
    found = platform.detect(Client(discoverer), wanted=("image.openshift.io",))
    assert found.imagestreams and found.tekton and not found.openshift
    assert discoverer.refreshes == 1


def test_plain_kubernetes() -> None:
    found = platform.detect(Client(CachedDiscoverer(["apps"], ["apps"])))
    assert not found.imagestreams and found.describe() == "plain Kubernetes"
