"""Image reference parsing and private names (flatten, keep-path): tables."""

from __future__ import annotations

import pytest

from cubeinstall.render import naming
from cubeinstall.site.model import Registry

DIGEST = "sha256:" + "ab" * 32

PARSE = [
    # reference, registry, repository, tag, digest
    ("mysql", "docker.io", "library/mysql", None, None),
    ("mysql:8.0.32", "docker.io", "library/mysql", "8.0.32", None),
    ("docker.io/library/mysql:8.0.32", "docker.io", "library/mysql", "8.0.32", None),
    ("index.docker.io/library/mysql:8.0.32", "docker.io", "library/mysql", "8.0.32", None),
    ("volcanosh/vc-scheduler:v1.15.1", "docker.io", "volcanosh/vc-scheduler", "v1.15.1", None),
    ("gcr.io/ml-pipeline/api-server:1.0.4", "gcr.io", "ml-pipeline/api-server", "1.0.4", None),
    ("nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless", "nvcr.io",
     "nvidia/k8s/dcgm-exporter", "4.5.3-4.8.2-distroless", None),
    ("localhost:5000/foo/bar:1", "localhost:5000", "foo/bar", "1", None),
    ("localhost/foo", "localhost", "foo", None, None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None),
    ("Gcr.IO/x/y:1", "gcr.io", "x/y", "1", None),
    (f"quay.io/prometheus/prometheus@{DIGEST}", "quay.io", "prometheus/prometheus", None, DIGEST),
    (f"registry.example.com:8443/team/app:1.0@{DIGEST}", "registry.example.com:8443",
     "team/app", "1.0", DIGEST),
    ("ghcr.io/kubeflow/training-v1/training-operator", "ghcr.io",
     "kubeflow/training-v1/training-operator", None, None),
]


@pytest.mark.parametrize("reference,registry,repository,tag,digest", PARSE)
def test_parse(reference, registry, repository, tag, digest):
    ref = naming.parse(reference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == \
        (registry, repository, tag, digest)


def test_canonical_string_adds_registry_library_and_latest():
    assert str(naming.parse("mysql")) == "docker.io/library/mysql:latest"
    assert str(naming.parse(f"quay.io/a/b:1@{DIGEST}")) == f"quay.io/a/b:1@{DIGEST}"
    assert naming.parse(f"quay.io/a/b:1@{DIGEST}").pull_reference == f"quay.io/a/b@{DIGEST}"


@pytest.mark.parametrize("reference", [
    "", "UPPER/case:1", "a b", "http://gcr.io/x", "repo:bad!tag", "x@sha256:zz",
    "gcr.io/", "gcr.io//x", "-leading/x",
])
def test_invalid_references_are_refused_with_the_reference_quoted(reference):
    with pytest.raises(naming.InvalidReference) as info:
        naming.parse(reference)
    assert repr(reference.strip()) in str(info.value) or reference.strip() in str(info.value)


def _registry(naming_mode: str, host: str = "harbor.example.com") -> Registry:
    return Registry(host=host, project="cube-studio", naming=naming_mode)


FLATTEN = [
    # PLATFORM-FACTS item 4, verbatim
    ("gcr.io/ml-pipeline/api-server:1.0.4", "gcr.io-ml-pipeline-api-server:1.0.4"),
    # Docker Hub: the familiar name, however written
    ("docker.io/library/mysql:8.0.32", "mysql:8.0.32"),
    ("mysql:8.0.32", "mysql:8.0.32"),
    ("volcanosh/vc-scheduler:v1.15.1", "volcanosh-vc-scheduler:v1.15.1"),
    ("docker.io/volcanosh/vc-scheduler:v1.15.1", "volcanosh-vc-scheduler:v1.15.1"),
    ("busybox", "busybox:latest"),
    ("localhost:5000/foo/bar:1", "localhost-5000-foo-bar:1"),
    ("nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless",
     "nvcr.io-nvidia-k8s-dcgm-exporter:4.5.3-4.8.2-distroless"),
    (f"quay.io/prometheus/prometheus@{DIGEST}", f"quay.io-prometheus-prometheus@{DIGEST}"),
    (f"quay.io/prometheus/prometheus:v3@{DIGEST}", f"quay.io-prometheus-prometheus:v3@{DIGEST}"),
    ("ccr.ccs.tencentyun.com/cube-studio/kubeflow-dashboard:2026.03.01",
     "ccr.ccs.tencentyun.com-cube-studio-kubeflow-dashboard:2026.03.01"),
]

KEEP_PATH = [
    ("gcr.io/ml-pipeline/api-server:1.0.4", "ml-pipeline/api-server:1.0.4"),
    ("docker.io/library/mysql:8.0.32", "mysql:8.0.32"),
    ("mysql:8.0.32", "mysql:8.0.32"),
    ("docker.io/istio/proxyv2:1.15.0", "istio/proxyv2:1.15.0"),
    ("localhost:5000/foo/bar:1", "foo/bar:1"),
    (f"quay.io/prometheus/prometheus@{DIGEST}", f"prometheus/prometheus@{DIGEST}"),
]


@pytest.mark.parametrize("source,private", FLATTEN)
def test_flatten(source, private):
    assert naming.target_name(source, _registry("flatten")) == \
        f"harbor.example.com/cube-studio/{private}"


@pytest.mark.parametrize("source,private", KEEP_PATH)
def test_keep_path(source, private):
    assert naming.target_name(source, _registry("keep-path")) == \
        f"harbor.example.com/cube-studio/{private}"


@pytest.mark.parametrize("mode", ["flatten", "keep-path"])
@pytest.mark.parametrize("source", [row[0] for row in FLATTEN + KEEP_PATH])
def test_private_names_are_valid_and_idempotent(source, mode):
    registry = _registry(mode, host="Harbor.Example.com:8443")
    once = naming.target_name(source, registry)
    assert naming.parse(once).registry == "harbor.example.com:8443"
    assert naming.target_name(once, registry) == once
    ref = naming.parse(source)
    target = naming.parse(once)
    assert (target.tag, target.digest) == (ref.tag or ("latest" if not ref.digest else None),
                                           ref.digest)


def test_images_already_in_the_site_registry_keep_their_name():
    registry = _registry("flatten")
    for image in ("harbor.example.com/other-project/thing:1",
                  "harbor.example.com/cube-studio/mysql:8.0.32"):
        assert naming.in_registry(naming.parse(image), registry)
        assert naming.target_name(image, registry) == image


def test_nested_project():
    registry = Registry(host="harbor.example.com", project="ai/cube", naming="flatten")
    assert naming.target_name("gcr.io/a/b:1", registry) == "harbor.example.com/ai/cube/gcr.io-a-b:1"
