"""Image reference parsing: registries with ports, multi-level paths, tags, digests, docker.io defaults."""

from __future__ import annotations

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.images.reference import (
    ImageReference,
    InvalidImageReference,
    k8s_safe_name,
    parse,
    validate_digest,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "ab" * 64


@pytest.mark.parametrize(
    "text, registry, path, tag, digest",
    [
        ("python", "docker.io", "library/python", "latest", None),
        ("python:3.11-slim", "docker.io", "library/python", "3.11-slim", None),
        ("jupyter/scipy-notebook", "docker.io", "jupyter/scipy-notebook", "latest", None),
        ("docker.io/python", "docker.io", "library/python", "latest", None),
        ("index.docker.io/jupyter/base-notebook:x", "docker.io", "jupyter/base-notebook", "x", None),
        ("quay.io/org/image:v1", "quay.io", "org/image", "v1", None),
        # community.okd's parser dropped the middle components; every one must stay.
        ("quay.io/org/team/sub/image:2024.1", "quay.io", "org/team/sub/image", "2024.1", None),
        ("registry.example.com:5000/a/b/c", "registry.example.com:5000", "a/b/c", "latest", None),
        ("127.0.0.1:44499/testimages/notebook:latest", "127.0.0.1:44499", "testimages/notebook", "latest", None),
        ("localhost/image", "localhost", "image", "latest", None),
        ("localhost:5000/image:tag", "localhost:5000", "image", "tag", None),
        ("[::1]:5000/ns/image:t", "[::1]:5000", "ns/image", "t", None),
        ("Quay.IO/org/image", "quay.io", "org/image", "latest", None),
        (f"quay.io/org/image@{DIGEST}", "quay.io", "org/image", None, DIGEST),
        (f"quay.io/org/image:v1@{DIGEST}", "quay.io", "org/image", "v1", DIGEST),
        (f"registry:5000/a/b@{SHA512}", "registry:5000", "a/b", None, SHA512),
        ("docker://quay.io/org/image:v1", "quay.io", "org/image", "v1", None),
        ("quay.io/my_org/my.image__x-y--z:V_1.0-rc", "quay.io", "my_org/my.image__x-y--z", "V_1.0-rc", None),
        ("  quay.io/org/image  ", "quay.io", "org/image", "latest", None),
    ],
)
def test_valid_references(text, registry, path, tag, digest):
    reference = parse(text)
    assert (reference.registry, reference.repository_path, reference.tag, reference.digest) == (
        registry, path, tag, digest)
    assert ImageReference.parse(text) == reference
    # The canonical pull spec parses back to the same reference.
    assert parse(reference.pull_spec) == reference


@pytest.mark.parametrize(
    "text, pull_spec",
    [
        ("python", "docker.io/library/python:latest"),
        ("quay.io/a/b/c:1", "quay.io/a/b/c:1"),
        (f"quay.io/a/b:1@{DIGEST}", f"quay.io/a/b:1@{DIGEST}"),
        (f"quay.io/a/b@{DIGEST}", f"quay.io/a/b@{DIGEST}"),
        ("LOCALHOST:5000/x", "localhost:5000/x:latest"),
    ],
)
def test_pull_spec_is_canonical(text, pull_spec):
    assert parse(text).pull_spec == pull_spec
    assert str(parse(text)) == pull_spec


def test_by_digest_pins_and_drops_the_tag():
    reference = parse("registry.example.com:5000/org/team/image:v2")
    assert reference.by_digest(DIGEST) == f"registry.example.com:5000/org/team/image@{DIGEST}"
    assert reference.name == "registry.example.com:5000/org/team/image"
    with pytest.raises(InvalidImageReference, match="64 lower-case hex"):
        reference.by_digest("sha256:abc")


def test_digest_only_reference_has_no_tag_but_a_default_tag_name():
    reference = parse(f"quay.io/org/image@{DIGEST}")
    assert reference.tag is None
    assert reference.tag_or_default == "latest"
    assert parse("quay.io/org/image:v3").tag_or_default == "v3"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("quay.io/Org/image", "lower-case"),
        ("Image", "lower-case"),
        ("quay.io/org/image:", "tag ''"),
        ("quay.io/org/image:-x", "tag '-x'"),
        ("quay.io/org/image:" + "a" * 129, "1 to 128"),
        ("quay.io//image", "empty path component"),
        ("quay.io/org/image/", "empty path component"),
        ("quay.io/org/-image", "component '-image'"),
        ("quay.io/org/ima ge", "white space"),
        ("quay.io/org/image@sha256:abc", "64 lower-case hex"),
        (f"quay.io/org/image@{DIGEST.upper()}", "sha256"),
        ("quay.io/org/image@md5:" + "a" * 32, "unsupported algorithm"),
        ("quay.io/org/image@", "digest ''"),
        ("https://quay.io/org/image", "docker:// transport"),
        ("bad_host.example.com:5000/x", "not a valid registry host"),
        ("host.example.com:99999/x", "out of range"),
        ("quay.io/" + "a" * 260, "longer than 255"),
        (":tag", "repository name is missing"),
    ],
)
def test_invalid_references(text, message):
    with pytest.raises(InvalidImageReference, match=message.replace("(", r"\(")):
        parse(text)


def test_invalid_reference_is_a_value_error_and_not_a_string():
    assert issubclass(InvalidImageReference, ValueError)
    with pytest.raises(InvalidImageReference, match="must be a string"):
        parse(None)  # type: ignore[arg-type]


def test_validate_digest_accepts_known_algorithms():
    assert validate_digest(DIGEST) == DIGEST
    assert validate_digest(SHA512) == SHA512
    with pytest.raises(InvalidImageReference):
        validate_digest("sha256")


def test_suggested_imagestream_name_follows_the_dashboard_convention():
    assert parse("quay.io/org/team/My-Notebook".lower()).suggested_imagestream_name() == "custom-my-notebook"
    assert parse("quay.io/org/scipy_notebook.v2:1").suggested_imagestream_name() == "custom-scipy-notebook-v2"
    assert parse("python:3.11").suggested_imagestream_name() == "custom-python"


def test_k8s_safe_name():
    assert k8s_safe_name("My Fancy Notebook!", prefix="custom-") == "custom-my-fancy-notebook"
    assert k8s_safe_name("  Ünïcode -- name ", prefix="custom-") == "custom-n-code-name"
    assert k8s_safe_name("", prefix="custom-") == "custom-image"
    assert k8s_safe_name("---") == "image"
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    name_a, name_b = k8s_safe_name(long_a, prefix="custom-"), k8s_safe_name(long_b, prefix="custom-")
    assert len(name_a) == 63 and len(name_b) == 63
    assert name_a != name_b  # the hash suffix keeps long names apart
    assert name_a.startswith("custom-aaaa") and name_a[-9] == "-"
