"""CLI exit codes, events and start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import EXAMPLE_SITE, json_events, run_cli, run_process


def test_unknown_command_is_usage_error(capsys):
    code, _, err = run_cli(["instal"], capsys)
    assert code == 2 and "No such command" in err


def test_unknown_stage_name_suggests(capsys):
    code, _, err = run_cli(["plan", "--offline", "-c", str(EXAMPLE_SITE), "--only", "gatway"], capsys)
    assert code == 2 and "unknown stage 'gatway'" in err and "did you mean 'gateway'" in err


def test_stage_command_unknown_name(capsys):
    code, _, err = run_cli(["stage", "mysq", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 2 and "did you mean 'mysql'" in err


def test_disabled_stage_is_refused(capsys):
    code, _, err = run_cli(["stage", "kube-batch", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 2 and "disabled" in err and "enabled: true" in err


def test_config_error_exit_code(tmp_path, capsys):
    bad = tmp_path / "site.yaml"
    bad.write_text("site: x\n")
    code, _, err = run_cli(["all", "-c", str(bad)], capsys)
    assert code == 2 and "required but missing" in err


def test_interrupt_exits_130(monkeypatch, capsys):
    from cubeinstall.run import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    monkeypatch.setattr("cubeinstall.run.preflight.run_preflight", lambda *a: [])
    code, _, err = run_cli(["all", "--dry-run", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 130 and "interrupted" in err


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
    code, _, err = run_cli(["init", str(path)], capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2 and "HARBOR_PASSWORD is not set" in err
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
    code, _, err = run_cli(["preflight", "-c", str(EXAMPLE_SITE), "--only", "namespaces",
                            "--ignore", "cluster-verison"], capsys)
    assert code == 2 and "unknown check cluster-verison" in err


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


# --- stdout is for data, stderr for messages ----------------------------------------------

def test_render_to_stdout_is_only_yaml_and_warnings_go_to_stderr(tmp_path):
    """An empty upstream cache makes render warn about the stages it cannot render: the
    warnings must not end up inside `render > all.yaml` / `render | kubectl apply -f -`."""
    result = run_process(["render", "-c", str(EXAMPLE_SITE)],
                         env={"CUBEINSTALL_CACHE": str(tmp_path / "empty-cache")})
    assert result.returncode == 0, result.stderr
    assert "warning: istio: not rendered" in result.stderr
    assert "warning" not in result.stdout and "not rendered" not in result.stdout
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    # the stages that need no upstream file (node-labels, mysql, redis, efk, kubeconfig...)
    assert len(documents) > 20 and all("kind" in doc and "metadata" in doc for doc in documents)


def test_render_json_is_one_object_event_a_line(tmp_path):
    env = {"CUBEINSTALL_CACHE": str(tmp_path / "empty-cache")}
    as_yaml = run_process(["render", "-c", str(EXAMPLE_SITE), "--only", "redis",
                           "--only", "istio"], env=env)
    result = run_process(["render", "--json", "-c", str(EXAMPLE_SITE), "--only", "redis",
                          "--only", "istio"], env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON
    objects = [e for e in events if e["event"] == "object"]
    assert {e["stage"] for e in objects} == {"redis"}
    assert [e["object"] for e in objects] == [d for d in yaml.safe_load_all(as_yaml.stdout) if d]
    assert any(e["event"] == "warning" and e["stage"] == "istio" for e in events)


def test_errors_go_to_stderr_and_leave_stdout_empty(tmp_path):
    result = run_process(["render", "-c", str(tmp_path / "absent.yaml")])
    assert result.returncode == 2
    assert result.stdout == "" and "cannot read site file" in result.stderr


# --- kubeconfig: KUBECONFIG, --kubeconfig and --context, the kubectl way --------------------

def _kubeconfig(path, context: str, server: str, current: bool = True):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", **({"current-context": context} if current else {}),
        "clusters": [{"name": f"c-{context}", "cluster": {"server": server}}],
        "users": [{"name": f"u-{context}", "user": {"token": f"token-of-{context}-0123"}}],
        "contexts": [{"name": context, "context": {"cluster": f"c-{context}", "user": f"u-{context}"}}],
    }))
    return path


def _site_without_kubeconfig(tmp_path):
    from tests.helpers import example_site_data, write_site

    data = example_site_data()
    data["clusters"] = [{"name": "main"}]
    return write_site(tmp_path, data)


@pytest.fixture
def kubeconfigs(tmp_path):
    first = _kubeconfig(tmp_path / "first.yaml", "ctx-first", "https://first.example:6443")
    second = _kubeconfig(tmp_path / "second.yaml", "ctx-second", "https://second.example:6443",
                         current=False)
    flag = _kubeconfig(tmp_path / "flag.yaml", "ctx-flag", "https://flag.example:6443")
    return first, second, flag


def test_kubeconfig_env_list_is_honoured_when_the_site_names_none(tmp_path, kubeconfigs):
    """The kubeconfig each cluster uses, as kubectl decides it (the kubeconfig stage embeds
    no file of the platform cluster any more: its ServiceAccount is used in the cluster)."""
    from cubeinstall.site.kubeconfigs import effective_site
    from cubeinstall.site.loader import load_site

    first, second, flag = kubeconfigs
    site = load_site(_site_without_kubeconfig(tmp_path))
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "absent.yaml"), str(second), str(first)])}

    def chosen(**flags):
        effective, origins = effective_site(site, environ=env, **flags)
        cluster = effective.platform_cluster
        return Path(cluster.kubeconfig), cluster.context, origins[cluster.name]

    # the first current-context of the list (second.yaml sets none): first.yaml's
    assert chosen() == (first, "ctx-first", "KUBECONFIG")
    # --context picks the file of the list that defines it
    assert chosen(context="ctx-second") == (second, "ctx-second", "KUBECONFIG")
    # --kubeconfig overrides KUBECONFIG and the site
    assert chosen(kubeconfig=flag)[::2] == (flag, "--kubeconfig")
    # a site that names its kubeconfig keeps it (the example's demo file)
    example, origins = effective_site(load_site(EXAMPLE_SITE), environ=env)
    assert origins[example.platform_cluster.name] == "site.yaml"


@pytest.mark.parametrize("args, env, words", [
    (["--kubeconfig", "{tmp}/absent.yaml"], {}, "--kubeconfig: cannot read kubeconfig"),
    (["--context", "nope"], {}, "--context: context 'nope' is not in kubeconfig"),
    (["--kubeconfig", "{tmp}/flag.yaml", "--context", "nope"], {},
     "--context: context 'nope' is not in kubeconfig"),
    ([], {"KUBECONFIG": "{tmp}/absent.yaml"}, "KUBECONFIG: none of its files exists"),
    (["--context", "nope"], {"KUBECONFIG": "{tmp}/first.yaml"},
     "--context: context 'nope' is in none of the KUBECONFIG files"),
])
@pytest.mark.parametrize("command", [["render"], ["plan", "--offline"]])
def test_kubeconfig_errors_name_the_flag_not_the_site(command, args, env, words, tmp_path,
                                                      kubeconfigs):
    site = _site_without_kubeconfig(tmp_path) if env else EXAMPLE_SITE
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    env = {key: value.replace("{tmp}", str(tmp_path)) for key, value in env.items()}
    result = run_process([*command, "-c", str(site), "--only", "kubeconfig", *args], env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and "site.yaml" not in result.stderr, result.stderr


# --- fail fast on an API server that is not there; say so while waiting --------------------

def _free_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, then closed: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kubeconfig_for_port(tmp_path, port: int):
    return _kubeconfig(tmp_path / f"kubeconfig-{port}.yaml", "local", f"https://127.0.0.1:{port}")


@pytest.mark.parametrize("command, code", [
    (["plan", "--only", "namespaces"], 1),
    (["stage", "namespaces", "--dry-run"], 1),
    (["all", "--dry-run", "--only", "namespaces"], 3),
    (["upgrade-db", "--dry-run"], 1),
])
def test_a_refused_api_server_is_reported_within_seconds(command, code, tmp_path):
    import time

    port = _free_port()
    kubeconfig = _kubeconfig_for_port(tmp_path, port)
    started = time.monotonic()
    result = run_process([*command, "-c", str(EXAMPLE_SITE), "--kubeconfig", str(kubeconfig)],
                         timeout=60)
    seconds = time.monotonic() - started
    assert result.returncode == code, result.stdout + result.stderr
    assert seconds < 15, f"{command} took {seconds:.1f} s to report a refused connection"
    assert str(port) in result.stderr and "Connection refused" in result.stderr
    assert "Retrying (Retry(" not in result.stderr  # no urllib3 retries of its own


def test_a_server_that_does_not_answer_shows_retrying_on_stderr(tmp_path):
    """Accepts TCP connections (the kernel's backlog) and never answers, not even TLS."""
    import socket
    import subprocess
    import time

    from tests.helpers import REPO

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        kubeconfig = _kubeconfig_for_port(tmp_path, hung.getsockname()[1])
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "cubeinstall", "plan", "--only", "namespaces",
             "-c", str(EXAMPLE_SITE), "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=env)
        try:
            line = child.stderr.readline()
            seconds = time.monotonic() - started
        finally:
            child.kill()
            child.wait()
    assert "retrying (1/2) ..." in line and "cannot reach the API server" in line, line
    assert seconds < 25, f"the first word came after {seconds:.1f} s"
    assert child.stdout.read() == ""


# --- plan before change: ask on a terminal, refuse without one ----------------------------

@pytest.mark.parametrize("command", [["all"], ["stage", "namespaces"]])
def test_a_change_without_terminal_and_without_yes_is_refused_before_any_work(command):
    """The demo kubeconfig names a host that does not resolve: had preflight or a plan run,
    the output would say so. Refused first, exit 2, nothing changed."""
    result = run_process([*command, "-c", str(EXAMPLE_SITE)])  # stdin: not a terminal
    assert result.returncode == 2, result.stdout + result.stderr
    assert "there is no terminal to ask; nothing was changed" in result.stderr
    assert "--yes" in result.stderr and "cubeinstall plan" in result.stderr
    assert "preflight" not in result.stdout + result.stderr
    assert "kubernetes.cube.example.com" not in result.stdout + result.stderr


def test_dry_runs_need_no_confirmation(tmp_path):
    result = run_process(["stage", "namespaces", "--dry-run", "-c", str(EXAMPLE_SITE)])
    assert "no terminal to ask" not in result.stderr
    assert "kubernetes.cube.example.com" in result.stderr  # it went on to plan


# --- preflight output ---------------------------------------------------------------------

def test_preflight_lists_ignored_checks_and_ends_with_a_short_summary(tmp_path):
    kubeconfig = _kubeconfig_for_port(tmp_path, _free_port())
    base = ["--no-color", "preflight", "--only", "namespaces", "-c", str(EXAMPLE_SITE),
            "--kubeconfig", str(kubeconfig)]
    failing = run_process(base)
    assert failing.returncode == 3, failing.stdout + failing.stderr
    [summary] = [line for line in failing.stderr.splitlines() if line.startswith("error:")]
    assert summary == ("error: preflight: 3 problem(s) in cluster-nodes, cluster-permissions, "
                       "cluster-version (listed above); nothing was changed")
    assert failing.stdout.count("Connection refused") == 3  # once per check, no urllib3 echo

    ignoring = run_process([*base, "--ignore", "cluster-version", "--ignore",
                            "cluster-permissions", "--ignore", "cluster-nodes"])
    assert ignoring.returncode == 0, ignoring.stdout + ignoring.stderr
    rows = [line for line in ignoring.stdout.splitlines() if "│" in line]
    for check in ("cluster-version", "cluster-permissions", "cluster-nodes"):
        assert any(check in row and "ignored" in row for row in rows), ignoring.stdout


# --- small conventions --------------------------------------------------------------------

def test_only_takes_a_comma_separated_list(capsys):
    code, out, _ = run_cli(["--json", "plan", "--offline", "-c", str(EXAMPLE_SITE),
                            "--only", "namespaces,pv-pvc"], capsys)
    assert code == 0
    assert [e["stage"] for e in json_events(out) if e["event"] == "stage-plan"] == \
        ["namespaces", "pv-pvc"]


def test_render_only_a_disabled_stage_says_it_is_disabled():
    result = run_process(["render", "-c", str(EXAMPLE_SITE), "--only", "kube-batch"])
    assert result.returncode == 0, result.stderr
    assert "kube-batch: disabled for site demo-bj, not rendered" in result.stderr
    assert result.stdout == ""


def test_init_creates_the_folder(tmp_path):
    path = tmp_path / "sub" / "dir" / "site.yaml"
    result = run_process(["init", str(path)])
    assert result.returncode == 0, result.stderr
    assert path.read_text().startswith("#") and "Traceback" not in result.stderr


def test_shell_completion_is_offered_and_completes_commands():
    # typer detects the user's shell from the process tree (shellingham), which depends on
    # how the tests were started; its own switch makes --show-completion take the shell named
    shown = run_process(["--show-completion", "bash"],
                        env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert shown.returncode == 0 and "_CUBEINSTALL_COMPLETE=complete_bash" in shown.stdout
    completed = run_process([], env={"_CUBEINSTALL_COMPLETE": "complete_bash",
                                     "COMP_WORDS": "cubeinstall sta", "COMP_CWORD": "1"})
    assert set(completed.stdout.split()) == {"stage", "stages", "status"}, completed.stdout


def test_offline_plan_lines_carry_the_stage():
    result = run_process(["--no-color", "plan", "--offline", "-c", str(EXAMPLE_SITE),
                          "--only", "namespaces,pv-pvc"])
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if "create" in line
             and "│" not in line and "┃" not in line]
    assert any(line.startswith("namespaces:  create    Namespace infra  (") for line in lines)
    assert any(line.startswith("pv-pvc:  create") for line in lines)
    assert all(line.split(":")[0] in ("namespaces", "pv-pvc") for line in lines), lines


def test_a_site_mistake_found_inside_a_stage_exits_2_not_1(monkeypatch, capsys):
    """A ConfigError raised while a stage runs means nothing was changed and the site file is
    wrong: exit 2 with its hint, never wrapped into a failed stage (exit 1)."""
    from cubeinstall.core.errors import ConfigError
    from cubeinstall.stages.contract import StageCode

    def site_mistake(code, ctx, objects=None):
        raise ConfigError("node_prep.firewall: a value the stage cannot use",
                          hint="fix it in site.yaml")

    monkeypatch.setattr(StageCode, "plan", site_mistake)
    monkeypatch.setattr(StageCode, "apply", site_mistake)
    code, out, _ = run_cli(["--json", "--yes", "stage", "node-prep", "-c", str(EXAMPLE_SITE)],
                           capsys)
    assert code == 2, out
    events = json_events(out)
    assert not [e for e in events if e["event"] == "stage-failed"]
    assert events[-1]["event"] == "error" and events[-1]["hint"] == "fix it in site.yaml"


def test_images_list_lists_what_it_knows_and_names_what_needs_bundle_fetch(tmp_path):
    empty = run_process(["--json", "images", "list", "-c", str(EXAMPLE_SITE)],
                        env={"CUBEINSTALL_CACHE": str(tmp_path / "empty-cache")})
    assert empty.returncode == 0, empty.stderr
    listed = {e["source"] for e in json_events(empty.stdout) if e["event"] == "image"}
    warning = next(e for e in json_events(empty.stdout) if e["event"] == "warning")
    # mysql renders from cubeinstall's own template; istio needs its upstream files
    assert any("mysql" in image for image in listed) and len(listed) > 20, listed
    assert "istio" in warning["message"] and "cubeinstall bundle fetch" in warning["message"]
    assert "mysql" not in warning["message"].split(":")[1], warning
    # with the upstream files cached (the tests' seeded cache) everything is listed, no warning
    full = run_process(["--json", "images", "list", "-c", str(EXAMPLE_SITE)])
    assert full.returncode == 0, full.stderr
    assert not [e for e in json_events(full.stdout) if e["event"] == "warning"]
    assert listed < {e["source"] for e in json_events(full.stdout) if e["event"] == "image"}
