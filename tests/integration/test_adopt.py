"""`cubeinstall adopt` on a site cube-studio's start.sh installed, on the real control plane.

start.sh's steps for namespaces, RBAC, dashboards, volumes, Volcano, Istio 1.15, Argo and
the training-operator are run with the kubectl built for the tests (so managedFields are
kubectl's own), one Deployment and one binding as an older start.sh left them. Then:
adopt refuses the second Volcano and Argo and the Istio jump until site.yaml chooses,
plans, takes over; `all` converges, a second `all` changes nothing, every claim keeps
its volume, one Volcano, one Argo and one istiod run, no leftover stays.
"""

from __future__ import annotations

import pytest
import yaml

from cubeinstall.core.yamlio import dump_documents, load_documents
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubectl import kubectl
from tests.helpers import CUBE_INSTALL, json_events, run_cli
from tests.servers.http_upstream import component_site
from tests.start_sh import claims, create_namespaces_and_secrets

pytestmark = pytest.mark.cluster

STAGES = ("namespaces", "dashboard", "istio", "kubeflow", "volcano", "pv-pvc")
VOLUME_FILES = ("pv-pvc-infra.yaml", "pv-pvc-jupyter.yaml", "pv-pvc-automl.yaml",
                "pv-pvc-pipeline.yaml", "pv-pvc-service.yaml")
OLD_CONTAINER = "old-sidecar"
BINDING = "kubernetes-dashboard-cluster"
OLD_ROLE = "view"  # a role every cluster has


def install_like_start_sh(kubeconfig, tmp_path) -> str:
    """start.sh's commands for these parts; returns the Deployment given an old container."""
    create_namespaces_and_secrets(kubeconfig)
    kubectl(kubeconfig, "apply", "-f", str(CUBE_INSTALL / "sa-rbac.yaml"))
    # an older start.sh: the user dashboard's Deployment had a second container
    user = load_documents((CUBE_INSTALL / "dashboard/v2.6.1-user.yaml").read_text())
    deployment = next(d for d in user if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"].append({"name": OLD_CONTAINER, "image": "busybox:1.36"})
    old = tmp_path / "v2.6.1-user.yaml"
    old.write_text(dump_documents(user))
    # ... and bound the cluster dashboard to another role: roleRef cannot change in place
    cluster = load_documents((CUBE_INSTALL / "dashboard/v2.6.1-cluster.yaml").read_text())
    binding = next(d for d in cluster if d["kind"] == "ClusterRoleBinding"
                   and d["metadata"]["name"] == BINDING)
    binding["roleRef"]["name"] = OLD_ROLE
    old_cluster = tmp_path / "v2.6.1-cluster.yaml"
    old_cluster.write_text(dump_documents(cluster))
    kubectl(kubeconfig, "apply", "-f", str(old_cluster))
    kubectl(kubeconfig, "apply", "-f", str(old))
    for name in VOLUME_FILES:
        kubectl(kubeconfig, "create", "-f", str(CUBE_INSTALL / name))
    kubectl(kubeconfig, "apply", "-f", str(CUBE_INSTALL / "volcano/volcano-development.yaml"))
    for name in ("istio/install-crd.yaml", "istio/install-1.15.0.yaml",
                 "argo/minio-pv-pvc-hostpath.yaml", "argo/pipeline-runner-rolebinding.yaml",
                 "argo/install-3.4.3-all.yaml", "kubeflow/sa-rbac.yaml"):
        kubectl(kubeconfig, "apply", "-f", str(CUBE_INSTALL / name))
    kubectl(kubeconfig, "apply", "-k",
            str(CUBE_INSTALL / "kubeflow/train-operator/manifests/overlays/standalone"))
    return f"{deployment['metadata'].get('namespace')}/{deployment['metadata']['name']}"


def test_adopt_a_start_sh_site_then_all_converges(tmp_path, capsys, monkeypatch):
    from kubernetes import client

    with ControlPlane(tmp_path / "cluster") as cluster:
        dashboard = install_like_start_sh(cluster.kubeconfig, tmp_path)
        site = component_site(tmp_path, cluster.kubeconfig)
        monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
        with cluster.api_client() as api:
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            before = claims(core)
            assert len(before) >= 5 and all(name for name, _, _ in before.values())

            # without adopt: the errors point to it, and --force does not help with roleRef
            state_only = ["--only", "dashboard", "--ignore", "nodes-reachable"]
            code, out, err = run_cli(["all", "-c", str(site), *state_only], capsys)
            assert code == 1 and "kubectl-client-side-apply" in err, out + err
            assert "cubeinstall adopt" in err and "--force" not in err, err
            code, out, err = run_cli(["all", "--force", "-c", str(site), *state_only], capsys)
            assert code == 1 and f"ClusterRoleBinding {BINDING}: cannot be changed in place " \
                "(roleRef)" in err, out + err
            assert "cubeinstall adopt" in err and "--force does not help" in err, err

            # a second Volcano and Argo (start.sh's, in kubeflow) and an istiod 15 minor
            # versions behind are refused until site.yaml chooses
            code, out, err = run_cli(["adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 2, out + err
            assert "Volcano already runs (Deployment kubeflow/" in err
            assert "components.volcano.mode: existing" in err and "replace" in err
            assert "Argo workflow-controller already runs (Deployment " \
                "kubeflow/workflow-controller)" in err, err
            assert "Deployment istio-system/istiod runs Istio 1.15" in err
            assert "1.15 -> 1.17 -> 1.19 -> 1.21 -> 1.23 -> 1.25 -> 1.27 -> 1.29 -> 1.30" in err

            data = yaml.safe_load(site.read_text())
            data["components"].update(volcano={"mode": "replace"}, kubeflow={"mode": "replace"},
                                      istio={"mode": "existing"})
            site.write_text(yaml.safe_dump(data))
            code, out, err = run_cli(["--json", "adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 0, out + err
            planned = {e["target"]: e for e in json_events(out) if e["event"] == "change"}
            # kubectl's objects get a decision each; the dry run wrote nothing
            binding = planned[f"ClusterRoleBinding {BINDING}"]
            assert binding["detail"].startswith("re-create: roleRef cannot change in place"), \
                binding
            assert "lose these rights" in binding["detail"]  # what re-creating costs
            old = planned[f"Deployment {dashboard}"]
            assert old["detail"].startswith("take-over-with-changes") and OLD_CONTAINER in \
                old["detail"], old
            assert planned["Deployment kubeflow/volcano-scheduler"]["action"] == "delete"
            # start.sh's MinIO sets env values where ours reads a Secret: merged, refused
            assert "instead of merging" in planned["Deployment kubeflow/minio"]["detail"]
            for namespace, name in before:
                assert planned[f"PersistentVolumeClaim {namespace}/{name}"]["detail"].startswith(
                    "take-over"), name
            live = apps.read_namespaced_deployment(dashboard.split("/")[1], dashboard.split("/")[0])
            assert len(live.spec.template.spec.containers) == 2
            rbac = client.RbacAuthorizationV1Api(api)
            assert rbac.read_cluster_role_binding(BINDING).role_ref.name == OLD_ROLE

            code, out, err = run_cli(["--json", "adopt", "-c", str(site)], capsys)
            assert code == 0, out + err
            only = [word for stage in STAGES for word in ("--only", stage)]
            # no nodes to reach over SSH here: the shared storage is not what this test checks
            only += ["--ignore", "storage-mounted", "--ignore", "nodes-reachable"]
            code, out, err = run_cli(["--json", "all", "-c", str(site), *only], capsys)
            assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
            code, out, err = run_cli(["--json", "all", "--force", "-c", str(site), *only], capsys)
            assert code == 0, out + err
            changed = [e for e in json_events(out) if e["event"] == "change"
                       and e["action"] != "unchanged"]
            assert changed == [], changed  # a second run changes nothing

            assert rbac.read_cluster_role_binding(BINDING).role_ref.name != OLD_ROLE
            # the old container is gone: its field was kubectl's, now ours, and we dropped it
            live = apps.read_namespaced_deployment(dashboard.split("/")[1], dashboard.split("/")[0])
            assert OLD_CONTAINER not in [c.name for c in live.spec.template.spec.containers]
            # every claim kept its volume (the same object: not re-created)
            after = claims(core)
            assert {key: after[key] for key in before} == before
            # one Volcano: start.sh's in kubeflow removed, ours in volcano-system
            schedulers = [d for d in apps.list_deployment_for_all_namespaces().items
                          if any("vc-scheduler" in c.image for c in d.spec.template.spec.containers)]
            assert [d.metadata.namespace for d in schedulers] == ["volcano-system"]
            controllers = [d for d in apps.list_deployment_for_all_namespaces().items
                           if any("workflow-controller" in c.image
                                  for c in d.spec.template.spec.containers)]
            assert [d.metadata.namespace for d in controllers] == ["argo"]
            istiods = [d for d in apps.list_deployment_for_all_namespaces().items
                       if any("pilot" in c.image for c in d.spec.template.spec.containers)]
            assert [d.spec.template.spec.containers[0].image for d in istiods] == [
                "istio/pilot:1.15.0"]  # kept as it runs (mode existing)
            # nothing of start.sh is left: adopt has nothing more to do
            code, out, err = run_cli(["--json", "adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 0, out + err
            [plan] = [e for e in json_events(out) if e["event"] == "adopt-plan"]
            assert plan["changes"] == 0, [e for e in json_events(out) if e["event"] == "change"]
