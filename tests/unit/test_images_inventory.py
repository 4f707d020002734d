"""Image inventory and render-time rewrite over synthetic, upstream and rendered objects."""

from __future__ import annotations

import copy
import json

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.core.yamlio import load_documents
from cubeinstall.images.inventory import (
    RUNTIME_PREFIX,
    build_inventory,
    runtime_images,
    source_site,
)
from cubeinstall.render import naming
from cubeinstall.render.pull_secret import ensure_pull_secret
from cubeinstall.render.rewrite import rewrite_images
from cubeinstall.render.walk import images_in_objects
from cubeinstall.site.loader import load_site
from cubeinstall.site.model import Registry
from tests.helpers import EXAMPLE_SITE, SHARED

UPSTREAM = SHARED / "upstream"


def _pod(*containers, init=(), ephemeral=()):
    spec = {"containers": [{"name": f"c{i}", "image": c} for i, c in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": c} for i, c in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": "e", "image": c} for c in ephemeral]
    return spec


def _workload(kind, spec, api="apps/v1"):
    return {"apiVersion": api, "kind": kind, "metadata": {"name": kind.lower(), "namespace": "x"},
            "spec": {"template": {"spec": spec}}}


SYNTHETIC = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
     "spec": _pod("pod:1", init=("pod-init:1",), ephemeral=("debug:1",))},
    _workload("Deployment", _pod("deploy:1")),
    _workload("StatefulSet", _pod("sts:1", init=("sts-init:1",))),
    _workload("DaemonSet", _pod("ds:1")),
    _workload("ReplicaSet", _pod("rs:1")),
    _workload("Job", _pod("job:1"), api="batch/v1"),
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
     "spec": {"jobTemplate": {"spec": {"template": {"spec": _pod("cron:1")}}}}},
    {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "pt"},
     "spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": _pod("torch:1")}},
                                      "Worker": {"template": {"spec": _pod("torch-w:1")}}}}},
    {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "w"},
     "spec": {"templates": [
         {"name": "a", "container": {"image": "argo-container:1", "command": ["x"]},
          "sidecars": [{"name": "s", "image": "argo-sidecar:1"}],
          "initContainers": [{"name": "i", "image": "argo-init:1"}]},
         {"name": "b", "script": {"image": "argo-script:1", "source": "print(1)"}}]}},
    {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": "k8s"},
     "spec": {"image": "quay.io/prometheus/prometheus:v3.0.0", "replicas": 1}},
    {"apiVersion": "monitoring.coreos.com/v1", "kind": "Alertmanager", "metadata": {"name": "m"},
     "spec": {"image": "quay.io/prometheus/alertmanager:v0.28.0"}},
    {"apiVersion": "monitoring.coreos.com/v1", "kind": "ThanosRuler", "metadata": {"name": "t"},
     "spec": {"image": "quay.io/thanos/thanos:v0.37.0"}},
    _workload("Deployment", {"containers": [{
        "name": "operator", "image": "quay.io/prometheus-operator/prometheus-operator:v0.93.0",
        "args": ["--kubelet-service=kube-system/kubelet",
                 "--prometheus-config-reloader=quay.io/prometheus-operator/"
                 "prometheus-config-reloader:v0.93.0"]}]}),
    _workload("Deployment", {"containers": [{
        "name": "controller", "image": "argoproj/workflow-controller:v3.4.3",
        "command": ["workflow-controller"],
        "args": ["--executor-image", "argoproj/argoexec:v3.4.3"]}]}),
    # a CRD's schema (and its example defaults) run nothing
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": "things.example.com"},
     "spec": {"versions": [{"schema": {"openAPIV3Schema": {"default": {
         "containers": [{"name": "x", "image": "never-pulled:1"}]}}}}]}},
    # a ConfigMap's text is not an image field
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
     "data": {"values": '{"image": "proxyv2"}'}},
]

EXPECTED = {
    "pod:1", "pod-init:1", "debug:1", "deploy:1", "sts:1", "sts-init:1", "ds:1", "rs:1", "job:1",
    "cron:1", "torch:1", "torch-w:1", "argo-container:1", "argo-sidecar:1", "argo-init:1",
    "argo-script:1", "quay.io/prometheus/prometheus:v3.0.0",
    "quay.io/prometheus/alertmanager:v0.28.0", "quay.io/thanos/thanos:v0.37.0",
    "quay.io/prometheus-operator/prometheus-operator:v0.93.0",
    "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.0",
    "argoproj/workflow-controller:v3.4.3", "argoproj/argoexec:v3.4.3",
}


def test_every_kind_of_image_field_is_found():
    assert images_in_objects(SYNTHETIC) == EXPECTED


def _site(mode="flatten"):
    site = load_site(EXAMPLE_SITE)
    return site.model_copy(update={"registry": site.registry.model_copy(update={"naming": mode})})


@pytest.mark.parametrize("mode", ["flatten", "keep-path"])
def test_rewrite_points_every_image_at_the_registry_and_is_pure_and_idempotent(mode):
    site = _site(mode)
    before = copy.deepcopy(SYNTHETIC)
    rewritten = rewrite_images(SYNTHETIC, site)
    assert SYNTHETIC == before, "rewrite_images changed its input"
    images = images_in_objects(rewritten)
    assert len(images) == len(EXPECTED)
    assert all(image.startswith("harbor.example.com/cube-studio/") for image in images)
    assert rewrite_images(rewritten, site) == rewritten
    reloader = rewritten[12]["spec"]["template"]["spec"]["containers"][0]["args"][1]
    assert reloader.startswith("--prometheus-config-reloader=harbor.example.com/cube-studio/")
    # the CRD and the ConfigMap are untouched
    assert rewritten[-2:] == SYNTHETIC[-2:]


def test_rewrite_without_registry_returns_equal_copies():
    site = load_site(EXAMPLE_SITE).model_copy(update={"registry": None})
    assert rewrite_images(SYNTHETIC, site) == SYNTHETIC


def test_bad_image_names_the_object():
    bad = [_workload("Deployment", _pod("UPPER/Case:1"))]
    with pytest.raises(ConfigError, match="Deployment x/deployment"):
        rewrite_images(bad, load_site(EXAMPLE_SITE))


def test_pull_secret_added_once_to_every_pod_spec():
    once = ensure_pull_secret(SYNTHETIC)
    twice = ensure_pull_secret(once)
    assert once == twice
    pod_specs = sum(json.dumps(obj).count('"imagePullSecrets": [{"name": "hubsecret"}]')
                    for obj in once)
    # Pod, 5 workloads + 2 operator Deployments, CronJob, 2 PyTorchJob templates (Argo
    # templates have no pod spec of their own)
    assert pod_specs == 11
    assert "imagePullSecrets" not in json.dumps(once[-2])  # CRD untouched


# --- inventory ---------------------------------------------------------------------------


def test_inventory_dedupes_however_written_and_records_users():
    registry = Registry(host="harbor.example.com", project="cube-studio")
    inventory = build_inventory({"mysql": ["mysql:8.0.32"],
                                 "other": ["docker.io/library/mysql:8.0.32",
                                           "harbor.example.com/cube-studio/own:1"]}, registry)
    assert [(u.source, u.target, u.used_by, u.needs_copy) for u in inventory] == [
        ("docker.io/library/mysql:8.0.32", "harbor.example.com/cube-studio/mysql:8.0.32",
         ("mysql", "other"), True),
        ("harbor.example.com/cube-studio/own:1", "harbor.example.com/cube-studio/own:1",
         ("other",), False),
    ]


def test_inventory_refuses_two_sources_with_one_private_name():
    registry = Registry(host="harbor.example.com", project="cube-studio", naming="keep-path")
    with pytest.raises(ConfigError) as info:
        build_inventory({"a": ["docker.io/bitnami/redis:7", "quay.io/bitnami/redis:7"]}, registry)
    assert "harbor.example.com/cube-studio/bitnami/redis:7" in str(info.value)
    assert "naming" in info.value.hint
    # flatten keeps them apart
    flat = Registry(host="harbor.example.com", project="cube-studio", naming="flatten")
    assert len(build_inventory({"a": ["docker.io/bitnami/redis:7",
                                      "quay.io/bitnami/redis:7"]}, flat)) == 2


def test_inventory_lists_every_bad_reference():
    with pytest.raises(ConfigError) as info:
        build_inventory({"stage-a": ["Bad/Name"], "stage-b": ["also bad"]}, None)
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("stage-a:")


def test_shipped_runtime_list_parses_and_holds_notebooks():
    groups = runtime_images()
    assert "notebook" in groups and len(groups["notebook"]) >= 4
    for images in groups.values():
        for image in images:
            naming.parse(image)


# --- upstream manifests: the inventory against the catalog and an independent walk ----------


def _upstream_files():
    catalog = json.loads((UPSTREAM / "catalog.json").read_text())
    return [f for f in catalog["files"] if f.get("objects") and f["parse"].startswith("pyyaml")]


def _independent_images(obj) -> set[str]:
    """Every string under a key named "image", anywhere (CRD schemas excluded)."""
    found = set()
    if obj.get("kind") == "CustomResourceDefinition":
        return found
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.add(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


@pytest.mark.parametrize("entry", _upstream_files(), ids=lambda f: f["local_path"])
def test_upstream_manifest_images_all_found(entry):
    objects = load_documents((UPSTREAM / entry["local_path"]).read_text())
    found = images_in_objects(objects)
    independent = set().union(*(_independent_images(o) for o in objects)) if objects else set()
    catalogued = set(entry["images"]) | set(entry.get("images_in_args", []))
    assert independent <= found
    assert catalogued <= found
    extra = found - independent
    assert all(not any(image == v for o in objects for v in _independent_images(o))
               for image in extra)


def test_argo_executor_image_in_args_is_found():
    path = UPSTREAM / "cube-studio/v2026.03.01/install/kubernetes/argo/install-3.4.3-all.yaml"
    assert "ccr.ccs.tencentyun.com/cube-argoproj/argoexec:v3.4.3" in \
        images_in_objects(load_documents(path.read_text()))


def test_rewrite_of_upstream_leaves_no_original_reference():
    site = load_site(EXAMPLE_SITE)
    objects = [o for entry in _upstream_files()
               for o in load_documents((UPSTREAM / entry["local_path"]).read_text())
               if o.get("kind") != "CustomResourceDefinition"]  # no images; megabytes each
    originals = images_in_objects(objects)
    rewritten = rewrite_images(objects, site)
    after = images_in_objects(rewritten)
    assert after and all(naming.parse(i).registry == "harbor.example.com" for i in after)
    dumped = json.dumps(rewritten)
    # A bare name such as "nginx" also appears as a label value: look for tagged or
    # pathed references only, anywhere in the text (arguments included).
    leftovers = [image for image in originals if ("/" in image or ":" in image)
                 and image in dumped]
    assert leftovers == []


# --- the site's inventory over the real render ------------------------------------------------


@pytest.fixture(scope="module")
def example(images_upstream_cache):
    from cubeinstall.stages.images import site_inventory
    from cubeinstall.stages.rendered import all_objects

    site = load_site(EXAMPLE_SITE)
    return site, all_objects(source_site(site)), site_inventory(site)


def test_site_inventory_covers_every_rendered_object_and_the_runtime_list(example):
    site, rendered, inventory = example
    sources = {use.source for use in inventory}
    for stage, objects in rendered.items():
        for obj in objects:
            for image in _independent_images(obj):
                assert str(naming.parse(image)) in sources, f"{stage}: {image} missing"
    for group, images in runtime_images().items():
        for image in images:
            use = next(u for u in inventory if u.source == str(naming.parse(image)))
            assert RUNTIME_PREFIX + group in use.used_by
    assert all(u.target.startswith("harbor.example.com/cube-studio/") for u in inventory)


def test_rendered_objects_rewritten_point_only_at_the_site_registry(example):
    site, rendered, _ = example
    for stage, objects in rendered.items():
        for image in images_in_objects(rewrite_images(objects, site)):
            assert naming.parse(image).registry == "harbor.example.com", (stage, image)
