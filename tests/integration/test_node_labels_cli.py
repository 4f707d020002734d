"""A Node's role change through the command line, on the real control plane (kwok nodes):
plan and apply say "label Node node2" with the label diff, never "create Node"; the
second run is unchanged."""

from __future__ import annotations

import pytest

from tests.helpers import example_site_data, run_process, write_site

pytestmark = pytest.mark.cluster


def _site(directory, kube_cluster, extra_role: str | None = None):
    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(kube_cluster.kubeconfig)}]
    if extra_role:
        data["nodes"][1]["roles"] = [*data["nodes"][1]["roles"], extra_role]
    directory.mkdir(exist_ok=True)
    return write_site(directory, data)


def _run(*args, state):
    # a journal of its own: the stage is not skipped as done by another test's run
    result = run_process(["--yes", *args], timeout=180, env={"XDG_STATE_HOME": str(state)})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_role_change_is_a_label_change_of_the_node(tmp_path, kube_cluster):
    example = _site(tmp_path / "example", kube_cluster)
    changed = _site(tmp_path / "changed", kube_cluster, extra_role="monitoring")
    node = example_site_data()["nodes"][1]["name"]
    state = tmp_path / "state"
    _run("stage", "node-labels", "-c", str(example), state=state)  # whatever ran before
    try:
        for command in (["plan", "--only", "node-labels"], ["stage", "node-labels"]):
            said = _run(*command, "-c", str(changed), state=state)
            assert f"label     Node {node}" in said, said
            assert "+monitoring=true" in said and "create    Node" not in said, said
        again = _run("plan", "--only", "node-labels", "-c", str(changed), state=state)
        assert "label     Node" not in again and "│ node-labels │ 0      │ 0      │" in again, again
    finally:
        _run("stage", "node-labels", "-c", str(example), state=state)
