"""The platform's pipelines: what its Workflows need from Argo, equal to cube-studio's argo/ files.

view_pipeline.py writes Workflows with ``serviceAccountName: pipeline-runner`` and
``archiveLogs: true`` in namespace pipeline; view_workflow.py reads their logs from MinIO
at config.py's MINIO_HOST with upstream's credentials.
"""

from __future__ import annotations

import ast
import base64
import warnings

import pytest

from cubeinstall.core.yamlio import load_documents
from cubeinstall.site.loader import load_site
from cubeinstall.stages import kubeflow
from tests.helpers import EXAMPLE_SITE
from tests.upstream_install import INSTALL


def by_key(objects):
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}


@pytest.fixture(scope="module")
def upstream():
    return by_key(load_documents((INSTALL / "argo/install-3.4.3-all.yaml").read_text())
                  + load_documents((INSTALL / "argo/minio-pv-pvc-hostpath.yaml").read_text()))


@pytest.fixture(scope="module")
def site():
    return load_site(EXAMPLE_SITE)


@pytest.fixture(scope="module")
def ours(site):
    return by_key(kubeflow.render(site))


def test_the_controller_has_upstreams_artifact_repository_and_settings(upstream, ours):
    theirs = upstream[("ConfigMap", "kubeflow", "workflow-controller-configmap")]["data"]
    mine = ours[("ConfigMap", "argo", "workflow-controller-configmap")]["data"]
    assert {key: mine.get(key) for key in theirs} == theirs
    assert "archiveLogs: true" in mine["artifactRepository"]


def test_workflows_find_the_minio_credentials_in_their_namespace(upstream, ours):
    theirs = upstream[("Secret", "pipeline", "my-minio-cred")]["stringData"]
    for namespace in ("pipeline", "kubeflow"):  # workflows', and MinIO's own
        data = ours[("Secret", namespace, "my-minio-cred")]["data"]
        assert {key: base64.b64decode(value).decode() for key, value in data.items()} == theirs


def test_minio_is_where_config_py_and_the_artifact_repository_look(ours):
    config = (INSTALL / "cube/overlays/config/config.py").read_text()
    with warnings.catch_warnings():  # upstream's file has invalid escapes in plain strings
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(config)
    [minio_host] = [node.value.value for node in tree.body
                    if isinstance(node, ast.Assign) and node.targets[0].id == "MINIO_HOST"]
    host, port = minio_host.split(":")
    service, namespace = host.split(".")
    ports = {p["port"] for p in ours[("Service", namespace, service)]["spec"]["ports"]}
    assert int(port) in ports
    repository = ours[("ConfigMap", "argo", "workflow-controller-configmap")]["data"]
    assert f"endpoint: {minio_host}" in repository["artifactRepository"]


def test_minio_runs_as_upstreams_reading_its_credentials_from_a_secret(upstream, ours):
    theirs = upstream[("Deployment", "kubeflow", "minio")]["spec"]["template"]["spec"]
    mine = ours[("Deployment", "kubeflow", "minio")]["spec"]["template"]["spec"]
    [their_container], [my_container] = theirs["containers"], mine["containers"]
    for field in ("args", "ports", "volumeMounts", "lifecycle", "livenessProbe", "readinessProbe"):
        assert my_container[field] == their_container[field], field
    assert mine["volumes"] == theirs["volumes"]
    assert [env["name"] for env in my_container["env"]] == [env["name"] for env in their_container["env"]]
    assert all("value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == "my-minio-cred"
               for env in my_container["env"])


def test_minios_volume_is_upstreams_under_the_sites_mount_point(upstream, ours, site):
    theirs = upstream[("PersistentVolume", None, "kubeflow-minio-pv")]
    mine = ours[("PersistentVolume", None, "kubeflow-minio-pv")]
    assert mine["spec"]["hostPath"]["path"] == site.storage.mount_point.rstrip("/") + "/kubeflow/minio"
    assert mine["spec"]["claimRef"]["name"] == "minio-pvc"
    assert ours[("PersistentVolumeClaim", "kubeflow", "minio-pvc")]["spec"] == \
        upstream[("PersistentVolumeClaim", "kubeflow", "minio-pvc")]["spec"]
    assert mine["metadata"]["labels"] == theirs["metadata"]["labels"]


def test_the_workflows_service_account_exists_with_upstreams_rights(ours):
    assert ("ServiceAccount", "pipeline", "pipeline-runner") in ours
    binding = ours[("ClusterRoleBinding", None, "pipeline-runner-binding")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner",
                                    "namespace": "pipeline"}]
