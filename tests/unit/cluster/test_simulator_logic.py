"""Pure rules of the local cluster's aggregated build API and simulator (tests/cluster/aggregator, simulator)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
if str(CLUSTER_DIR) not in sys.path:
    sys.path.insert(0, str(CLUSTER_DIR))

from aggregator import builds as build_rules  # noqa: E402
from aggregator import translate  # noqa: E402
from simulator import distribution, podspec, tekton  # noqa: E402
from simulator.builds import insert_after_last_from, replace_last_from  # noqa: E402


# -- aggregator: paths, verbs, renaming -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/apis/build.openshift.io/v1/builds", translate.ResourcePath("builds")),
        ("/apis/build.openshift.io/v1/namespaces/ns/buildconfigs", translate.ResourcePath("buildconfigs", "ns")),
        ("/apis/build.openshift.io/v1/namespaces/ns/buildconfigs/bc/instantiate",
         translate.ResourcePath("buildconfigs", "ns", "bc", "instantiate")),
        ("/apis/build.openshift.io/v1/namespaces/ns/builds/bc-1/log", translate.ResourcePath("builds", "ns", "bc-1", "log")),
        ("/apis/build.openshift.io/v1/watch/namespaces/ns/builds",
         translate.ResourcePath("builds", "ns", watch_prefix=True)),
    ],
)
def test_resource_paths_parse(path: str, expected: translate.ResourcePath) -> None:
    assert translate.parse_resource_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/apis/build.openshift.io/v1/namespaces/ns/pods/x",
        "/apis/build.openshift.io/v1/namespaces/ns/builds/b/clone",
        "/apis/build.openshift.io/v1/builds/b",  # a name needs a namespace
        "/apis/image.openshift.io/v1/imagestreams",
    ],
)
def test_unknown_resource_paths_are_refused(path: str) -> None:
    with pytest.raises(translate.PathError):
        translate.parse_resource_path(path)


def test_storage_path_points_at_the_hidden_group() -> None:
    target = translate.parse_resource_path("/apis/build.openshift.io/v1/namespaces/ns/builds/b-1/log")
    assert target.storage_path() == "/apis/buildstore.sim.mlops.test/v1/namespaces/ns/builds/b-1"


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        ("GET", "/apis/build.openshift.io/v1/namespaces/ns/builds", {}, "list"),
        ("GET", "/apis/build.openshift.io/v1/namespaces/ns/builds", {"watch": "true"}, "watch"),
        ("GET", "/apis/build.openshift.io/v1/watch/namespaces/ns/builds", {}, "watch"),
        ("GET", "/apis/build.openshift.io/v1/namespaces/ns/builds/b", {}, "get"),
        ("DELETE", "/apis/build.openshift.io/v1/namespaces/ns/builds", {}, "deletecollection"),
        ("PATCH", "/apis/build.openshift.io/v1/namespaces/ns/builds/b", {}, "patch"),
        ("POST", "/apis/build.openshift.io/v1/namespaces/ns/buildconfigs/bc/instantiate", {}, "create"),
        ("GET", "/apis/build.openshift.io/v1/namespaces/ns/builds/b/log", {"follow": "true"}, "get"),
    ],
)
def test_request_verbs_match_the_kubernetes_authorizer(method: str, path: str, query: dict, verb: str) -> None:
    assert translate.request_verb(method, translate.parse_resource_path(path), query) == verb


def test_renaming_round_trip_keeps_everything_but_the_group() -> None:
    stored = {
        "apiVersion": "buildstore.sim.mlops.test/v1",
        "kind": "BuildList",
        "items": [{"apiVersion": "buildstore.sim.mlops.test/v1", "kind": "Build", "spec": {"x": 1}}],
    }
    public = translate.to_public(stored)
    assert public["apiVersion"] == "build.openshift.io/v1"
    assert public["items"][0] == {"apiVersion": "build.openshift.io/v1", "kind": "Build", "spec": {"x": 1}}
    assert translate.to_storage(public["items"][0])["apiVersion"] == "buildstore.sim.mlops.test/v1"
    status = translate.to_public({"message": 'builds.buildstore.sim.mlops.test "b" not found',
                                  "details": {"group": "buildstore.sim.mlops.test"}})
    assert status == {"message": 'builds.build.openshift.io "b" not found', "details": {"group": "build.openshift.io"}}


def test_forbidden_status_reads_like_the_api_servers() -> None:
    target = translate.parse_resource_path("/apis/build.openshift.io/v1/namespaces/ns/buildconfigs/bc/instantiate")
    body = translate.forbidden("system:serviceaccount:ns:robot", "create", target)
    assert body["code"] == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'buildconfigs.build.openshift.io "bc" is forbidden: User "system:serviceaccount:ns:robot" cannot create '
        'resource "buildconfigs/instantiate" in API group "build.openshift.io" in the namespace "ns"'
    )


def test_discovery_lists_what_openshift_lists() -> None:
    names = {entry["name"]: entry for entry in translate.api_resource_list()["resources"]}
    assert set(names) == {"buildconfigs", "buildconfigs/instantiate", "builds", "builds/log"}
    assert names["buildconfigs"]["shortNames"] == ["bc"]
    assert names["buildconfigs/instantiate"]["kind"] == "BuildRequest"
    aggregated = translate.aggregated_discovery("v2")
    resources = aggregated["items"][0]["versions"][0]["resources"]
    assert {r["resource"] for r in resources} == {"buildconfigs", "builds"}


# -- aggregator: OpenShift's defaults, validation and instantiate ---------------------------------------------


def docker_config(name: str = "bc") -> dict:
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": {"name": name, "namespace": "ns", "uid": "u-1", "labels": {"app": "nb"}},
        "spec": {
            "source": {"dockerfile": "FROM x\n"},
            "strategy": {"dockerStrategy": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "nb:latest"}},
            "triggers": [{"type": "ConfigChange"}],
        },
    }


def test_defaults_are_openshifts() -> None:
    config = build_rules.apply_defaults("BuildConfig", docker_config())
    assert config["spec"]["runPolicy"] == "Serial"
    assert config["spec"]["source"]["type"] == "Dockerfile"
    assert config["spec"]["strategy"]["type"] == "Docker"
    assert config["spec"]["successfulBuildsHistoryLimit"] == 5
    assert config["status"] == {"lastVersion": 0}


def test_validation_names_every_broken_field() -> None:
    config = docker_config()
    config["spec"]["strategy"] = {}
    config["spec"]["output"]["to"] = {"kind": "ImageStreamTag", "name": "no-tag"}
    with pytest.raises(build_rules.Invalid) as caught:
        build_rules.validate("BuildConfig", config)
    status = caught.value.status()
    assert status["code"] == 422
    assert {cause["field"] for cause in status["details"]["causes"]} == {"spec.strategy", "spec.output.to.name"}


def test_instantiate_makes_the_numbered_build_with_request_overrides() -> None:
    config = build_rules.apply_defaults("BuildConfig", docker_config())
    request = {"kind": "BuildRequest", "metadata": {"name": "bc"}, "env": [{"name": "B", "value": "override"}]}
    build = build_rules.build_from_config(config, 3, request)
    assert build["metadata"]["name"] == "bc-3"
    assert build["metadata"]["labels"]["openshift.io/build-config.name"] == "bc"
    assert build["metadata"]["labels"]["app"] == "nb"
    assert build["metadata"]["annotations"]["openshift.io/build.number"] == "3"
    assert build["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert build["spec"]["strategy"]["dockerStrategy"]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "override"}]
    assert "triggers" not in build["spec"] and "runPolicy" not in build["spec"]
    assert build["spec"]["triggeredBy"] == [{"message": "Manually triggered"}]
    assert build["status"] == {"phase": "New", "config": {"kind": "BuildConfig", "namespace": "ns", "name": "bc"}}


# -- simulator: pods --------------------------------------------------------------------------------------------


def test_user_is_run_as_user_then_openshift_range_then_default() -> None:
    pod = {"spec": {"securityContext": {"runAsUser": 1234}}}
    assert podspec.run_as(pod, {}, None) == (1234, 0)
    assert podspec.run_as(pod, {"securityContext": {"runAsUser": 5, "runAsGroup": 7}}, None) == (5, 7)
    namespace = {"metadata": {"annotations": {podspec.UID_RANGE_ANNOTATION: "1000650000/10000"}}}
    assert podspec.run_as({"spec": {}}, {}, namespace) == (1000650000, 0)
    assert podspec.run_as({"spec": {}}, {}, None) == (podspec.DEFAULT_ARBITRARY_UID, 0)
    with pytest.raises(podspec.ConfigError):
        podspec.run_as({"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}}, {}, None)


def test_environment_resolves_references_in_order() -> None:
    objects = {
        ("configmaps", "cm"): {"metadata": {"namespace": "ns"}, "data": {"color": "blue", "size": "L"}},
        ("secrets", "s"): {"metadata": {"namespace": "ns"}, "data": {"token": base64.b64encode(b"t0k").decode()}},
    }
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}}, "spec": {"nodeName": "n"}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi $(POD) $(NOPE) $$(POD)"},
            {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k", "optional": True}}},
        ],
    }
    env = podspec.environment(pod, container, lambda kind, name: objects.get((kind, name)), {})
    assert env == {"CM_color": "blue", "CM_size": "L", "TOKEN": "t0k", "POD": "p", "APP": "x",
                   "GREETING": "hi p $(NOPE) $(POD)"}
    with pytest.raises(podspec.ConfigError, match='secret "missing" not found'):
        podspec.environment(pod, {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}]},
                            lambda kind, name: None, {})


def test_command_line_follows_kubernetes_entrypoint_rules() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["serve"]}
    assert podspec.command_line({}, image, {}) == ["/entry", "serve"]
    assert podspec.command_line({"args": ["run", "$(X)"]}, image, {"X": "1"}) == ["/entry", "run", "1"]
    assert podspec.command_line({"command": ["python"]}, image, {}) == ["python"]


def test_volume_files_take_items() -> None:
    secret = {"data": {"a": base64.b64encode(b"1").decode(), "b": base64.b64encode(b"2").decode()}}
    assert podspec.key_files(secret, None, True) == {"a": b"1", "b": b"2"}
    assert podspec.key_files(secret, [{"key": "b", "path": "dir/b.txt"}], True) == {"dir/b.txt": b"2"}
    with pytest.raises(podspec.ConfigError):
        podspec.key_files(secret, [{"key": "c", "path": "c"}], True)


# -- simulator: images, builds, Tekton -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "reference"),
    [
        ("127.0.0.1:5000/testimages/notebook:latest", "127.0.0.1:5000", "testimages/notebook", "latest"),
        ("quay.io/org/deep/path/image", "quay.io", "org/deep/path/image", "latest"),
        ("python:3.11", "docker.io", "library/python", "3.11"),
        ("localhost/x@sha256:" + "a" * 64, "localhost", "x", "sha256:" + "a" * 64),
    ],
)
def test_image_references_parse_like_docker(text: str, registry: str, repository: str, reference: str) -> None:
    parsed = distribution.parse_reference(text)
    assert (parsed.registry, parsed.repository, parsed.reference) == (registry, repository, reference)


def test_credentials_match_the_registry_host() -> None:
    auths = {"https://127.0.0.1:5001/v1/": {"auth": base64.b64encode(b"me:secret").decode()},
             "other:1": {"username": "u", "password": "p"}}
    assert distribution.credentials_for("127.0.0.1:5001", auths) == ("me", "secret")
    assert distribution.credentials_for("other:1", auths) == ("u", "p")
    assert distribution.credentials_for("nowhere:2", auths) is None


def test_docker_strategy_from_replaces_the_last_stage_base() -> None:
    dockerfile = "FROM builder AS build\nRUN make\nFROM --platform=linux/amd64 base:1 AS final\nCOPY x y\n"
    replaced = replace_last_from(dockerfile, "registry/base@sha256:1")
    assert replaced.splitlines()[0] == "FROM builder AS build"
    assert replaced.splitlines()[2] == "FROM --platform=linux/amd64 registry/base@sha256:1 AS final"
    with_env = insert_after_last_from(replaced, ['ENV A="1"'])
    assert with_env.splitlines()[3] == 'ENV A="1"'


def test_tekton_substitution_and_params() -> None:
    strings, arrays = tekton.param_values([{"name": "a", "default": "x"}, {"name": "list", "default": ["1", "2"]}],
                                          [{"name": "b", "value": "y"}])
    assert strings == {"params.a": "x", "params.b": "y"}
    assert tekton.substitute("$(params.a)-$(params['b'])-$(params.c)", strings) == "x-y-$(params.c)"
    assert tekton.substitute_args(["echo", "$(params.list[*])", "$(params.a)"], strings, arrays) == ["echo", "1", "2", "x"]
    assert tekton.parse_duration("1h30m") == 5400
    assert tekton.parse_duration("0s") is None
