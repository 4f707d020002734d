"""adopt, beyond a start.sh site's first take-over, on the real control plane:

- start.sh's Argo 3.4.3 kept (components.kubeflow.mode existing): verified, nothing of
  Argo installed, the gateway's /argo/ route to the argo-server Service found; a part of
  the site (--only/--skip); an Argo the platform cannot use refused with the reason;
- a Released volume with reclaimPolicy Retain whose source must change is re-created
  and its claim binds again; a Bound one is refused with nothing changed;
- a site an earlier cubeinstall installed (before the parity work: other volume names,
  typed hostPaths, the dashboard binding's other roleRef) converges, no claim loses its
  volume.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from cubeinstall.core.yamlio import load_documents
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.objects import desired_object
from tests.cluster.controlplane import ControlPlane
from tests.helpers import CUBE_INSTALL, json_events, run_cli
from tests.integration.test_adopt import claims, kubectl
from tests.servers.http_upstream import component_site

pytestmark = pytest.mark.cluster

EARLIER = Path(__file__).parent / "data" / "earlier-cubeinstall"
# no SSH nodes here: the shared storage and the hosts are not what these tests check
NO_NODES = ["--ignore", "storage-mounted", "--ignore", "nodes-reachable"]


def set_components(site: Path, **components) -> None:
    data = yaml.safe_load(site.read_text())
    data["components"].update(components)
    site.write_text(yaml.safe_dump(data))


def changes(out: str) -> dict[str, dict]:
    return {e["target"]: e for e in json_events(out) if e["event"] == "change"}


def changed(out: str) -> list[dict]:
    return [e for e in json_events(out) if e["event"] == "change" and e["action"] != "unchanged"]


def wait_for(what: str, check, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {seconds}s"
        time.sleep(0.5)


def argo_server_manifest(tmp_path: Path) -> Path:
    """An argo-server next to start.sh's controller (start.sh runs none): as the argo
    project ships it, Service argo-server port 2746 to the pods' port ``web``."""
    labels = {"app": "argo-server"}
    objects = [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "argo-server", "namespace": "kubeflow"},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "nodeSelector": {"kubeflow": "true"}, "serviceAccountName": "argo-server",
                      "containers": [{"name": "argo-server", "args": ["server"],
                                      "image": "quay.io/argoproj/argocli:v3.4.3",
                                      "ports": [{"name": "web", "containerPort": 2746}]}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "argo-server", "namespace": "kubeflow"},
         "spec": {"selector": labels,
                  "ports": [{"name": "web", "port": 2746, "targetPort": "web"}]}},
    ]
    path = tmp_path / "argo-server.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path


def argo_route(custom) -> list[dict]:
    vs = custom.get_namespaced_custom_object("networking.istio.io", "v1", "kubeflow",
                                             "virtualservices", "cube-studio")
    return [route["destination"] for http in vs["spec"]["http"]
            if http["match"][0]["uri"]["prefix"] == "/argo/" for route in http["route"]]


def test_start_sh_argo_is_kept_verified_and_routed(tmp_path, capsys, monkeypatch):
    from kubernetes import client

    with ControlPlane(tmp_path / "cluster") as cluster:
        config = cluster.kubeconfig
        for namespace in ("kubeflow", "pipeline"):
            kubectl(config, "create", "ns", namespace)
        for name in ("argo/minio-pv-pvc-hostpath.yaml", "argo/pipeline-runner-rolebinding.yaml",
                     "argo/install-3.4.3-all.yaml"):
            kubectl(config, "apply", "-f", str(CUBE_INSTALL / name))
        kubectl(config, "apply", "-f", str(argo_server_manifest(tmp_path)))
        site = component_site(tmp_path, config)
        monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
        with cluster.api_client() as api:
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            wait_for("start.sh's workflow-controller available", lambda: apps.read_namespaced_deployment(
                "workflow-controller", "kubeflow").status.available_replicas)
            controller_uid = apps.read_namespaced_deployment("workflow-controller",
                                                             "kubeflow").metadata.uid

            code, out, err = run_cli(["adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 2 and "components.kubeflow.mode: existing (keep the running one)" \
                in err, out + err

            # replace removes the old controller as a leftover: never in a part of the site
            set_components(site, kubeflow={"mode": "replace"})
            code, out, err = run_cli(["adopt", "--dry-run", "--only", "namespaces,kubeflow",
                                      "--skip", "namespaces", "-c", str(site)], capsys)
            assert code == 2 and "components.kubeflow.mode is replace, and Deployment " \
                "kubeflow/workflow-controller would stay" in err, out + err

            set_components(site, kubeflow={"mode": "existing"})
            code, out, err = run_cli(["--json", "adopt", "--dry-run", "--only", "kubeflow",
                                      "-c", str(site)], capsys)
            assert code == 0, out + err
            planned = changes(out)
            assert planned["ServiceAccount pipeline/pipeline-runner"]["detail"].startswith(
                "take-over")
            assert "Deployment kubeflow/minio" in planned
            assert not [t for t, e in planned.items() if e["action"] == "delete"], planned
            assert planned["Deployment kubeflow/workflow-controller"]["detail"] == (
                "keep: the running Argo stays (components.kubeflow.mode: existing)")
            assert not [t for t in planned if t.startswith("VirtualService")]  # not selected

            code, out, err = run_cli(["--json", "adopt", "-c", str(site)], capsys)
            assert code == 0, out + err
            only = ["--only", "namespaces,istio,kubeflow,gateway", *NO_NODES]
            code, out, err = run_cli(["--json", "all", "-c", str(site), *only], capsys)
            assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
            kept = changes(out)["Deployment kubeflow/workflow-controller"]
            assert "existing Argo" in kept["detail"] and \
                "the gateway routes /argo/ to kubeflow/argo-server:2746" in kept["detail"], kept
            assert argo_route(custom) == [{"host": "argo-server.kubeflow.svc.cluster.local",
                                           "port": {"number": 2746}}]
            controllers = [d for d in apps.list_deployment_for_all_namespaces().items
                           if any("workflow-controller" in c.image
                                  for c in d.spec.template.spec.containers)]
            assert [d.metadata.uid for d in controllers] == [controller_uid]  # one, start.sh's
            assert "argo" not in [n.metadata.name for n in core.list_namespace().items]
            code, out, err = run_cli(["--json", "all", "--force", "-c", str(site), *only], capsys)
            assert code == 0 and changed(out) == [], out + err
            # status --live compares with what `all` applies: the route to the server found
            assert_up_to_date(site, capsys, ("namespaces", "istio", "kubeflow", "gateway"))

            # an Argo the platform cannot use: refused with the reason, nothing changed
            kubectl(config, "patch", "configmap", "workflow-controller-configmap", "-n",
                    "kubeflow", "--type", "merge", "-p", '{"data": {"instanceID": "team-a"}}')
            code, out, err = run_cli(["all", "--force", "-c", str(site), "--only", "kubeflow",
                                      *NO_NODES], capsys)
            assert code == 1 and "components.kubeflow.mode is existing" in err and \
                "sets instanceID 'team-a'" in err, out + err


def assert_up_to_date(site: Path, capsys, stages: tuple[str, ...]) -> None:
    """`status --live` of the platform cluster says each stage last ran ok, from the inputs
    it has now, and has nothing pending (the others, never run here, may not be reached:
    the databases through MySQL's port-forward; the command then exits 1)."""
    code, out, err = run_cli(["--json", "status", "--live", "--cluster", "main", "-c", str(site)],
                             capsys)
    status = {e["stage"]: e for e in json_events(out) if e["event"] == "stage-status"}
    seen = {stage: (status[stage]["result"], status[stage]["inputs"], status[stage]["pending"])
            for stage in stages}
    assert seen == {stage: ("ok", "unchanged", "0") for stage in stages}, (seen, err)
    # without --live no cluster is asked: the journal keeps what `all` found
    code, out, err = run_cli(["--json", "status", "--cluster", "main", "-c", str(site)], capsys)
    assert code == 0, err
    inputs = {e["stage"]: e["inputs"] for e in json_events(out) if e["event"] == "stage-status"}
    assert {stage: inputs[stage] for stage in stages} == {
        stage: "unchanged" for stage in stages}, (inputs, err)


def volume(name: str, claim: tuple[str, str], size: str, path: str, **host_path) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "capacity": {"storage": size},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "namespace": claim[0], "name": claim[1]},
                     "hostPath": {"path": path, **host_path},
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": ""}}


def claim(namespace: str, name: str, volume_name: str, size: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "resources": {"requests": {"storage": size}},
                     "volumeName": volume_name}}


def test_a_released_volume_is_re_created_and_a_bound_one_refused(tmp_path, capsys, monkeypatch):
    from kubernetes import client

    released = ("jupyter", "kubeflow-archives", "jupyter-kubeflow-archives")
    bound = ("infra", "infra-kubeflow", "infra-kubeflow")
    elsewhere = "/data/k8s/elsewhere"  # another directory than the site's
    with ControlPlane(tmp_path / "cluster") as cluster:
        config = cluster.kubeconfig
        # sizes as the site's (upstream's): a claim cannot shrink
        objects = [volume(released[2], released[:2], "500Gi",
                          "/data/k8s/kubeflow/pipeline/archives", type="DirectoryOrCreate"),
                   claim(*released, "500Gi"),
                   volume(bound[2], bound[:2], "1Gi", elsewhere), claim(*bound, "1Gi")]
        manifest = tmp_path / "volumes.yaml"
        manifest.write_text(yaml.safe_dump_all(objects))
        for namespace in ("jupyter", "infra"):
            kubectl(config, "create", "ns", namespace)
        kubectl(config, "create", "-f", str(manifest))
        site = component_site(tmp_path, config)
        monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            wait_for("both claims bound", lambda: all(
                core.read_namespaced_persistent_volume_claim(n, ns).status.phase == "Bound"
                for ns, n, _ in (released, bound)))
            core.delete_namespaced_persistent_volume_claim(released[1], released[0])
            wait_for("the volume Released", lambda: core.read_persistent_volume(
                released[2]).status.phase == "Released")
            old = core.read_persistent_volume(released[2])
            before = {name: core.read_persistent_volume(name).metadata.resource_version
                      for name in (released[2], bound[2])}

            # the Bound volume's source would change: refused, nothing changes
            code, out, err = run_cli(["adopt", "-c", str(site)], capsys)
            assert code == 2, out + err
            assert f"PersistentVolume {bound[2]}: " in err and "cannot change and the volume " \
                "is Bound (reclaimPolicy Retain)" in err, err
            assert "volumes.<claim>.path" in err
            assert {name: core.read_persistent_volume(name).metadata.resource_version
                    for name in before} == before

            # the site names the live path: the Bound one is taken over, the Released re-created
            data = yaml.safe_load(site.read_text())
            data["volumes"] = {bound[1]: {"path": elsewhere}}
            site.write_text(yaml.safe_dump(data))
            code, out, err = run_cli(["--json", "adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 0, out + err
            plan = changes(out)[f"PersistentVolume {released[2]}"]
            # (kubectl set hostPath.type, ours does not: the next apply would remove it)
            assert plan["action"] == "run" and plan["detail"].startswith("re-create: ") and \
                "cannot change in place" in plan["detail"] and \
                "the files on the storage stay" in plan["detail"], plan
            assert changes(out)[f"PersistentVolume {bound[2]}"]["detail"].startswith("take-over")
            code, out, err = run_cli(["--json", "adopt", "-c", str(site)], capsys)
            assert code == 0, out + err
            new = core.read_persistent_volume(released[2])
            assert new.metadata.uid != old.metadata.uid
            assert old.spec.host_path.type == "DirectoryOrCreate" and not new.spec.host_path.type
            assert new.spec.host_path.path == old.spec.host_path.path

            only = ["--only", "namespaces,pv-pvc", *NO_NODES]
            code, out, err = run_cli(["--json", "all", "-c", str(site), *only], capsys)
            assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
            wait_for("the claim bound again", lambda: core.read_namespaced_persistent_volume_claim(
                released[1], released[0]).status.phase == "Bound")
            again = core.read_namespaced_persistent_volume_claim(released[1], released[0])
            assert again.spec.volume_name == released[2]
            kept = core.read_namespaced_persistent_volume_claim(bound[1], bound[0])
            assert kept.spec.volume_name == bound[2] and kept.status.phase == "Bound"
            assert core.read_persistent_volume(bound[2]).spec.host_path.path == elsewhere
            code, out, err = run_cli(["--json", "all", "--force", "-c", str(site), *only], capsys)
            assert code == 0 and changed(out) == [], out + err


def install_as_earlier_cubeinstall(kubeconfig: Path,
                                   stages: tuple[str, ...] = ("pv-pvc", "mysql", "dashboard")) -> None:
    """The fixture's objects applied as that version did: server-side apply as field manager
    cubeinstall, labelled by stage (kube/objects.py desired_object, unchanged since then)."""
    kube = KubeClient.from_kubeconfig(kubeconfig)
    for stage in stages:
        for obj in load_documents((EARLIER / f"{stage}.yaml").read_text()):
            resource = kube.resolve(obj["apiVersion"], obj["kind"])
            kube.apply(desired_object(obj, stage, resource.namespaced), resource)


def test_a_site_an_earlier_cubeinstall_installed_converges(tmp_path, capsys, monkeypatch):
    from kubernetes import client

    with ControlPlane(tmp_path / "cluster") as cluster:
        site = component_site(tmp_path, cluster.kubeconfig)
        monkeypatch.setenv("CUBEINSTALL_STATE_DIR", str(tmp_path / "state"))
        code, out, err = run_cli(["--json", "all", "-c", str(site), "--only", "namespaces",
                                  *NO_NODES], capsys)
        assert code == 0, out + err
        install_as_earlier_cubeinstall(cluster.kubeconfig)
        with cluster.api_client() as api:
            core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
            wait_for("the earlier claims bound", lambda: all(
                c.status.phase == "Bound"
                for c in core.list_persistent_volume_claim_for_all_namespaces().items))
            before = claims(core)
            earlier = [o for name in ("pv-pvc.yaml", "mysql.yaml")
                       for o in load_documents((EARLIER / name).read_text())
                       if o["kind"] == "PersistentVolumeClaim"]
            assert len(before) == len(earlier) == 13, before

            only = ["--only", "namespaces,dashboard,pv-pvc,mysql", *NO_NODES]
            code, out, err = run_cli(["all", "-c", str(site), *only], capsys)
            assert code == 1 and "ClusterRoleBinding kubernetes-dashboard-cluster: cannot be " \
                "changed in place (roleRef)" in err and "cubeinstall adopt" in err, out + err

            code, out, err = run_cli(["--json", "adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 0, out + err
            planned = changes(out)
            assert planned["ClusterRoleBinding kubernetes-dashboard-cluster"]["detail"].startswith(
                "re-create: roleRef cannot change in place"), planned
            assert not [t for t in planned if "Persistent" in t], planned  # volumes stay as they are
            code, out, err = run_cli(["--json", "adopt", "-c", str(site)], capsys)
            assert code == 0, out + err

            code, out, err = run_cli(["--json", "all", "-c", str(site), *only], capsys)
            assert code == 0, [e for e in json_events(out) if e["event"] in ("error", "stage-failed")]
            code, out, err = run_cli(["--json", "all", "--force", "-c", str(site), *only], capsys)
            assert code == 0 and changed(out) == [], out + err
            # status --live compares with what `all` applies: each claim's volume as found
            assert_up_to_date(site, capsys, ("namespaces", "dashboard", "pv-pvc", "mysql"))

            assert rbac.read_cluster_role_binding(
                "kubernetes-dashboard-cluster").role_ref.name == "kubernetes-dashboard-cluster"
            after = claims(core)
            assert {key: after[key] for key in before} == before  # same volume object, bound
            names = {pv.metadata.name for pv in core.list_persistent_volume().items}
            assert "infra-kubeflow-global-pvc" in names and "infra-kubeflow-global-pv" not in names
            assert "infra-infra-kubeflow" in names and "infra-kubeflow" not in names
            # the mysql stage's own volume keeps its earlier source (type DirectoryOrCreate)
            assert core.read_persistent_volume("infra-mysql-pv").spec.host_path.type == \
                "DirectoryOrCreate"
            # claims the earlier version did not have got their volumes
            assert after[("automl", "kubeflow-archives")][2] == "Bound"
            code, out, err = run_cli(["--json", "adopt", "--dry-run", "-c", str(site)], capsys)
            assert code == 0 and [e for e in json_events(out) if e["event"] == "adopt-plan"][0][
                "changes"] == 0, out + err
