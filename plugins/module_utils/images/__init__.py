# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image building blocks shared by the OpenShift and the local backends.

- ``reference``: parsing container image references;
- ``odh``: the Open Data Hub notebook ImageStream contract (labels, annotations, rendering, parsing);
- ``checks``: the validation program that runs inside an image, and parsing its result;
- ``errors``: failure reasons (temporary or permanent) and classification of registry messages;
- ``authfile``: kubernetes.io/dockerconfigjson secrets as containers-auth.json files;
- ``local``: the local backend (skopeo and buildah, no cluster).

No Ansible or Kubernetes imports here: the modules and the cluster backend build on these files.
"""

from __future__ import annotations
