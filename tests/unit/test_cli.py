"""CLI exit codes, events and start-up imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import EXAMPLE_SITE, json_events, run_cli


def test_unknown_command_is_usage_error(capsys):
    code, _, err = run_cli(["instal"], capsys)
    assert code == 2 and "No such command" in err


def test_unknown_stage_name_suggests(capsys):
    code, out, _ = run_cli(["plan", "--offline", "-c", str(EXAMPLE_SITE), "--only", "gatway"], capsys)
    assert code == 2 and "unknown stage 'gatway'" in out and "did you mean 'gateway'" in out


def test_stage_command_unknown_name(capsys):
    code, out, _ = run_cli(["stage", "mysq", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 2 and "did you mean 'mysql'" in out


def test_disabled_stage_is_refused(capsys):
    code, out, _ = run_cli(["stage", "kube-batch", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 2 and "disabled" in out and "enabled: true" in out


def test_config_error_exit_code(tmp_path, capsys):
    bad = tmp_path / "site.yaml"
    bad.write_text("site: x\n")
    code, out, _ = run_cli(["all", "-c", str(bad)], capsys)
    assert code == 2 and "required but missing" in out


def test_interrupt_exits_130(monkeypatch, capsys):
    from cubeinstall.run import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    monkeypatch.setattr("cubeinstall.run.preflight.run_preflight", lambda *a: [])
    code, out, _ = run_cli(["all", "--dry-run", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 130 and "interrupted" in out


def test_stage_failure_exits_1_and_names_the_stage(monkeypatch, capsys):
    from cubeinstall.core.errors import StageFailed
    from cubeinstall.stages.contract import StageCode

    def failing(code, ctx, objects=None):
        raise StageFailed(code.stage.name, "host node2: connection refused", hint="check sshd")

    monkeypatch.setattr(StageCode, "plan", failing)
    monkeypatch.setattr("cubeinstall.run.preflight.run_preflight", lambda *a: [])
    code, out, _ = run_cli(["--json", "all", "--dry-run", "-c", str(EXAMPLE_SITE), "--only", "namespaces"], capsys)
    assert code == 1
    events = json_events(out)
    assert any(e["event"] == "stage-failed" and e["stage"] == "namespaces" for e in events)
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 1


def test_json_stages_events(capsys):
    code, out, _ = run_cli(["--json", "stages", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 0
    stages = [e for e in json_events(out) if e["event"] == "stage"]
    assert [s["name"] for s in stages][:3] == ["node-prep", "storage", "gpu-runtime"]
    assert {s["name"]: s["enabled"] for s in stages}["kube-batch"] == "no"


def test_offline_plan_lists_objects_per_stage(capsys):
    code, out, _ = run_cli(["--json", "plan", "--offline", "-c", str(EXAMPLE_SITE),
                            "--only", "namespaces", "--only", "pv-pvc"], capsys)
    assert code == 0
    plans = {e["stage"]: e for e in json_events(out) if e["event"] == "stage-plan"}
    assert plans["namespaces"]["create"] == 39 and plans["pv-pvc"]["create"] == 26
    changes = [e for e in json_events(out) if e["event"] == "change"]
    assert {"target": "Namespace infra", "action": "create"}.items() <= changes[0].items()


def test_init_writes_a_site_that_validates_once_secrets_exist(tmp_path, monkeypatch, capsys):
    path = tmp_path / "site.yaml"
    code, _, _ = run_cli(["init", str(path)], capsys)
    assert code == 0 and path.exists()
    code, out, _ = run_cli(["init", str(path)], capsys)
    assert code == 2 and "already exists" in out
    code, out, _ = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2 and "HARBOR_PASSWORD is not set" in out
    for name in ("HARBOR_PASSWORD", "CEPH_ADMIN_KEY", "MYSQL_ROOT_PASSWORD", "REDIS_PASSWORD"):
        monkeypatch.setenv(name, "x-" + name)
    code, out, _ = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 0, out


def test_help_does_not_import_network_libraries():
    code = ("import sys, runpy; sys.argv=['cubeinstall','--help'];\n"
            "from cubeinstall import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('kubernetes','paramiko','pymysql') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout, result.stdout


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("cubeinstall ")


def test_preflight_failure_exits_3_before_any_change(monkeypatch, capsys):
    """The demo kubeconfig names a host that does not resolve: cluster checks fail."""
    from cubeinstall.stages.contract import StageCode

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stage ran after a failed preflight")

    monkeypatch.setattr(StageCode, "apply", must_not_run)
    code, out, _ = run_cli(["--json", "all", "-c", str(EXAMPLE_SITE), "--only", "namespaces"], capsys)
    assert code == 3, out
    failed = [e for e in json_events(out) if e["event"] == "preflight" and e["grade"] == "error"]
    assert {e["check"] for e in failed} >= {"cluster-version"}
    assert "kubernetes.cube.example.com" in out


def test_preflight_unknown_ignore_id(capsys):
    code, out, _ = run_cli(["preflight", "-c", str(EXAMPLE_SITE), "--only", "namespaces",
                            "--ignore", "cluster-verison"], capsys)
    assert code == 2 and "unknown check cluster-verison" in out


@pytest.mark.parametrize("argv, expected", [
    (["plan", "-c", "s.yaml", "--json"], ["-c", "s.yaml", "--json", "plan"]),
    (["stage", "redis", "--config=s.yaml", "-v", "--dry-run"], ["--config=s.yaml", "-v", "stage", "redis", "--dry-run"]),
    (["images", "list", "--kubeconfig", "k", "--context", "c", "-y"], ["--kubeconfig", "k", "--context", "c", "-y", "images", "list"]),
    (["render", "--", "-c", "x"], ["render", "--", "-c", "x"]),
])
def test_global_options_move_before_the_subcommand(argv, expected):
    from cubeinstall.cli.options import hoist_global_options

    assert hoist_global_options(argv) == expected


def test_global_options_work_after_the_subcommand(capsys):
    code, out, _ = run_cli(["validate", "--json", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 0
    [valid] = [e for e in json_events(out) if e["event"] == "valid"]
    assert valid["site"] == "demo-bj"
    code, out, _ = run_cli(["images", "list", "--json", "--config", str(EXAMPLE_SITE)], capsys)
    assert code == 0 and any(e["event"] == "image" for e in json_events(out))
