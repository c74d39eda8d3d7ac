#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nbimage_import
short_description: Publish a container image as a validated Open Data Hub notebook image
version_added: 0.1.0
author:
  - mlops.notebooks maintainers (@mlops-notebooks)
description:
  - Imports an image from a registry into an OpenShift ImageStream that the Open Data Hub (OpenShift AI)
    dashboard and notebook spawner list, after checking inside the image that it really is a usable
    notebook image.
  - The ImageStream carries the label C(opendatahub.io/notebook-image) (C("true") only once validation
    passed), the annotations C(opendatahub.io/notebook-image-name), C(-desc), C(-creator), C(-url),
    C(-order), C(-phase) (C(Importing), C(Validating), C(Succeeded), C(Failed)) and C(-messages), and one
    tag whose C(from) is the image, annotated with C(openshift.io/imported-from),
    C(opendatahub.io/notebook-software) and C(opendatahub.io/notebook-python-dependencies).
  - The import is checked; the module waits until the tag resolves to a digest and stops at once when the
    import fails.
  - Validation runs the checks in a short-lived pod (Pod Security C(restricted), arbitrary non-root UID)
    from the image pinned by digest; the verdict comes back in the pod's termination message and the pod
    is deleted afterwards. Validation runs again only when the digest (or the validation settings) change.
  - A second run with the same options and an unchanged digest writes nothing and starts no pod.
  - Every failure has a C(reason) (C(RequiredSecretMissing), C(AuthenticationFailed), C(ImageNotFound),
    C(RegistryUnreachable), C(ValidationFailed), C(Timeout), ...) and says whether it is C(temporary).
  - With O(backend=local) no cluster is involved; the image is inspected with skopeo, validated with
    C(buildah run) and optionally copied to O(target_image), with the same result shape.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  name:
    description:
      - Name of the ImageStream. Defaults to C(custom-<last path component of the image>), as the ODH
        dashboard names custom images.
    type: str
  namespace:
    description:
      - Namespace of the ImageStream, usually the ODH applications namespace. Required with the
        C(openshift) backend.
    type: str
  from_image:
    description:
      - The image to import, as C(registry[:port]/path/name[:tag][@digest]). Without a registry,
        C(docker.io) is meant; without tag and digest, C(latest).
      - Required unless O(state=absent).
    type: str
    aliases: [image]
  tag:
    description:
      - The ImageStream tag. Defaults to the image's tag (C(latest) for an image given by digest only).
    type: str
  image_pull_secret:
    description:
      - Name of a C(kubernetes.io/dockerconfigjson) secret in O(namespace) holding the registry credentials.
        It must exist before the import; a missing secret fails with reason C(RequiredSecretMissing)
        (temporary). The validation pod names it in C(imagePullSecrets).
      - Only the name is passed; the credentials never appear in a pod command, environment or result.
    type: str
  pull_secret_file:
    description:
      - With O(backend=local), a dockerconfigjson file with the registry credentials (for example the
        content of a pull secret saved to a file).
    type: path
  display_name:
    description:
      - The name the dashboard shows (annotation C(opendatahub.io/notebook-image-name)). Defaults to O(name).
    type: str
  description:
    description:
      - Description (annotation C(opendatahub.io/notebook-image-desc)).
    type: str
    default: ''
  creator:
    description:
      - Who provides the image (annotation C(opendatahub.io/notebook-image-creator)).
    type: str
    default: ''
  order:
    description:
      - Sort order in the dashboard (annotation C(opendatahub.io/notebook-image-order)).
    type: int
    default: 100
  visible:
    description:
      - Whether the image is offered in the dashboard once validated. With C(false) the label stays
        C("false") even after validation passed.
    type: bool
    default: true
  validate:
    description:
      - The checks run inside the image.
    type: dict
    default: {}
    suboptions:
      enabled:
        description:
          - Validate the image. Without validation the image is published as C(Succeeded) with a warning
            message.
        type: bool
        default: true
      min_python:
        description:
          - Minimum Python version.
        type: str
        default: '3.8'
      required_modules:
        description:
          - Python modules that must import.
        type: list
        elements: str
        default: [jupyterlab]
      required_commands:
        description:
          - Commands that must be on C(PATH), for example C(start-notebook.sh).
        type: list
        elements: str
        default: []
      check_home:
        description:
          - Check that C($HOME) is set and writable under an arbitrary UID.
        type: bool
        default: true
      timeout:
        description:
          - Seconds the validation may take (the pod's C(activeDeadlineSeconds)); the image pull counts.
        type: int
        default: 300
  reference_policy:
    description:
      - The tag's C(referencePolicy.type). C(Source) lets pods pull from the source registry, C(Local)
        through the cluster's registry.
    type: str
    default: Source
    choices: [Source, Local]
  scheduled:
    description:
      - Let the cluster re-import the tag periodically. A later run of this module validates a new digest.
    type: bool
    default: false
  insecure:
    description:
      - The registry speaks plain HTTP or has an untrusted certificate (C(importPolicy.insecure); with
        O(backend=local), no TLS verification).
    type: bool
    default: false
  state:
    description:
      - C(present) imports and validates; C(absent) deletes the ImageStream and any validation pod left
        behind. Only ImageStreams labelled C(app.kubernetes.io/managed-by=mlops.notebooks) are deleted.
    type: str
    default: present
    choices: [present, absent]
  wait:
    description:
      - Wait for the import and the validation. With C(false) the ImageStream is written and the module
        returns; a later run continues.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the import to resolve to a digest; then the run fails with reason C(Timeout).
    type: int
    default: 300
  backend:
    description:
      - C(openshift) uses the cluster's ImageStreams and a validation pod; C(local) uses skopeo and buildah
        on the machine running the module; C(auto) picks C(openshift) when a cluster is configured and serves
        C(image.openshift.io), else C(local).
    type: str
    default: auto
    choices: [auto, openshift, local]
  target_image:
    description:
      - With O(backend=local), copy the validated image to this reference (by digest, all layers).
    type: str
notes:
  - The Role the module needs on O(namespace) is in C(docs/nbimage_import.md).
  - Check mode sends writes as server-side dry runs; it cannot import or validate, so it reports the
    phase the ImageStream would enter.
requirements:
  - kubernetes >= 24.2.0 (backend openshift)
  - skopeo and buildah (backend local)
"""

EXAMPLES = r"""
- name: Publish a notebook image for the ODH dashboard
  mlops.notebooks.nbimage_import:
    namespace: opendatahub
    from_image: quay.io/thoth-station/s2i-minimal-py38-notebook:v0.2.2
    display_name: Minimal Python 3.8
    description: minimal notebook image for python 3.8
    creator: goern
  register: imported

- name: Import from a private registry with a pull secret, requiring more modules
  mlops.notebooks.nbimage_import:
    namespace: opendatahub
    name: custom-private-notebook
    from_image: registry.example.com/team/notebook:2024.1
    image_pull_secret: private-registry-credentials
    validate:
      min_python: "3.9"
      required_modules: [jupyterlab, pandas]
      timeout: 600

- name: Validate on this machine (no cluster) and copy to an internal registry
  mlops.notebooks.nbimage_import:
    backend: local
    from_image: registry.example.com/team/notebook:2024.1
    pull_secret_file: /run/secrets/registry.json
    target_image: registry.internal/notebooks/team-notebook:2024.1

- name: Remove the image from the dashboard
  mlops.notebooks.nbimage_import:
    namespace: opendatahub
    name: custom-private-notebook
    state: absent
"""

RETURN = r"""
backend:
  description: The backend that ran (C(openshift) or C(local)).
  returned: always
  type: str
  sample: openshift
image:
  description: The image pinned by digest.
  returned: when the image was resolved
  type: str
  sample: quay.io/org/notebook@sha256:5d6c...
digest:
  description: The image digest.
  returned: when the image was resolved
  type: str
  sample: sha256:5d6c...
software:
  description: Software found in the image (the C(opendatahub.io/notebook-software) annotation).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "Python", "version": "3.11.2"}, {"name": "JupyterLab", "version": "4.2.5"}]
python_dependencies:
  description: Top-level Python packages (the C(opendatahub.io/notebook-python-dependencies) annotation).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "jupyterlab", "version": "4.2.5", "visible": true}]
phase:
  description: The phase the ImageStream is in (C(Importing), C(Validating), C(Succeeded), C(Failed)).
  returned: always
  type: str
  sample: Succeeded
messages:
  description: The C(opendatahub.io/notebook-image-messages) entries, one per failed check or problem.
  returned: always
  type: list
  elements: dict
  sample: [{"severity": "error", "message": "module jupyterlab does not import: ModuleNotFoundError"}]
validation:
  description: Each check run inside the image and its result.
  returned: always
  type: dict
  contains:
    passed:
      description: Whether every required check passed (null when nothing was validated).
      type: bool
    skipped:
      description: Validation was disabled.
      type: bool
    reused:
      description: The result was recorded for this digest and these settings by an earlier run; no pod ran.
      type: bool
    digest:
      description: The digest that was validated.
      type: str
    python_version:
      description: The image's Python version.
      type: str
    checks:
      description: C({name, passed, message, required}) per check (C(python), C(import:<module>), C(home), ...).
      type: list
      elements: dict
imagestream:
  description: The ImageStream as the cluster holds it after the run (without managedFields).
  returned: with the openshift backend
  type: dict
reason:
  description: Why the run failed.
  returned: on failure
  type: str
  sample: RequiredSecretMissing
temporary:
  description: Whether the same run can succeed later without a change (a secret being created, a registry down).
  returned: on failure
  type: bool
deleted_pods:
  description: Validation pods left by interrupted runs that O(state=absent) deleted.
  returned: with state absent on the openshift backend
  type: list
  elements: str
"""

import copy
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.errors import ClusterError
from ansible_collections.mlops.notebooks.plugins.module_utils.nbimage_import_args import (
    IMPORT_ARG_SPEC,
    empty_result,
    request_from_params,
)


def argument_spec() -> dict[str, Any]:
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(copy.deepcopy(IMPORT_ARG_SPEC))
    # names, not secrets: keep Ansible's no_log heuristics quiet about them
    spec["image_pull_secret"]["no_log"] = False
    spec["pull_secret_file"]["no_log"] = False
    return spec


def _cluster_configured(module: AnsibleK8SModule) -> Any:
    """kubernetes.core's client for the configured cluster, or None when none is configured (or the library is
    missing)."""
    try:
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    except ImportError:
        return None
    try:
        return get_api_client(module=module)
    except CoreException:
        return None
    except Exception:  # kubeconfig missing or unreadable: there is no cluster to use
        return None


def choose_backend(module: AnsibleK8SModule) -> tuple[str, Any]:
    """(backend, client): the backend to run and, for openshift, kubernetes.core's client."""
    wanted = module.params["backend"]
    if wanted == "local":
        return "local", None
    if wanted == "openshift":
        module.requires("kubernetes")
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
        try:
            return "openshift", get_api_client(module=module)
        except CoreException as error:
            raise ClusterError("ApiError", f"cannot connect to the cluster: {error}", temporary=False) from None
    client = _cluster_configured(module)
    if client is None:
        return "local", None
    from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.platform import detect

    try:
        found = detect(client)
    except Exception as error:  # discovery failed: the cluster is configured but not answering
        raise ClusterError("ApiError", f"the configured cluster did not answer API discovery: {error}") from None
    if found.imagestreams:
        return "openshift", client
    module.warn(f"the configured cluster serves no ImageStreams ({found.describe()}): using the local backend")
    return "local", None


def _secret_reader(module: AnsibleK8SModule) -> Any:
    """For the local backend: reads a pull secret from the configured cluster (None without a cluster)."""
    client = _cluster_configured(module)
    if client is None:
        return None

    def read(namespace: str, name: str) -> Any:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return client.get(client.resource("Secret", "v1"), name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as error:
            raise ClusterError("ApiError", f"reading the pull secret {namespace}/{name}: {error}") from None

    return read


def run(module: AnsibleK8SModule) -> None:
    params = module.params
    result = empty_result(params["backend"])
    try:
        request = request_from_params(params)
        backend, client = choose_backend(module)
        if backend == "openshift":
            from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import K8sService
            from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.image_import import OpenShiftImport
            from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.platform import detect

            if params["backend"] == "openshift" and not detect(client).imagestreams:
                raise ClusterError("PlatformUnsupported", "the cluster does not serve image.openshift.io ImageStreams; "
                                                          "use backend: local, or a cluster with OpenShift's image API")
            runner = OpenShiftImport(K8sService(client, module), request, check_mode=module.check_mode)
        else:
            from ansible_collections.mlops.notebooks.plugins.module_utils.nbimage_import_local import LocalImport

            read_secret = _secret_reader(module) if params.get("image_pull_secret") else None
            runner = LocalImport(request, check_mode=module.check_mode, read_secret=read_secret)
        outcome = runner.absent() if params["state"] == "absent" else runner.present()
    except ClusterError as error:
        result.update(error.as_result())
        module.fail_json(**result)
        return
    for warning in outcome.warnings:
        module.warn(warning)
    result = dict(outcome.result)
    if module._diff and outcome.diff is not None:
        result["diff"] = outcome.diff
    if outcome.error is not None:
        result.update(outcome.error.as_result())
        module.fail_json(**result)
        return
    module.exit_json(**result)


def main() -> None:
    module = AnsibleK8SModule(
        module_class=AnsibleModule,
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("state", "present", ("from_image",)), ("state", "absent", ("name", "from_image"), True)],
        check_k8s=False,
    )
    run(module)


if __name__ == "__main__":
    main()
