"""Several clusters: where each stage runs (run/targets.py), the per-cluster view of the
site, and journals written before sites had several clusters."""

from __future__ import annotations

import copy
import json

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.run import runner
from cubeinstall.run.fingerprint import fingerprint
from cubeinstall.run.journal import Journal
from cubeinstall.run.targets import expand, prerequisites
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.site.stages import Scope
from tests.helpers import example_site_data, other_cluster, write_site

EAST_NODE = {"name": "east1", "address": "east1.cube.example.com", "cluster": "east",
             "roles": ["gpu", "train", "notebook", "service", "kubeflow", "istio", "monitoring"]}


def two_cluster_data() -> dict:
    """The example site with a second cluster, east, holding one GPU node; the example's
    gpu1 becomes a CPU node so that only east has GPUs."""
    data = example_site_data()
    data["clusters"].append(other_cluster("east"))
    gpu1 = next(node for node in data["nodes"] if node["name"] == "gpu1")
    gpu1["roles"] = ["cpu" if role == "gpu" else role for role in gpu1["roles"]]
    data["nodes"].append(copy.deepcopy(EAST_NODE))
    return data


@pytest.fixture
def site(tmp_path):
    return load_site(write_site(tmp_path, two_cluster_data()))


@pytest.fixture
def one_cluster_site(tmp_path):
    return load_site(write_site(tmp_path, example_site_data()))


def by_cluster(targets) -> dict[str | None, list[str]]:
    result: dict[str | None, list[str]] = {}
    for target in targets:
        result.setdefault(target.cluster, []).append(target.stage.name)
    return result


def test_one_cluster_targets_are_the_selected_stages_as_before(one_cluster_site):
    selected = runner.select(one_cluster_site)
    targets = expand(one_cluster_site, selected)
    assert [target.stage for target in targets] == selected
    assert [target.key for target in targets] == [stage.name for stage in selected]
    assert [target.label for target in targets] == [stage.name for stage in selected]
    assert all(target.fields == {} for target in targets)  # events and lines as before


def test_platform_stages_run_on_the_first_cluster_and_the_rest_on_every_cluster(site):
    targets = expand(site, runner.select(site))
    placed = by_cluster(targets)
    platform = [s.name for s in registry.STAGES if s.scope is Scope.PLATFORM and s.enabled(site)]
    every = [s.name for s in registry.STAGES
             if s.scope is Scope.EVERY_CLUSTER and s.enabled(site) and s.name != "gpu"]
    assert set(platform) <= set(placed["main"]) and not set(platform) & set(placed["east"])
    assert set(every) <= set(placed["main"]) and set(every) <= set(placed["east"])
    # the GPU objects only where the GPU nodes are; node stages once, for the whole site
    assert "gpu" in placed["east"] and "gpu" not in placed["main"]
    site_wide = [s.name for s in registry.STAGES
                 if s.scope in (Scope.NODES, Scope.REGISTRY) and s.enabled(site)]
    assert placed[None] == site_wide and {"node-prep", "storage", "images"} <= set(site_wide)
    # registry order, stage by stage
    order = [target.stage.name for target in targets]
    assert order == sorted(order, key=registry.STAGE_NAMES.index)


def test_keys_labels_and_event_fields_name_the_cluster(site):
    targets = {(t.stage.name, t.cluster): t for t in expand(site, runner.select(site))}
    main, east = targets[("namespaces", "main")], targets[("namespaces", "east")]
    assert (main.key, east.key) == ("namespaces", "namespaces@east")
    assert east.label == "namespaces (cluster east)" and east.fields == {"cluster": "east"}
    assert main.fields == {"cluster": "main"}
    node_prep = targets[("node-prep", None)]
    assert (node_prep.key, node_prep.label, node_prep.fields) == ("node-prep", "node-prep", {})


def test_cluster_option_narrows_to_that_clusters_stages(site):
    east = expand(site, runner.select(site), "east")
    assert {target.cluster for target in east} == {"east"}
    assert "cube" not in by_cluster(east)["east"]  # a platform stage
    main = by_cluster(expand(site, runner.select(site), "main"))
    assert list(main) == ["main"] and "cube" in main["main"]
    with pytest.raises(ConfigError) as error:
        expand(site, runner.select(site), "west")
    assert "unknown cluster 'west'" in error.value.message
    assert "main, east" in error.value.hint


def test_a_target_waits_for_its_prerequisites_on_its_own_cluster(site):
    """What the scheduler runs: a failure on one cluster blocks what needs it there only."""
    targets = expand(site, runner.select(site))
    by_key = {target.key: target for target in targets}
    volcano_east = prerequisites(by_key["volcano@east"], targets)
    assert {"namespaces@east", "node-labels@east", "node-prep", "storage"} <= volcano_east
    assert not volcano_east & {"namespaces", "node-labels"}  # main's own
    cube = prerequisites(by_key["cube"], targets)
    assert {"namespaces", "pv-pvc", "databases", "kubeconfig"} <= cube
    assert not any(key.endswith("@east") for key in cube)
    assert prerequisites(by_key["node-prep"], targets) == frozenset()


def test_each_cluster_renders_for_its_own_nodes(site):
    east, main = site.for_cluster("east"), site.for_cluster("main")
    assert [node.name for node in east.nodes] == ["east1"]
    assert [node.name for node in main.nodes] == ["node1", "node2", "gpu1"]
    assert east.clusters == site.clusters  # CLUSTERS still names every cluster
    labelled = {obj["metadata"]["name"]
                for obj in runner.stage_objects(registry.get("node-labels"), east)
                if obj["kind"] == "Node"}
    assert labelled == {"east1"}


def test_one_cluster_site_is_its_own_view(one_cluster_site):
    assert one_cluster_site.for_cluster("main") is one_cluster_site


def test_a_node_of_an_unknown_cluster_is_refused_naming_node_and_clusters(tmp_path):
    data = two_cluster_data()
    data["nodes"][-1]["cluster"] = "west"
    with pytest.raises(ConfigError) as error:
        load_site(write_site(tmp_path, data))
    text = str(error.value)
    assert "nodes.3.cluster" in text or "nodes[3].cluster" in text, text
    assert "node east1: cluster 'west' is not one of the site's clusters (main, east)" in text


def test_placement_is_checked_on_each_cluster(tmp_path):
    data = two_cluster_data()
    data["nodes"][-1]["roles"] = ["gpu", "train"]  # east: nowhere for istio's pods
    with pytest.raises(ConfigError) as error:
        load_site(write_site(tmp_path, data))
    assert "no node of cluster east has role 'istio'" in str(error.value)


def test_a_journal_written_before_clusters_still_skips_the_platform_cluster(tmp_path,
                                                                           one_cluster_site):
    """A record of the old shape (no cluster field) under the stage's name is the record of
    the platform cluster's target: a site installed before this change re-runs nothing."""
    stage = registry.get("namespaces")
    digest = fingerprint(stage, one_cluster_site, runner.stage_objects(stage, one_cluster_site))
    old = {"schema": 1, "site": "demo-bj", "cubeinstall": "0",
           "stages": {"namespaces": {"stage": "namespaces", "status": "ok",
                                     "fingerprint": digest, "started": 1.0, "finished": 2.0,
                                     "changes": 3, "message": ""}}}
    (tmp_path / "demo-bj.journal.json").write_text(json.dumps(old))
    journal = Journal.load("demo-bj", tmp_path)
    [target] = expand(one_cluster_site, [stage])
    assert journal.is_current(target.key, digest)


def test_journal_records_each_cluster_under_its_own_key(tmp_path):
    journal = Journal.load("demo-bj", tmp_path)
    journal.started("namespaces", "sha256:a", cluster="main")
    journal.started("namespaces@east", "sha256:b", cluster="east")
    journal.finished("namespaces@east", ok=True)
    records = json.loads((tmp_path / "demo-bj.journal.json").read_text())["stages"]
    assert records["namespaces@east"]["stage"] == "namespaces"
    assert records["namespaces@east"]["cluster"] == "east"
    assert records["namespaces"]["status"] == "running"
    reread = Journal.load("demo-bj", tmp_path)
    assert reread.is_current("namespaces@east", "sha256:b")
    assert not reread.is_current("namespaces", "sha256:a")


def test_a_nodes_cluster_does_not_change_node_stage_fingerprints(tmp_path):
    plain = load_site(write_site(tmp_path, example_site_data()))
    data = example_site_data()
    for node in data["nodes"]:
        node["cluster"] = "main"
    explicit = load_site(write_site(tmp_path, data, "explicit.yaml"))
    for name in ("node-prep", "storage", "gpu-runtime"):
        stage = registry.get(name)
        assert fingerprint(stage, plain, None) == fingerprint(stage, explicit, None)
