"""The shipped catalog, and how a site's overrides (version, sha256, mirror) resolve it."""

from __future__ import annotations

import importlib
import json
import re

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.render import naming
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.upstream import catalog
from tests.helpers import SHARED, example_site_data, write_site

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def site_with(tmp_path, **components):
    data = example_site_data()
    data.setdefault("components", {}).update(components)
    return load_site(write_site(tmp_path, data))


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv(catalog.MIRROR_ENV, raising=False)


def test_every_entry_is_complete_and_names_a_stage():
    for name, entry in catalog.components().items():
        assert entry.files, name
        assert all(SHA256.match(digest) for digest in entry.files.values()), name
        assert entry.stage in registry.STAGE_NAMES, name
        for repository in entry.pins:
            assert naming.parse(repository).tag is None, f"{name}: pin keys are repositories"


def test_digests_are_the_ones_of_the_upstream_test_data():
    """Byte-exact copies in ../shared/upstream were checked against git: the catalog must agree."""
    shared = json.loads((SHARED / "upstream" / "catalog.json").read_text())
    known = {(f["component"], f["tag"], f["path"]): f["sha256"] for f in shared["files"]}
    for name, entry in catalog.components().items():
        for path, digest in entry.files.items():
            assert known[(name, entry.version, path)] == digest, f"{name} {path}"


def test_stage_modules_declare_the_components_the_catalog_assigns_them():
    stages = {entry.stage for entry in catalog.components().values()} - {"dashboard"}
    for stage in stages:
        module = importlib.import_module(f"cubeinstall.stages.{registry.get(stage).module}")
        read = {name for name, entry in catalog.components().items() if stage in entry.used_by}
        assert set(catalog.for_stage(stage)) <= set(module.UPSTREAM), stage
        assert set(module.UPSTREAM) <= set(catalog.for_stage(stage)) | read, stage


def test_stages_reading_another_stages_component_are_its_users():
    """A stage that requires a component it does not own is listed in its used_by (so
    ``bundle fetch`` fetches it whenever that stage is enabled)."""
    for stage in registry.STAGES:
        module = importlib.import_module(f"cubeinstall.stages.{stage.module}")
        for name in getattr(module, "UPSTREAM", ()):
            entry = catalog.components()[name]
            assert stage.name == entry.stage or stage.name in entry.used_by, (stage.name, name)


def test_default_urls_are_the_projects_raw_github_files():
    resolved = catalog.resolve(None, "istio")
    [item] = resolved.files
    assert item.url == ("https://raw.githubusercontent.com/istio/istio/1.30.3/"
                        "manifests/charts/base/files/crd-all.gen.yaml")
    assert item.sha256 == "dcb43ff6b9af2f629b80b6a82597f5a91db259c757e66cc5353ac007da28351a"
    assert resolved.image("docker.io/istio/pilot") == "docker.io/istio/pilot:1.30.3"


@pytest.mark.parametrize("base, expected", [
    ("http://mirror.local/up/",
     "http://mirror.local/up/volcano/v1.15.1/installer/volcano-development.yaml"),
    ("https://proxy.local/gh/{repo}/{version}/{path}",
     "https://proxy.local/gh/volcano-sh/volcano/v1.15.1/installer/volcano-development.yaml"),
])
def test_a_mirror_is_one_setting(tmp_path, base, expected):
    data = example_site_data()
    data["upstream"] = {"base_url": base}
    site = load_site(write_site(tmp_path, data))
    assert catalog.resolve(site, "volcano").files[0].url == expected


def test_the_mirror_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.MIRROR_ENV, "http://127.0.0.1:9/")
    item = catalog.resolve(site_with(tmp_path), "frameworkcontroller").files[0]
    assert item.url == ("http://127.0.0.1:9/frameworkcontroller/v1.0.1/"
                        "example/config/default/frameworkcontroller.yaml")


def test_a_mirror_must_be_a_url(tmp_path):
    data = example_site_data()
    data["upstream"] = {"base_url": "mirror.local/files"}
    with pytest.raises(ConfigError) as error:
        load_site(write_site(tmp_path, data))
    assert "upstream" in str(error.value) and "http://" in str(error.value)


def test_another_version_needs_the_sha256_of_each_file(tmp_path):
    site = site_with(tmp_path, volcano={"version": "v1.16.0"})
    with pytest.raises(ConfigError) as error:
        catalog.resolve(site, "volcano")
    assert error.value.problems == ["installer/volcano-development.yaml"]
    assert "v1.16.0" in error.value.message


def test_another_version_with_its_sha256(tmp_path):
    digest = "ab" * 32
    site = site_with(tmp_path, volcano={"version": "v1.16.0",
                                        "sha256": {"installer/volcano-development.yaml": digest}})
    [item] = catalog.resolve(site, "volcano").files
    assert (item.version, item.sha256) == ("v1.16.0", digest)
    assert "/v1.16.0/installer/" in item.url


def test_kubeflow_versions_are_per_component(tmp_path):
    argo_paths = sorted(catalog.components()["argo-workflows"].files)
    site = site_with(tmp_path, kubeflow={"version": {"argo-workflows": "v4.1.3"},
                                         "sha256": {path: "cd" * 32 for path in argo_paths}})
    argo = catalog.resolve(site, "argo-workflows")
    assert argo.version == "v4.1.3"
    assert argo.image("quay.io/argoproj/argoexec") == "quay.io/argoproj/argoexec:v4.1.3"
    assert catalog.resolve(site, "training-operator").version == "v1.9.4"


@pytest.mark.parametrize("setting, words", [
    ({"version": "v4.1.3"}, "ambiguous"),
    ({"version": {"argo": "v4.1.3"}}, "unknown components"),
    ({"sha256": {"manifests/nope.yaml": "ef" * 32}}, "does not use"),
])
def test_kubeflow_override_mistakes_are_named(tmp_path, setting, words):
    site = site_with(tmp_path, kubeflow=setting)
    with pytest.raises(ConfigError) as error:
        catalog.resolve(site, "argo-workflows")
    assert words in str(error.value)


def test_site_files_follow_enabled_stages_and_mode(tmp_path):
    site = site_with(tmp_path, istio={"mode": "existing"}, volcano={"enabled": False})
    components = {item.component for item in catalog.site_files(site)}
    assert "istio" not in components and "volcano" not in components
    assert {"argo-workflows", "training-operator", "prometheus-operator",
            "frameworkcontroller"} <= components


def test_a_component_read_by_several_stages_is_fetched_when_any_of_them_is_enabled(tmp_path):
    entry = catalog.components()["cube-studio"]
    assert entry.stage == "cube" and "gateway" in entry.used_by
    only_gateway = catalog.site_files(site_with(tmp_path, cube={"enabled": False}), ["gateway"])
    assert {item.component for item in only_gateway} == {"cube-studio"}
    assert catalog.site_files(site_with(tmp_path), ["redis"]) == []
