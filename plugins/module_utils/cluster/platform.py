# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cluster offers, from API discovery: OpenShift's build and image groups, Tekton.

Discovery goes through kubernetes.core's cached discoverer (a file in the temp directory), so a run against
a cluster seen before costs no request; a group missing from the cache is looked up again once, since it may
have been installed after the cache was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

OPENSHIFT_BUILD_GROUP = "build.openshift.io"
OPENSHIFT_IMAGE_GROUP = "image.openshift.io"
TEKTON_GROUP = "tekton.dev"


@dataclass(frozen=True)
class Platform:
    """The API groups a cluster serves, and what they mean for the backends."""

    groups: frozenset

    @property
    def openshift(self) -> bool:
        """OpenShift proper: builds and image streams."""
        return OPENSHIFT_BUILD_GROUP in self.groups and OPENSHIFT_IMAGE_GROUP in self.groups

    @property
    def imagestreams(self) -> bool:
        """ImageStreams are served (all the import backend needs)."""
        return OPENSHIFT_IMAGE_GROUP in self.groups

    @property
    def tekton(self) -> bool:
        return TEKTON_GROUP in self.groups

    def describe(self) -> str:
        found = [name for name, present in (("OpenShift builds", OPENSHIFT_BUILD_GROUP in self.groups),
                                            ("ImageStreams", self.imagestreams), ("Tekton", self.tekton)) if present]
        return ", ".join(found) or "plain Kubernetes"


def served_groups(discoverer: Any, refresh: bool = False) -> frozenset:
    """The API group names of ``/apis`` (core ``v1`` is not a group), from the discoverer's cache."""
    parsed = discoverer.parse_api_groups(request_resources=False, update=refresh)
    return frozenset(name for name in (parsed.get("apis") or {}) if name)


def detect(k8s_client: Any, wanted: Iterable[str] = (OPENSHIFT_IMAGE_GROUP,)) -> Platform:
    """The platform behind a kubernetes.core ``K8SClient``; ``wanted`` groups missing from the cache trigger one
    fresh discovery before they are reported absent."""
    discoverer = k8s_client.client.resources
    groups = served_groups(discoverer)
    if any(group not in groups for group in wanted):
        discoverer.invalidate_cache()
        groups = served_groups(discoverer)
    return Platform(groups)
