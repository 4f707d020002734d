"""render and the offline plan of a site of two clusters: each cluster's objects, named.

The example site's nodes stay on the platform cluster ``main``; ``east`` has one node of
its own and no GPU. A one-cluster site's output is what it always was (the golden files
and the `# stage: NAME` headers).
"""

from __future__ import annotations

import pytest
import yaml

from cubeinstall.site import stages as registry
from cubeinstall.site.stages import Scope
from tests.helpers import (EXAMPLE_SITE, example_site_data, json_events, other_cluster, run_cli,
                           write_site)

EAST_ROLES = ["cpu", "train", "notebook", "service", "kubeflow", "istio", "monitoring"]


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory):
    data = example_site_data()
    data["clusters"].append(other_cluster("east"))
    data["nodes"].append({"name": "east1", "address": "east1.cube.example.com",
                          "cluster": "east", "roles": EAST_ROLES})
    return write_site(tmp_path_factory.mktemp("two-clusters"), data)


def headers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# stage: ")]


def test_render_shows_each_clusters_objects_cluster_by_cluster(two_clusters, capsys):
    code, out, err = run_cli(["render", "-c", str(two_clusters)], capsys)
    assert code == 0, err
    named = [line.removeprefix("# stage: ") for line in headers(out)]
    clusters = [header.split("(cluster ")[1].rstrip(")") for header in named]
    assert clusters == sorted(clusters, key=("main", "east").index)  # main's first, then east's
    east = {header.split(" ")[0] for header in named if header.endswith("(cluster east)")}
    main = {header.split(" ")[0] for header in named if header.endswith("(cluster main)")}
    every = {s.name for s in registry.STAGES if s.scope is Scope.EVERY_CLUSTER}
    platform = {s.name for s in registry.STAGES if s.scope is Scope.PLATFORM}
    assert "gpu" in main and "gpu" not in east  # east has no GPU node
    assert east == (main & every) - {"gpu"}
    assert main & platform == {"dashboard", "mysql", "redis", "efk", "kubeconfig", "cube",
                               "gateway"}
    # each cluster's node labels: its own nodes only
    sections = out.split("# stage: ")
    [east_labels] = [s for s in sections if s.startswith("node-labels (cluster east)")]
    nodes = [doc["metadata"]["name"] for doc in yaml.safe_load_all(east_labels.split("\n", 1)[1])
             if doc]
    assert nodes == ["east1"]


def test_render_json_names_the_cluster_and_cluster_picks_one(two_clusters, capsys):
    code, out, err = run_cli(["--json", "render", "-c", str(two_clusters), "--only",
                              "node-labels,cube"], capsys)
    assert code == 0, err
    objects = [(e["stage"], e["cluster"], e["object"]["metadata"]["name"])
               for e in json_events(out) if e["event"] == "object"]
    assert ("node-labels", "east", "east1") in objects
    assert {(stage, cluster) for stage, cluster, _ in objects} == {
        ("node-labels", "main"), ("node-labels", "east"), ("cube", "main")}

    code, out, err = run_cli(["render", "-c", str(two_clusters), "--cluster", "east",
                              "--only", "node-labels,cube"], capsys)
    assert code == 0, err
    assert headers(out) == ["# stage: node-labels (cluster east)"]
    assert "cube: does not run on cluster east, not rendered" in err

    code, out, err = run_cli(["render", "-c", str(two_clusters), "--cluster", "west"], capsys)
    assert code == 2 and "--cluster: unknown cluster 'west'" in err and "main, east" in err
    assert out == ""


def test_render_out_writes_a_folder_per_cluster(two_clusters, tmp_path, capsys):
    code, _, err = run_cli(["render", "-c", str(two_clusters), "--only", "namespaces,kubeconfig",
                            "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.yaml"))
    assert written == ["east/06-namespaces.yaml", "main/06-namespaces.yaml",
                       "main/20-kubeconfig.yaml"]
    assert (tmp_path / "out/main/20-kubeconfig.yaml").stat().st_mode & 0o777 == 0o600


def test_one_cluster_render_keeps_its_headers_and_files(tmp_path, capsys):
    code, out, err = run_cli(["render", "-c", str(EXAMPLE_SITE), "--only", "namespaces"], capsys)
    assert code == 0, err
    assert out.startswith("# stage: namespaces\n---\n")
    code, out, err = run_cli(["--json", "render", "-c", str(EXAMPLE_SITE), "--only",
                              "node-labels", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["07-node-labels.yaml"]
    assert all("cluster" not in e for e in json_events(out))


def test_offline_plan_is_per_cluster(two_clusters, capsys):
    code, out, err = run_cli(["--json", "plan", "--offline", "-c", str(two_clusters),
                              "--only", "node-labels,kubeconfig"], capsys)
    assert code == 0, err
    events = json_events(out)
    planned = [(e["stage"], e["cluster"]) for e in events if e["event"] == "stage-plan"]
    assert planned == [("node-labels", "main"), ("node-labels", "east"), ("kubeconfig", "main")]
    labelled = {(e["cluster"], e["target"]) for e in events
                if e["event"] == "change" and e["stage"] == "node-labels"}
    assert {target for cluster, target in labelled if cluster == "east"} == {"Node east1"}
