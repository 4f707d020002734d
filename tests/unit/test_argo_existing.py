"""components.kubeflow.mode existing: what the running Argo must be, what is still rendered,
where the gateway's /argo/ route goes, and the site rules of components.kubeflow.server."""

from __future__ import annotations

import copy

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.core.yamlio import load_documents
from cubeinstall.kube import argo
from cubeinstall.kube.controllers import kept_by_existing
from cubeinstall.site.loader import load_site
from cubeinstall.stages import gateway, kubeflow
from tests.helpers import example_site_data, write_site
from tests.upstream_install import INSTALL


def site_with(tmp_path, **kubeflow_settings):
    data = example_site_data()
    data.setdefault("components", {})["kubeflow"] = kubeflow_settings
    return load_site(write_site(tmp_path, data))


@pytest.fixture(scope="module")
def start_sh():
    """start.sh's Argo 3.4.3 (argo/install-3.4.3-all.yaml), available."""
    objects = load_documents((INSTALL / "argo/install-3.4.3-all.yaml").read_text())
    [controller] = [o for o in objects if o["kind"] == "Deployment"
                    and o["metadata"]["name"] == "workflow-controller"]
    [config] = [o for o in objects if o["kind"] == "ConfigMap"]
    controller = {**controller, "status": {"availableReplicas": 1}}
    return objects, controller, config


def test_start_sh_argo_runs_the_platforms_workflows(start_sh):
    _, controller, config = start_sh
    assert argo.version(controller) == (3, 4)
    assert argo.config_name(controller) == ("kubeflow", "workflow-controller-configmap")
    assert argo.problems([controller], config) == []


def changed(controller, args=None, image=None, status=None):
    controller = copy.deepcopy(controller)
    container = controller["spec"]["template"]["spec"]["containers"][0]
    if args is not None:
        container["args"] = args
    if image is not None:
        container["image"] = image
    if status is not None:
        controller["status"] = status
    return controller


@pytest.mark.parametrize("edit, config_edit, expected", [
    ({"image": "quay.io/argoproj/workflow-controller:v3.3.9"}, None, "runs Argo 3.3"),
    ({"image": "quay.io/argoproj/workflow-controller:v5.0.0"}, None, "runs Argo 5.0"),
    ({"image": "quay.io/argoproj/workflow-controller:latest"}, None, "an unknown version"),
    ({"status": {}}, None, "no available replica"),
    ({"args": ["--namespaced", "--managed-namespace", "jobs"]}, None,
     "watches only namespace jobs"),
    ({"args": ["--namespaced"]}, None, "watches only its own namespace"),
    ({}, {"instanceID": "team-a"}, "sets instanceID 'team-a'"),
    ({}, {"artifactRepository": ""}, "names no artifactRepository"),
    ({"args": ["--configmap=argo-settings"]}, "absent",
     "ConfigMap kubeflow/argo-settings, the controller's configuration, does not exist"),
])
def test_an_argo_the_platform_cannot_use_is_refused_with_the_reason(start_sh, edit, config_edit,
                                                                     expected):
    _, controller, config = start_sh
    config = None if config_edit == "absent" else {
        **config, "data": {**config["data"], **(config_edit or {})}}
    [problem] = argo.problems([changed(controller, **edit)], config)
    assert expected in problem and "kubeflow/" in problem  # the object named


def test_watching_pipeline_namespaced_is_enough(start_sh):
    _, controller, config = start_sh
    pipeline = changed(controller, args=["--managed-namespace=pipeline", "--namespaced"])
    assert argo.problems([pipeline], config) == []
    assert argo.version(changed(controller, image="mirror/x/workflow-controller:v4.1.3")) == (4, 1)


def test_none_or_two_controllers_are_refused(start_sh):
    _, controller, config = start_sh
    assert "no Argo workflow-controller runs" in argo.problems([], None)[0]
    other = copy.deepcopy(controller)
    other["metadata"]["namespace"] = "argo"
    assert "kubeflow/workflow-controller, Deployment argo/workflow-controller" in \
        argo.problems([controller, other], config)[0]


def argo_server(namespace="argo", target_port="web"):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "argo-server", "namespace": namespace},
                  "spec": {"template": {"metadata": {"labels": {"app": "argo-server"}},
                                        "spec": {"containers": [{
                                            "name": "argo-server",
                                            "image": "quay.io/argoproj/argocli:v3.5.8",
                                            "ports": [{"name": "web", "containerPort": 2746}]}]}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "argo-ui", "namespace": namespace},
               "spec": {"selector": {"app": "argo-server"},
                        "ports": [{"name": "metrics", "port": 9090, "targetPort": 9090},
                                  {"name": "web", "port": 80, "targetPort": target_port}]}}
    return deployment, service


@pytest.mark.parametrize("target_port", ["web", 2746])
def test_the_argo_server_is_found_through_its_service(target_port):
    deployment, service = argo_server(target_port=target_port)
    elsewhere = {**service, "metadata": {"name": "argo-ui", "namespace": "other"}}
    assert argo.servers([deployment], [service, elsewhere]) == [argo.Server("argo", "argo-ui", 80)]
    assert argo.servers([], [service]) == []  # start.sh runs none


def test_existing_mode_renders_no_argo_but_what_the_platform_needs(tmp_path, seeded_cache):
    installed = kubeflow.render(site_with(tmp_path))
    kept = kubeflow.render(site_with(tmp_path, mode="existing"))
    assert {o["metadata"].get("namespace") for o in installed} >= {"argo"}
    assert not [o for o in kept if o["metadata"].get("namespace") == "argo"
                or o["kind"] in ("PriorityClass", "Namespace")
                or o["metadata"]["name"].endswith(".argoproj.io")]
    names = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in kept}
    assert {("ServiceAccount", "pipeline", "pipeline-runner"), ("Deployment", "kubeflow", "minio"),
            ("Secret", "pipeline", "my-minio-cred"), ("Role", "pipeline", "argo-executor"),
            ("Deployment", "kubeflow", "training-operator")} <= names


def argo_route(objects):
    [vs] = [o for o in objects if o["kind"] == "VirtualService"
            and o["metadata"]["name"] == gateway.EXTRA_VIRTUAL_SERVICE]
    return [http for http in vs["spec"]["http"] if http["match"][0]["uri"]["prefix"] == "/argo/"]


def test_the_gateway_routes_argo_to_ours_the_found_server_or_nowhere(tmp_path, seeded_cache):
    [ours] = argo_route(gateway.render(site_with(tmp_path)))
    assert ours["route"][0]["destination"] == {"host": "argo-server.argo.svc.cluster.local",
                                               "port": {"number": 2746}}
    found = site_with(tmp_path, mode="existing", server="argo/argo-ui:80")
    [theirs] = argo_route(gateway.render(found))
    assert theirs["route"][0]["destination"] == {"host": "argo-ui.argo.svc.cluster.local",
                                                 "port": {"number": 80}}
    assert argo_route(gateway.render(site_with(tmp_path, mode="existing"))) == []


@pytest.mark.parametrize("settings, expected", [
    ({"server": "argo/argo-server:2746"}, "components.kubeflow.server names the server"),
    ({"mode": "existing", "server": "argo-server:2746"}, "is not namespace/service:port"),
])
def test_the_server_setting_is_checked(tmp_path, settings, expected):
    with pytest.raises(ConfigError) as error:
        site_with(tmp_path, **settings)
    assert expected in str(error.value) + " ".join(error.value.problems or [])


def test_the_running_argo_and_what_it_runs_with_are_no_leftovers(tmp_path, start_sh):
    objects, controller, _ = start_sh
    leftovers = [o for o in objects if o["kind"] not in ("CustomResourceDefinition",)]
    kept = kept_by_existing(site_with(tmp_path, mode="existing"), leftovers)
    assert {"Deployment kubeflow/workflow-controller", "ServiceAccount kubeflow/argo",
            "ConfigMap kubeflow/workflow-controller-configmap", "RoleBinding kubeflow/argo-binding",
            "ClusterRoleBinding argo-binding", "ClusterRole argo-cluster-role"} <= set(kept)
    assert kept_by_existing(site_with(tmp_path, mode="replace"), leftovers) == {}
