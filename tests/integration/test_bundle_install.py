"""From download to cluster: a tampered file installs nothing; a loaded bundle installs offline."""

from __future__ import annotations

import shutil

import pytest

from cubeinstall.upstream import catalog
from tests.helpers import json_events
from tests.servers.http_upstream import component_site

pytestmark = pytest.mark.cluster

STAGE_LABEL = "cubeinstall.io/stage"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CUBEINSTALL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def owned(kube_cluster, stage: str) -> dict[str, str]:
    """kind/namespace/name -> resourceVersion of what cubeinstall applied for a stage."""
    from kubernetes import client

    selector = f"{STAGE_LABEL}={stage}"
    with kube_cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        found = [*apps.list_stateful_set_for_all_namespaces(label_selector=selector).items,
                 *core.list_config_map_for_all_namespaces(label_selector=selector).items,
                 *core.list_service_account_for_all_namespaces(label_selector=selector).items,
                 *client.RbacAuthorizationV1Api(api).list_cluster_role(
                     label_selector=selector).items]
    return {f"{o.kind}/{o.metadata.namespace}/{o.metadata.name}": o.metadata.resource_version
            for o in found}


def test_a_tampered_upstream_file_installs_nothing(cubeinstall_cli, isolated, kube_cluster,
                                                   upstream_dir, http_server, monkeypatch):
    site = component_site(isolated, kube_cluster.kubeconfig)
    path = "example/config/default/frameworkcontroller.yaml"
    mirror = isolated / "mirror"
    shutil.copytree(upstream_dir, mirror)
    target = mirror / "frameworkcontroller" / "v1.0.1" / path
    target.write_bytes(target.read_bytes() + b"\n# one more line\n")
    monkeypatch.setenv(catalog.MIRROR_ENV, http_server(mirror).url)
    before = owned(kube_cluster, "frameworkcontroller")

    code, out, _ = cubeinstall_cli("bundle", "fetch", "-c", str(site))
    assert code == 1 and "sha256 mismatch" in out and path in out

    code, out, _ = cubeinstall_cli("stage", "frameworkcontroller", "-c", str(site))
    assert code == 1
    [failure] = [e for e in json_events(out) if e["event"] == "error"]
    assert "not in the local cache" in failure["message"] and "bundle fetch" in failure["hint"]
    assert owned(kube_cluster, "frameworkcontroller") == before


def test_bundle_create_then_load_installs_with_the_server_stopped(
        cubeinstall_cli, isolated, kube_cluster, upstream_dir, http_server, monkeypatch):
    site = component_site(isolated, kube_cluster.kubeconfig)
    server = http_server(upstream_dir)
    monkeypatch.setenv(catalog.MIRROR_ENV, server.url)
    assert cubeinstall_cli("bundle", "fetch", "-c", str(site))[0] == 0
    archive = isolated / "offline.tar.gz"
    assert cubeinstall_cli("bundle", "create", str(archive), "-c", str(site))[0] == 0
    server.stop()  # from here on no HTTP server exists

    monkeypatch.setenv("CUBEINSTALL_CACHE", str(isolated / "air-gapped-cache"))
    code, out, _ = cubeinstall_cli("stage", "istio", "-c", str(site))
    assert code == 1 and "bundle fetch" in out  # the empty cache says what to do

    assert cubeinstall_cli("bundle", "load", str(archive), "-c", str(site))[0] == 0
    assert cubeinstall_cli("stage", "namespaces", "-c", str(site))[0] == 0
    code, out, _ = cubeinstall_cli("stage", "istio", "-c", str(site))
    assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
    from kubernetes import client

    with kube_cluster.api_client() as api:
        istiod = client.AppsV1Api(api).read_namespaced_deployment("istiod", "istio-system")
        gateway = client.CoreV1Api(api).read_namespaced_service("istio-ingressgateway",
                                                                "istio-system")
    assert any(c.type == "Available" and c.status == "True" for c in istiod.status.conditions)
    assert {(p.port, p.target_port) for p in gateway.spec.ports} >= {(80, 8080), (8080, 8081)}
