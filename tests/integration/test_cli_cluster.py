"""The command line against the real test control plane: KUBECONFIG for a live plan, and
the y/N question of `stage` on a terminal (a pseudo-terminal), answered no."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from tests.helpers import REPO, example_site_data, json_events, run_process, write_site

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster_site(tmp_path, kube_cluster):
    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(kube_cluster.kubeconfig)}]
    data["gates"] = {"webhooks": "skip", "services": "skip"}
    return write_site(tmp_path, data)


def test_live_plan_uses_kubeconfig_from_the_environment(tmp_path, kube_cluster):
    data = example_site_data()
    data["clusters"] = [{"name": "main"}]  # names no kubeconfig: $KUBECONFIG decides
    site = write_site(tmp_path, data)
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "absent"), str(kube_cluster.kubeconfig)])}
    result = run_process(["--json", "plan", "--only", "namespaces", "-c", str(site)], env=env,
                         timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [planned] = [e for e in json_events(result.stdout) if e["event"] == "stage-plan"]
    assert planned["stage"] == "namespaces"
    # the same site without KUBECONFIG reads ~/.kube/config of an empty HOME: no such file
    bare = run_process(["plan", "--only", "namespaces", "-c", str(site)],
                       env={"KUBECONFIG": "", "HOME": str(tmp_path)}, timeout=120)
    assert bare.returncode == 2 and ".kube/config" in bare.stderr, bare.stderr


def _namespace(kube_cluster, name: str):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    with kube_cluster.api_client() as api:
        try:
            return client.CoreV1Api(api).read_namespace(name).metadata.resource_version
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def test_stage_shows_the_plan_and_asks_on_a_terminal(kube_cluster, tmp_path):
    """A namespace of this test's own is to be created: the plan shows it, the answer n
    changes nothing (whatever other tests left in the shared cluster)."""
    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(kube_cluster.kubeconfig)}]
    data["namespaces"] = {"extra": ["cli-confirm"]}
    site = write_site(tmp_path, data)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")  # typed ahead: read when the question is asked
        child = subprocess.run(
            [sys.executable, "-m", "cubeinstall", "--no-color", "stage", "namespaces",
             "-c", str(site)],
            stdin=terminal, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO / "src"),
                 "CUBEINSTALL_STATE_DIR": str(tmp_path / "state")})
    finally:
        os.close(terminal)
        os.close(controller)
    assert child.returncode == 2, child.stdout + child.stderr
    assert "create    Namespace cli-confirm" in child.stdout, child.stdout
    assert "plan" in child.stdout  # the plan table
    assert "Apply the changes above? [y/N]" in child.stderr
    assert "not confirmed; nothing was changed" in child.stderr
    assert _namespace(kube_cluster, "cli-confirm") is None


def test_dry_run_and_status_live_show_what_they_reach_and_mark_the_rest(cluster_site, tmp_path):
    """The cluster answers; the example's hosts (node1.cube.example.com, ...) do not resolve."""
    env = {"CUBEINSTALL_STATE_DIR": str(tmp_path / "state")}
    only = ["--only", "node-prep", "--only", "namespaces"]
    dry = run_process(["--no-color", "all", "--dry-run", *only, "-c", str(cluster_site)],
                      env=env, timeout=300)
    assert dry.returncode == 3, dry.stdout + dry.stderr  # preflight failed: said at the end
    rows = {line.split("│")[1].strip(): line for line in dry.stdout.splitlines()
            if line.count("│") >= 4}
    assert "not planned" in rows["node-prep"] and "ok" in rows["namespaces"], dry.stdout
    planned = int(rows["namespaces"].split("│")[3])  # other tests may have created them
    assert planned == 0 or "Namespace infra" in dry.stdout, dry.stdout
    assert "--dry-run still plans every stage it can reach" in dry.stderr

    status = run_process(["--no-color", "status", "--live", "-c", str(cluster_site)],
                         env=env, timeout=300)
    assert status.returncode == 1, status.stdout + status.stderr
    rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines()
            if line.count("│") >= 5}
    assert "not reached" in rows["node-prep"] and "not reached" not in rows["namespaces"]
    assert rows["namespaces"].split("│")[5].strip().isdigit(), rows["namespaces"]
    assert "could not be compared with the live site" in status.stderr


def test_tls_verification_failure_says_so_and_how_to_give_the_ca(tmp_path, kube_cluster):
    import yaml

    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    for entry in config["clusters"]:  # the real server, its CA no longer given
        entry["cluster"].pop("certificate-authority-data", None)
        entry["cluster"].pop("certificate-authority", None)
    for entry in config["users"]:  # client certificate files relative to the original
        for key in ("client-certificate", "client-key"):
            if key in entry["user"]:
                entry["user"][key] = str(kube_cluster.kubeconfig.parent / entry["user"][key])
    untrusting = tmp_path / "no-ca.yaml"
    untrusting.write_text(yaml.safe_dump(config))
    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(untrusting)}]
    site = write_site(tmp_path, data)
    result = run_process(["--no-color", "preflight", "--only", "namespaces", "-c", str(site)],
                         timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "TLS certificate is not signed by the CA the kubeconfig trusts" in output, output
    assert "certificate-authority-data" in output and "cannot reach" not in output


def _all_with_a_failing_stage(tmp_path, kube_cluster, *flags: str):
    """kube-batch refuses this cluster (Kubernetes >= 1.22): a stage failing for sure."""
    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(kube_cluster.kubeconfig)}]
    data["gates"] = {"webhooks": "skip", "services": "skip"}
    data.setdefault("components", {})["kube-batch"] = {"enabled": True}
    site = write_site(tmp_path, data)
    result = run_process(["--json", "--yes", "all", "-c", str(site), *flags,
                          "--only", "namespaces,node-labels,kube-batch,frameworkcontroller"],
                         env={"CUBEINSTALL_STATE_DIR": str(tmp_path / "state")}, timeout=300)
    events = json_events(result.stdout)
    done = [e["stage"] for e in events if e["event"] in ("stage-done", "stage-skipped")]
    failed = [e["stage"] for e in events if e["event"] == "stage-failed"]
    [error] = [e for e in events if e.get("exit_code")]
    return result, done, failed, error


def test_a_failed_stage_stops_only_what_needs_it(tmp_path, kube_cluster):
    result, done, failed, error = _all_with_a_failing_stage(tmp_path, kube_cluster, "--jobs", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert failed == ["kube-batch"]
    # frameworkcontroller comes after kube-batch in the registry but does not need it
    assert set(done) == {"namespaces", "node-labels", "frameworkcontroller"}, done
    assert error["message"].startswith("stage kube-batch: ")


def test_serial_keeps_the_registry_order_and_stops_at_the_first_failure(tmp_path, kube_cluster):
    result, done, failed, _ = _all_with_a_failing_stage(tmp_path, kube_cluster, "--serial")
    assert result.returncode == 1, result.stdout + result.stderr
    assert failed == ["kube-batch"] and done == ["namespaces", "node-labels"]
