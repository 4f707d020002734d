"""The apply engine on the real control plane: idempotence, ordering, errors, prune, uninstall."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from cubeinstall.kube import wait
from cubeinstall.kube.apply import apply_objects, plan_objects, uninstall_stage
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.errors import ApplyFailed, NotFound
from cubeinstall.kube.objects import KEPT_LABEL, MANAGED_BY_LABEL, STAGE_LABEL
from tests.cluster.processes import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def kube(kube_cluster) -> KubeClient:
    return KubeClient(kube_cluster.api_client())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def configmap(namespace, name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


def deployment(namespace, name, replicas=2, node_selector=None):
    spec = {"containers": [{"name": "app", "image": f"example.com/{name}:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def workload_set(namespace: str) -> list[dict]:
    return [
        configmap(namespace, "settings", mode="prod", level="info"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": namespace},
         "stringData": {"password": "not-a-real-one"}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "runner", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "reader", "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        deployment(namespace, "web"),
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "db", "namespace": namespace},
         "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                  "template": {"metadata": {"labels": {"app": "db"}},
                               "spec": {"containers": [{"name": "db", "image": "mysql:8"}]}}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "init", "namespace": namespace},
         "spec": {"template": {"spec": {"restartPolicy": "Never",
                                        "containers": [{"name": "init", "image": "busybox"}]}}}},
    ]


def resource_versions(kube: KubeClient, objects: list[dict]) -> dict[str, str]:
    versions = {}
    for obj in objects:
        resource = kube.resolve(obj["apiVersion"], obj["kind"])
        live = kube.get(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        versions[f"{obj['kind']}/{obj['metadata']['name']}"] = live["metadata"]["resourceVersion"]
    return versions


def test_second_apply_writes_nothing(kube, test_namespace):
    stage = unique("idem")
    objects = workload_set(test_namespace)
    first = apply_objects(kube, stage, objects, timeout=120)
    assert sorted(c.action for c in first) == ["create"] * len(objects)

    deployment_live = kube.get(kube.resolve("apps/v1", "Deployment"), test_namespace, "web")
    assert deployment_live["status"]["availableReplicas"] == 2  # the gate waited for the rollout
    labels = deployment_live["metadata"]["labels"]
    assert labels[MANAGED_BY_LABEL] == "cubeinstall" and labels[STAGE_LABEL] == stage
    assert deployment_live["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    job = kube.get(kube.resolve("batch/v1", "Job"), test_namespace, "init")
    assert any(c["type"] == "Complete" for c in job["status"]["conditions"])

    before = resource_versions(kube, objects)
    second = apply_objects(kube, stage, objects, timeout=120)
    assert [c.action for c in second] == ["unchanged"] * len(objects)
    assert sum(c.changes_something for c in second) == 0
    assert resource_versions(kube, objects) == before

    planned = plan_objects(kube, stage, objects)
    assert {c.action for c in planned} == {"unchanged"}


class DryRunCountingClient(KubeClient):
    """The real client, counting the server-side dry runs it sends."""

    def __init__(self, api_client):
        super().__init__(api_client)
        self.dry_runs: list[str] = []

    def apply(self, obj, resource, *, dry_run=False, **kwargs):
        if dry_run:
            self.dry_runs.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return super().apply(obj, resource, dry_run=dry_run, **kwargs)


def test_a_rerun_does_not_ask_the_server_about_values_it_stores_in_another_form(
        kube, test_namespace):
    """cpu 10 is stored as "10", "2000m" as "2", a volume's storageClassName "" not at
    all: a re-run knows these are what it applied, with no dry run (the platform's
    volumes and cube's Deployments were asked about on every re-run)."""
    stage, volume = unique("forms"), unique("pv-forms")
    web = deployment(test_namespace, "web", replicas=1)
    web["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": 10, "memory": "1Gi"}, "requests": {"cpu": "2000m"}}
    objects = [web, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                     "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                              "storageClassName": "",
                              "hostPath": {"path": f"/data/k8s/{volume}"}}}]
    try:
        apply_objects(kube, stage, objects, timeout=120)
        live = kube.get(kube.resolve("apps/v1", "Deployment"), test_namespace, "web")
        assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == \
            {"cpu": "2"}  # the server's form, not ours
        client = DryRunCountingClient(kube.api)
        assert [c.action for c in apply_objects(client, stage, objects, timeout=60)] == \
            ["unchanged"] * 2
        assert client.dry_runs == []
    finally:
        uninstall_stage(kube, stage, purge=True, timeout=60)


def test_plan_shows_a_diff_and_apply_changes_only_that_object(kube, test_namespace):
    stage = unique("diff")
    objects = workload_set(test_namespace)[:2]
    apply_objects(kube, stage, objects)
    before = resource_versions(kube, objects)
    objects[0] = configmap(test_namespace, "settings", mode="prod", level="debug")
    objects[1]["stringData"]["password"] = "another-not-real-one"

    planned = {c.target: c for c in plan_objects(kube, stage, objects)}
    change = planned[f"ConfigMap {test_namespace}/settings"]
    assert change.action == "update"
    assert "-  level: info" in change.diff and "+  level: debug" in change.diff
    secret = planned[f"Secret {test_namespace}/creds"]
    assert secret.action == "update" and "(changed)" in secret.diff
    assert "another-not-real-one" not in secret.diff and "not-a-real-one" not in secret.diff
    assert resource_versions(kube, objects) == before  # plan wrote nothing

    applied = {c.target: c.action for c in apply_objects(kube, stage, objects)}
    assert applied == {f"ConfigMap {test_namespace}/settings": "update",
                       f"Secret {test_namespace}/creds": "update"}
    live = kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, "settings")
    assert live["data"]["level"] == "debug"


def crd(group: str, kind: str, plural: str, scope="Namespaced") -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                             "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def test_crd_and_its_custom_resources_in_one_set(kube, test_namespace):
    stage, group = unique("crd"), f"{unique('t')}.example.com"
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget",
              "metadata": {"name": "w1", "namespace": test_namespace}, "spec": {"size": 3}}
    objects = [widget, crd(group, "Widget", "widgets"), crd(group, "Gadget", "gadgets", "Cluster"),
               {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"},
                "spec": {"color": "red"}}]
    try:
        changes = apply_objects(kube, stage, objects, timeout=60)
        assert {c.target for c in changes[:2]} == {f"CustomResourceDefinition gadgets.{group}",
                                                   f"CustomResourceDefinition widgets.{group}"}
        assert {c.action for c in changes} == {"create"}
        live = kube.get(kube.resolve(f"{group}/v1", "Widget"), test_namespace, "w1")
        assert live["spec"] == {"size": 3}
        assert {c.action for c in apply_objects(kube, stage, objects)} == {"unchanged"}
    finally:
        uninstall_stage(kube, stage, timeout=60)


class CountingClient(KubeClient):
    """The real client, counting the LISTs and GETs of CRDs (whole schemas) it sends."""

    def __init__(self, api_client):
        super().__init__(api_client)
        self.crd_lists, self.crd_gets = 0, Counter()

    def list(self, resource, *args, **kwargs):
        if resource.kind == "CustomResourceDefinition":
            self.crd_lists += 1
        return super().list(resource, *args, **kwargs)

    def get(self, resource, namespace, name):
        if resource.kind == "CustomResourceDefinition":
            self.crd_gets[name] += 1
        return super().get(resource, namespace, name)


def test_crd_gate_asks_discovery_instead_of_listing_whole_schemas(kube, test_namespace):
    """A CRD is ready once discovery serves its resource at every served version; the CRD
    objects (whole schemas, megabytes for real ones) are fetched only by a slow fallback
    poll, and only those discovery does not serve yet."""
    stage, group = unique("crdgate"), f"{unique('d')}.example.com"
    client = CountingClient(kube.api)
    served = client.served_resources()
    assert ("apiextensions.k8s.io", "v1", "customresourcedefinitions") in served
    objects = [crd(group, "Widget", "widgets"),
               {"apiVersion": f"{group}/v1", "kind": "Widget",
                "metadata": {"name": "w1", "namespace": test_namespace}, "spec": {}}]
    try:
        started = time.monotonic()
        assert {c.action for c in apply_objects(client, stage, objects, timeout=60)} == {"create"}
        elapsed = time.monotonic() - started
        assert (group, "v1", "widgets") in client.served_resources()
        # One LIST of what the stage owns before applying; the gate lists none, and GETs the
        # one CRD at most once per FULL_EVERY.
        assert client.crd_lists == 1, client.crd_lists
        assert sum(client.crd_gets.values()) <= int(elapsed // wait.FULL_EVERY), client.crd_gets
    finally:
        uninstall_stage(kube, stage, timeout=60)


class SlowServedClient(KubeClient):
    """The real client, counting its aggregated-discovery requests, each held 0.3 s."""

    def __init__(self, api_client):
        super().__init__(api_client)
        self.asked = 0

    def _ask_served(self):
        self.asked += 1
        time.sleep(0.3)
        return super()._ask_served()


def test_gates_asking_what_is_served_at_once_share_one_request(kube):
    """The CRD gates of stages running at once poll discovery together: those that ask
    while a request is under way take its answer; one that asks after it, a new one."""
    client = SlowServedClient(kube.api)
    start = threading.Barrier(6)
    answers = []

    def poll():
        start.wait()
        answers.append(client.served_resources())

    threads = [threading.Thread(target=poll) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.asked == 1 and len(answers) == 6
    assert ("apps", "v1", "deployments") in answers[0]
    client.served_resources()
    assert client.asked == 2


def test_a_crd_whose_names_are_not_accepted_fails_without_waiting_for_the_deadline(
        kube, test_namespace):
    """Discovery never serves a CRD whose kind another CRD of its group has: the fallback
    fetches just that CRD and fails the stage on its NamesAccepted condition, not at the
    deadline; the served CRD of the same phase is not fetched again."""
    stage, group = unique("crdnames"), f"{unique('n')}.example.com"
    taken = crd(group, "Widget", "widgets")
    clash = crd(group, "Widget", "gizmos")  # another plural, the same kind: KindConflict
    client = CountingClient(kube.api)
    try:
        apply_objects(kube, unique("first"), [taken], timeout=60)
        with pytest.raises(ApplyFailed) as failure:
            apply_objects(client, stage, [clash, crd(group, "Gadget", "gadgets")], timeout=120)
        message = str(failure.value)
        assert "1 object(s) failed" in message and "names not accepted" in message, message
        assert f"CustomResourceDefinition gizmos.{group}" in message
        assert set(client.crd_gets) == {f"gizmos.{group}"}, client.crd_gets
    finally:
        for name in (f"gizmos.{group}", f"widgets.{group}", f"gadgets.{group}"):
            try:
                kube.delete(kube.resolve("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
                            None, name)
            except NotFound:
                pass


class RequestCountingClient(KubeClient):
    """The real client, counting its LISTs and WATCHes per kind, and its metadata-only
    LISTs (does it exist?) per namespace."""

    def __init__(self, api_client):
        super().__init__(api_client)
        self.lists, self.watches, self.name_lists = Counter(), Counter(), Counter()

    def list_names(self, resource, namespace=None):
        self.name_lists[namespace] += 1
        return super().list_names(resource, namespace)

    def list(self, resource, *args, **kwargs):
        self.lists[resource.kind] += 1
        return super().list(resource, *args, **kwargs)

    def watch(self, resource, **kwargs):
        self.watches[resource.kind] += 1
        return super().watch(resource, **kwargs)


def test_a_gate_follows_a_type_with_one_watch_however_long_it_waits(
        kube, test_namespace):
    """The claim waits for a volume that appears seconds later: the gate passes on the
    watch's event, without a LIST per poll (before: one LIST every 0.25-2 s)."""
    stage, volume, claim = unique("watchgate"), unique("pv-late"), "late"
    objects = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": test_namespace},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                         "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}}}]
    pvs, pvcs = kube.resolve("v1", "PersistentVolume"), kube.resolve("v1", "PersistentVolumeClaim")
    late_volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "", "hostPath": {"path": f"/data/k8s/{volume}"},
                            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                         "namespace": test_namespace, "name": claim}}}
    client = RequestCountingClient(kube.api)
    creator = threading.Timer(4.0, lambda: kube.apply(late_volume, pvs))
    creator.start()
    try:
        started = time.monotonic()
        assert [c.action for c in apply_objects(client, stage, objects, timeout=90)] == ["create"]
        assert time.monotonic() - started >= 4.0  # it did wait for the volume
        assert kube.get(pvcs, test_namespace, claim)["status"]["phase"] == "Bound"
        # one LIST of what the stage owns before applying, one WATCH by the gate (which
        # starts with the claim as it is: no LIST first; a broken stream may start another)
        assert client.lists["PersistentVolumeClaim"] == 1, client.lists
        assert 1 <= client.watches["PersistentVolumeClaim"] <= 2, client.watches
    finally:
        creator.join()
        uninstall_stage(kube, stage, purge=True, timeout=60)
        try:
            kube.delete(pvs, None, volume)
        except NotFound:
            pass


def test_closing_a_watch_that_already_ended_is_harmless(kube, test_namespace):
    """A gate closes its watches when it is done; one may have ended on its own a moment
    before (the server's timeout, a broken stream): its socket is closed already."""
    stream = kube.watch(kube.resolve("v1", "ConfigMap"), label_selector="none=here",
                        resource_version=None, seconds=1)
    assert all(kind in ("ADDED", "BOOKMARK") for kind, _ in stream)  # ends after 1 s
    stream.close()


def test_the_discovery_cache_file_is_written_once_when_the_process_ends(
        kube_cluster, tmp_path, monkeypatch):
    """Refreshing discovery (after every CRD phase) and fetching a group no longer rewrite
    the cache file each time; the process's last discovery is written at exit, and the
    next process starts from it."""
    import json
    import subprocess
    import sys

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    client = KubeClient(kube_cluster.api_client())
    cache = client.cache_file()
    client.resolve("apps/v1", "Deployment")
    client.invalidate_discovery()
    client.resolve("batch/v1", "Job")
    assert not cache.exists()
    client.dynamic.resources.write()  # what atexit calls
    assert "batch" in json.loads(cache.read_text())["resources"]["apis"]

    cache.unlink()
    script = ("import sys; from cubeinstall.kube.client import KubeClient; "
              "KubeClient.from_kubeconfig(sys.argv[1]).resolve('apps/v1', 'Deployment')")
    subprocess.run([sys.executable, "-c", script, str(kube_cluster.kubeconfig)], check=True)
    assert "apps" in json.loads(cache.read_text())["resources"]["apis"]


def test_a_discovery_cache_naming_a_removed_group_is_refreshed(
        kube, kube_cluster, tmp_path, monkeypatch):
    """The cache file an earlier process wrote names a CRD group removed since: listing
    every type (prune, uninstall) asks discovery afresh instead of failing on its 404."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    group = f"{unique('gone')}.example.com"
    crds = kube.resolve("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    kube.apply(crd(group, "Relic", "relics"), crds)
    path = f"/apis/{group}/v1"
    wait_until(lambda: _served(kube, path), timeout=60, what=f"{path} served")
    earlier = KubeClient(kube_cluster.api_client())
    earlier.invalidate_discovery()  # the group known, its resources not fetched yet
    earlier.dynamic.resources.write()  # what the earlier process did at exit
    kube.delete(crds, None, f"relics.{group}")
    wait_until(lambda: not _served(kube, path), timeout=60, what=f"{path} gone")

    later = KubeClient(kube_cluster.api_client())  # starts from that cache file
    kinds = {(r.group, r.kind) for r in later.listable_resources()}
    assert ("apps", "Deployment") in kinds and (group, "Relic") not in kinds


def _served(kube: KubeClient, path: str) -> bool:
    try:
        kube.request("GET", path)
        return True
    except NotFound:
        return False


def test_unsatisfiable_node_selector_times_out_with_the_fix(kube, test_namespace):
    stage = unique("sel")
    objects = [deployment(test_namespace, "mysql", replicas=1,
                          node_selector={"gpu": "true", "mysql": "true"})]
    started = time.monotonic()
    with pytest.raises(ApplyFailed) as failure:
        apply_objects(kube, stage, objects, timeout=8)
    elapsed = time.monotonic() - started
    assert 8 <= elapsed < 30
    message = str(failure.value)
    assert f"Deployment {test_namespace}/mysql: 0/3 nodes match node selector " \
           "gpu=true,mysql=true" in message
    assert "label a node with role mysql in site.yaml" in failure.value.hint
    assert failure.value.targets == (f"Deployment {test_namespace}/mysql",)


def test_unserved_api_version_fails_before_anything_is_applied(kube, test_namespace):
    stage = unique("old")
    objects = [configmap(test_namespace, "a", x="1"), configmap(test_namespace, "b", x="2"),
               {"apiVersion": "rbac.authorization.k8s.io/v1beta1", "kind": "ClusterRole",
                "metadata": {"name": unique("old-role")}, "rules": []},
               {"apiVersion": "batch/v1beta1", "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": test_namespace}, "spec": {}}]
    with pytest.raises(ApplyFailed) as failure:
        apply_objects(kube, stage, objects)
    message = str(failure.value)
    assert "nothing was changed" in message
    assert "apiVersion rbac.authorization.k8s.io/v1beta1 (kind ClusterRole) is not served" in message
    assert "removed in Kubernetes 1.22; use rbac.authorization.k8s.io/v1" in message
    assert f"CronJob {test_namespace}/nightly" in message and "removed in Kubernetes 1.25" in message
    for name in ("a", "b"):
        with pytest.raises(NotFound):
            kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, name)


def test_conflict_names_the_other_field_manager(kube, test_namespace):
    stage = unique("conflict")
    resource = kube.resolve("v1", "ConfigMap")
    kube.request("PATCH", resource.path(test_namespace, "shared"),
                 body=configmap(test_namespace, "shared", owner="them"),
                 query=[("fieldManager", "helm-by-hand")],
                 content_type="application/apply-patch+yaml")
    ours = [configmap(test_namespace, "shared", owner="us")]
    with pytest.raises(ApplyFailed) as failure:
        apply_objects(kube, stage, ours)
    assert "helm-by-hand" in str(failure.value)
    assert f"ConfigMap {test_namespace}/shared" in str(failure.value)
    assert "force" in failure.value.hint
    assert kube.get(resource, test_namespace, "shared")["data"] == {"owner": "them"}

    [change] = apply_objects(kube, stage, ours, force_conflicts=True)
    assert change.action == "update"
    assert kube.get(resource, test_namespace, "shared")["data"] == {"owner": "us"}


def test_prune_deletes_what_is_no_longer_rendered(kube, test_namespace):
    stage = unique("prune")
    keep, drop = configmap(test_namespace, "keep", a="1"), configmap(test_namespace, "drop", a="2")
    apply_objects(kube, stage, [keep, drop])

    planned = plan_objects(kube, stage, [keep], prune=True)
    assert [(c.target, c.action) for c in planned if c.action != "unchanged"] == [
        (f"ConfigMap {test_namespace}/drop", "delete")]
    kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, "drop")  # plan deleted nothing

    without = apply_objects(kube, stage, [keep])  # prune is opt-in
    assert [c.action for c in without] == ["unchanged"]
    kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, "drop")

    changes = apply_objects(kube, stage, [keep], prune=True)
    assert (f"ConfigMap {test_namespace}/drop", "delete") in [(c.target, c.action) for c in changes]
    with pytest.raises(NotFound):
        kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, "drop")
    kube.get(kube.resolve("v1", "ConfigMap"), test_namespace, "keep")


def test_uninstall_removes_what_it_owns_and_nothing_else(kube):
    stage, group = unique("unin"), f"{unique('u')}.example.com"
    gone_ns, kept_ns = unique("gone"), unique("kept")
    retain_pv, delete_pv, role = unique("pv-retain"), unique("pv-delete"), unique("role")

    def pv(name, policy):
        return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": policy, "storageClassName": "",
                         "hostPath": {"path": f"/data/k8s/{name}"}}}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": gone_ns}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kept_ns}},
        configmap(gone_ns, "settings", a="1"), configmap(kept_ns, "settings", a="1"),
        deployment(gone_ns, "web", replicas=1),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role}, "rules": []},
        pv(retain_pv, "Retain"), pv(delete_pv, "Delete"),
        crd(group, "Widget", "widgets"),
        {"apiVersion": f"{group}/v1", "kind": "Widget",
         "metadata": {"name": "w", "namespace": gone_ns}, "spec": {}},
    ]
    apply_objects(kube, stage, objects, timeout=60)
    configmaps = kube.resolve("v1", "ConfigMap")
    kube.request("POST", configmaps.path(kept_ns), body=configmap(kept_ns, "theirs", b="2"))
    unowned_role = unique("unowned")
    roles = kube.resolve("rbac.authorization.k8s.io/v1", "ClusterRole")
    kube.request("POST", roles.path(), body={"apiVersion": "rbac.authorization.k8s.io/v1",
                                             "kind": "ClusterRole",
                                             "metadata": {"name": unowned_role}, "rules": []})
    try:
        changes = {c.target: c for c in uninstall_stage(kube, stage, timeout=90)}
        assert changes[f"Namespace {gone_ns}"].action == "delete"
        assert changes[f"Namespace {kept_ns}"].action == "skip"
        assert f"ConfigMap {kept_ns}/theirs" in changes[f"Namespace {kept_ns}"].detail
        assert changes[f"PersistentVolume {retain_pv}"].action == "skip"
        assert "Retain" in changes[f"PersistentVolume {retain_pv}"].detail
        assert changes[f"PersistentVolume {delete_pv}"].action == "skip"  # data: purge only
        order = list(changes)
        assert order.index(f"Widget {gone_ns}/w") < order.index(f"Deployment {gone_ns}/web") \
            < order.index(f"CustomResourceDefinition widgets.{group}") \
            < order.index(f"Namespace {gone_ns}")

        namespaces = kube.resolve("v1", "Namespace")
        with pytest.raises(NotFound):
            kube.get(namespaces, None, gone_ns)
        kube.get(namespaces, None, kept_ns)
        kube.get(configmaps, kept_ns, "theirs")
        with pytest.raises(NotFound):
            kube.get(configmaps, kept_ns, "settings")
        with pytest.raises(NotFound):
            kube.get(roles, None, role)
        kube.get(roles, None, unowned_role)
        with pytest.raises(NotFound):
            kube.get(kube.resolve("apiextensions.k8s.io/v1", "CustomResourceDefinition"), None,
                     f"widgets.{group}")
        pvs = kube.resolve("v1", "PersistentVolume")
        for resource, name in ((pvs, retain_pv), (pvs, delete_pv), (namespaces, kept_ns)):
            labels = kube.get(resource, None, name)["metadata"]["labels"]
            assert MANAGED_BY_LABEL not in labels and STAGE_LABEL not in labels, name
            assert labels[KEPT_LABEL] == stage, name
        assert "left unmanaged" in changes[f"PersistentVolume {delete_pv}"].detail

        purged = {c.target: c.action for c in uninstall_stage(kube, stage, purge=True)}
        assert purged[f"PersistentVolume {delete_pv}"] == "delete"
        assert purged[f"PersistentVolume {retain_pv}"] == "skip"
        kube.get(pvs, None, retain_pv)
        with pytest.raises(NotFound):
            kube.get(pvs, None, delete_pv)
    finally:
        for path in (roles.path(None, unowned_role),
                     kube.resolve("v1", "PersistentVolume").path(None, retain_pv),
                     kube.resolve("v1", "Namespace").path(None, kept_ns)):
            try:
                kube.request("DELETE", path)
            except NotFound:
                pass


def test_a_run_context_supplies_timeouts_output_and_client(kube_cluster, test_namespace):
    import io

    from cubeinstall.core.context import RunContext, RunOptions
    from cubeinstall.core.output import Output
    from cubeinstall.site.loader import load_site
    from tests.helpers import EXAMPLE_SITE

    example = load_site(EXAMPLE_SITE)
    site = example.model_copy(update={"timeouts": example.timeouts.model_copy(
        update={"object_seconds": 4, "stage_seconds": 60})})
    ctx = RunContext(site, Output(json_mode=True, stream=io.StringIO()),
                     RunOptions(kubeconfig=kube_cluster.kubeconfig))
    stage = unique("ctx")
    [change] = apply_objects(ctx, stage, [configmap(test_namespace, "from-ctx", a="1")])
    assert change.action == "create"
    assert {"object": f"ConfigMap {test_namespace}/from-ctx", "action": "create"}.items() <= \
        next(e for e in ctx.out.events if e.get("object")).items()

    started = time.monotonic()
    with pytest.raises(ApplyFailed, match="node selector gpu=true,redis=true"):
        apply_objects(ctx, stage, [deployment(test_namespace, "redis", replicas=1,
                                              node_selector={"gpu": "true", "redis": "true"})])
    assert time.monotonic() - started < 15  # the site's 4 s, not the default 300 s


def run_context(kube_cluster, stages: set[str] = frozenset()):
    """A run's context with a counting client, as the runner makes it for ``stages``."""
    import io

    from cubeinstall.core.context import RunContext, RunOptions
    from cubeinstall.core.output import Output
    from cubeinstall.site.loader import load_site
    from tests.helpers import EXAMPLE_SITE

    ctx = RunContext(load_site(EXAMPLE_SITE), Output(json_mode=True, stream=io.StringIO()),
                     RunOptions(kubeconfig=kube_cluster.kubeconfig))
    kubeconfig, context = ctx.kubeconfig_for()
    client = RequestCountingClient(kube_cluster.api_client())
    ctx.cached(f"kube:{kubeconfig}:{context}", lambda: client)
    if stages:
        ctx.run_stages[ctx.cluster_name] = frozenset(stages)
    return ctx, client


def test_a_later_stage_does_not_look_for_objects_in_a_namespace_this_run_created(
        kube_cluster, test_namespace):
    """Nothing in a namespace an earlier stage of the same run created predates the run:
    a later stage creates its objects there without asking whether they exist. A new run
    (a resumed one too) does not know that and asks again."""
    fresh, first, second, third = (unique("fresh"), unique("nsstage"), unique("cmstage"),
                                   unique("cmstage"))
    objects = [configmap(fresh, "settings", a="1"), configmap(test_namespace, "settings", a="1")]
    ctx, client = run_context(kube_cluster)
    try:
        [created] = apply_objects(ctx, first, [{"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": fresh}}])
        assert created.action == "create"
        assert ctx.planned.created_namespaces == {fresh}
        assert {c.action for c in apply_objects(ctx, second, objects)} == {"create"}
        assert client.name_lists[fresh] == 0
        assert client.name_lists[test_namespace] == 1  # it existed before the run: asked

        ctx, client = run_context(kube_cluster)
        [other] = apply_objects(ctx, third, [configmap(fresh, "other", a="1")])
        assert other.action == "create"
        assert client.name_lists[fresh] == 1  # a new run knows nothing of the namespace
    finally:
        for stage in (third, second, first):
            uninstall_stage(kube_cluster.api_client(), stage, timeout=60)


def cluster_role(name: str, verbs: list[str]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]}


def test_the_stages_of_one_run_share_one_list_per_type(kube_cluster, test_namespace,
                                                       monkeypatch):
    """Two stages of a run list ClusterRoles, ConfigMaps and namespaces once for both, each
    finding its own part (and the namespace the first created); a stage that applies again
    lists afresh (it sees its own first apply), and a list older than snapshot.MAX_AGE is
    not shared."""
    from cubeinstall.kube import snapshot

    first, second = unique("share-a"), unique("share-b")
    fresh = unique("share-ns")

    def objects(stage: str, verbs: list[str]) -> list[dict]:
        extra = ([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": fresh}}]
                 if stage == first else [configmap(fresh, stage, a="1")])
        return [cluster_role(stage, verbs), configmap(test_namespace, stage, a="1"), *extra]

    try:
        ctx, client = run_context(kube_cluster, {first, second})
        for stage in (first, second):
            assert {c.action for c in apply_objects(ctx, stage, objects(stage, ["get"]))} \
                == {"create"}
        # namespaces: the first stage's own (labelled) and, once for both, all of them
        assert (client.lists["ClusterRole"], client.lists["ConfigMap"],
                client.lists["Namespace"]) == (1, 1, 2), client.lists
        # what exists is asked once too: ClusterRoles and Namespaces, ConfigMaps in the
        # namespace (not in the one this run created: nothing can be there)
        assert client.name_lists == {None: 2, test_namespace: 1}, client.name_lists

        ctx, client = run_context(kube_cluster, {first, second})  # the next run
        for stage in (first, second):
            assert {c.action for c in apply_objects(ctx, stage, objects(stage, ["get"]))} \
                == {"unchanged"}
        assert (client.lists["ClusterRole"], client.lists["ConfigMap"]) == (1, 1), client.lists
        assert not client.name_lists  # each found all of its own in its part
        changed = {c.target: c.action for c in apply_objects(
            ctx, first, objects(first, ["get", "list"]))}
        assert changed[f"ClusterRole {first}"] == "update", changed
        assert client.lists["ClusterRole"] == 2  # its part was had: asked again

        monkeypatch.setattr(snapshot, "MAX_AGE", 0.0)
        ctx, client = run_context(kube_cluster, {first, second})
        for stage in (first, second):
            apply_objects(ctx, stage, objects(stage, ["get"]))
        assert client.lists["ClusterRole"] == 2, client.lists
    finally:
        for stage in (second, first):
            uninstall_stage(kube_cluster.api_client(), stage, timeout=60)


def test_a_released_volume_goes_back_to_its_claim_when_applied_again(kube, test_namespace):
    """uninstall --purge deletes the claim, the Retain volume stays Released with the old
    claim's uid: applying the stage again gives the kept data back to the new claim."""
    stage, volume, claim = unique("rebind"), unique("pv-kept"), "data"
    objects = [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                  "hostPath": {"path": f"/data/k8s/{volume}"},
                  "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "namespace": test_namespace, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": claim, "namespace": test_namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                  "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}}},
    ]
    pvs, pvcs = kube.resolve("v1", "PersistentVolume"), kube.resolve("v1", "PersistentVolumeClaim")
    try:
        apply_objects(kube, stage, objects, timeout=60)  # gates: the claim is Bound
        old_uid = kube.get(pvcs, test_namespace, claim)["metadata"]["uid"]
        kube.delete(pvcs, test_namespace, claim)
        deadline = time.monotonic() + 60
        while kube.get(pvs, None, volume).get("status", {}).get("phase") != "Released":
            assert time.monotonic() < deadline, "the volume never became Released"
            time.sleep(0.5)
        assert kube.get(pvs, None, volume)["spec"]["claimRef"]["uid"] == old_uid

        planned = {c.target: c for c in plan_objects(kube, stage, objects)
                   if c.action == "update"}
        assert "would clear the uid" in planned[f"PersistentVolume {volume}"].detail
        changes = apply_objects(kube, stage, objects, timeout=60)
        assert any(c.target == f"PersistentVolume {volume}" and c.action == "update"
                   and "cleared the uid" in c.detail for c in changes)
        bound = kube.get(pvcs, test_namespace, claim)
        assert bound["status"]["phase"] == "Bound" and bound["metadata"]["uid"] != old_uid
        assert kube.get(pvs, None, volume)["spec"]["claimRef"]["uid"] == bound["metadata"]["uid"]
        again = apply_objects(kube, stage, objects, timeout=60)
        assert all(c.action == "unchanged" for c in again), again
    finally:
        uninstall_stage(kube, stage, purge=True, timeout=60)
        try:
            kube.delete(pvs, None, volume)
        except NotFound:
            pass


def test_kept_data_is_managed_again_when_its_stage_is_applied_again(kube, test_namespace):
    stage, volume = unique("again"), unique("pv-again")
    objects = [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                         "hostPath": {"path": f"/data/k8s/{volume}"}}}]
    pvs = kube.resolve("v1", "PersistentVolume")
    try:
        apply_objects(kube, stage, objects, timeout=60)
        uninstall_stage(kube, stage, timeout=60)
        assert kube.get(pvs, None, volume)["metadata"]["labels"][KEPT_LABEL] == stage

        [change] = apply_objects(kube, stage, objects, timeout=60)
        assert change.action == "update" and "kept by an earlier uninstall" in change.detail
        labels = kube.get(pvs, None, volume)["metadata"]["labels"]
        assert KEPT_LABEL not in labels
        assert labels[MANAGED_BY_LABEL] == "cubeinstall" and labels[STAGE_LABEL] == stage
        assert [c.action for c in apply_objects(kube, stage, objects, timeout=60)] == ["unchanged"]
    finally:
        try:
            kube.delete(pvs, None, volume)
        except NotFound:
            pass


def test_uninstall_names_the_finalizer_it_is_stuck_on(kube, test_namespace):
    stage = unique("stuck")
    held = configmap(test_namespace, "held", a="1")
    held["metadata"]["finalizers"] = ["example.com/never-released"]
    apply_objects(kube, stage, [held])
    resource = kube.resolve("v1", "ConfigMap")
    try:
        with pytest.raises(ApplyFailed) as failure:
            uninstall_stage(kube, stage, timeout=3)
        assert f"ConfigMap {test_namespace}/held: still present, waiting for finalizers " \
               "example.com/never-released" in str(failure.value)
        assert "finalizers" in failure.value.hint
    finally:
        kube.request("PATCH", resource.path(test_namespace, "held"),
                     body={"metadata": {"finalizers": None}},
                     content_type="application/merge-patch+json")


def test_uninstall_gives_back_node_labels_and_keeps_the_node(kube, kube_cluster):
    stage, label = unique("labels"), f"cubeinstall-test-{uuid.uuid4().hex[:6]}"
    nodes = kube.resolve("v1", "Node")
    node = kube.list(nodes)[0]["metadata"]["name"]
    [change] = apply_objects(kube, stage, [{"apiVersion": "v1", "kind": "Node",
                                             "metadata": {"name": node, "labels": {label: "true"}}}])
    assert change.action == "label" and f"+{label}=true" in change.detail  # never "create"
    assert "adopted" in change.detail
    assert kube.get(nodes, None, node)["metadata"]["labels"][label] == "true"

    [released] = uninstall_stage(kube, stage)
    assert (released.target, released.action) == (f"Node {node}", "update")
    labels = kube.get(nodes, None, node)["metadata"]["labels"]
    assert label not in labels and STAGE_LABEL not in labels
