"""Malformed site files: exit code 2, and a message naming the field and its line."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.helpers import EXAMPLE_SITE, run_cli

BASE = EXAMPLE_SITE.read_text()
FIRST_CLUSTER = "    kubeconfig: kubeconfigs/main.demo.yaml   # a real site: ~/.kube/config"

# (id, text to replace in examples/site.yaml, replacement, field path in the
#  message, words of the message, text on the line the message must point at)
CASES = [
    ("unknown-top-key", "runtime: docker", "runtime: docker\nruntme: docker",
     "runtme", "did you mean 'runtime'", "runtme:"),
    ("misspelt-registry-key", "  insecure: true", "  insecure: true\n  pasword: x",
     "registry.pasword", "did you mean 'password'", "pasword:"),
    ("misspelt-node-key", "    address: node2.cube.example.com", "    adress: node2.cube.example.com",
     "nodes[1].adress", "did you mean 'address'", "adress:"),
    ("misspelt-storage-key", "  user: admin", "  usr: admin",
     "storage.usr", "did you mean 'user'", "usr:"),
    ("bad-site-name", "site: demo-bj", "site: Demo_BJ",
     "site", "DNS label", "site: Demo_BJ"),
    ("bad-domain", "domain: cube.example.com", "domain: cube..example",
     "domain", "not a valid DNS name", "domain: cube..example"),
    ("registry-scheme", "  host: harbor.example.com", "  host: https://harbor.example.com",
     "registry.host", "must not have a scheme", "host: https://"),
    ("registry-port-range", "  host: harbor.example.com", "  host: harbor.example.com:99999",
     "registry.host", "port out of range", "host: harbor.example.com:99999"),
    ("naming-mode", "  naming: flatten", "  naming: squash",
     "registry.naming", "'flatten' or 'keep-path'", "naming: squash"),
    ("runtime", "runtime: docker", "runtime: podman",
     "runtime", "'docker' or 'containerd'", "runtime: podman"),
    ("ssh-parallel-zero", "  parallel: 16", "  parallel: 0",
     "ssh.parallel", "greater than or equal to 1", "parallel: 0"),
    ("ssh-port-range", "  parallel: 16", "  parallel: 16\n  port: 70000",
     "ssh.port", "less than or equal to 65535", "port: 70000"),
    ("two-kinds", "    roles: [cpu, train, notebook, service]\n  - name: gpu1",
     "    roles: [cpu, gpu, train]\n  - name: gpu1",
     "nodes[1].roles", "exactly one kind", "roles: [cpu, gpu, train]"),
    ("no-kind", "    roles: [cpu, train, notebook, service]\n  - name: gpu1",
     "    roles: [train]\n  - name: gpu1",
     "nodes[1].roles", "exactly one kind", "roles: [train]"),
    ("unknown-role", "    roles: [cpu, train, notebook, service]\n  - name: gpu1",
     "    roles: [cpu, trainer]\n  - name: gpu1",
     "nodes[1].roles[1]", "Input should be", "roles: [cpu, trainer]"),
    ("node-name", "  - name: node2", "  - name: Node_2",
     "nodes[1].name", "DNS label", "name: Node_2"),
    ("duplicate-node-name", "  - name: node2", "  - name: node1",
     "nodes[1].name", "already used by nodes[0]", "- name: node1\n    address: node2.cube.example.com"),
    ("duplicate-address", "    address: node2.cube.example.com", "    address: node1.cube.example.com",
     "nodes[1].address", "already used by nodes[0]", "address: node1.cube.example.com\n    roles: [cpu, train, notebook, service]\n"),
    ("storage-type", "  type: cephfs", "  type: glusterfs",
     "storage.type", "'cephfs', 'nfs', 'local'", "type: glusterfs"),
    ("ceph-without-monitors", "  monitors: [ceph-mon1.cube.example.com:6789, ceph-mon2.cube.example.com:6789]\n", "",
     "storage.monitors", "required but missing", "storage:"),
    ("relative-mount-point", "  type: cephfs", "  type: cephfs\n  mount_point: data/k8s",
     "storage.mount_point", "absolute path", "mount_point: data/k8s"),
    ("missing-env-secret", "  password: {file: secrets/redis-password.demo}",
     "  password: ${env:CUBE_TEST_SURELY_UNSET}",
     "redis.password", "CUBE_TEST_SURELY_UNSET is not set", "${env:CUBE_TEST_SURELY_UNSET}"),
    ("missing-secret-file", "  password: {file: secrets/mysql-root-password.demo}",
     "  password: {file: secrets/absent.txt}",
     "mysql.password", "cannot read secret file", "secrets/absent.txt"),
    ("bad-secret-syntax", "  password: {file: secrets/redis-password.demo}",
     "  password: ${vault:redis}",
     "redis.password", "unknown secret reference syntax", "${vault:redis}"),
    ("secret-mapping-keys", "  password: {file: secrets/redis-password.demo}",
     "  password: {path: x}",
     "redis.password", "exactly one key, file", "password: {path: x}"),
    ("namespace-not-honoured", "  kube-batch: {enabled: false}",
     "  kube-batch: {enabled: false}\n  prometheus: {namespace: metrics}",
     "components.prometheus.namespace", "always installs into its own namespace",
     "prometheus: {namespace: metrics}"),
    ("existing-not-supported", "  kube-batch: {enabled: false}",
     "  kube-batch: {enabled: false}\n  efk: {mode: existing}",
     "components.efk.mode", "cannot use an existing installation (only istio, kubeflow, volcano can)",
     "efk: {mode: existing}"),
    ("replace-not-supported", "  kube-batch: {enabled: false}",
     "  kube-batch: {enabled: false}\n  efk: {mode: replace}",
     "components.efk.mode", "no other controller to replace (only kubeflow, volcano have)",
     "efk: {mode: replace}"),
    ("unknown-component", "  kube-batch: {enabled: false}", "  volcan: {enabled: false}",
     "components.volcan", "did you mean 'volcano'", "volcan:"),
    ("placement-without-node", "  kube-batch: {enabled: false}",
     "  kube-batch: {enabled: false}\n  mysql: {placement: database}",
     "components.mysql.placement", "no node has role 'database'", "mysql: {placement: database}"),
    ("external-mysql-without-host", "  mode: in-cluster", "  mode: external",
     "mysql.mode", "needs mysql.host", "mode: external"),
    ("gateway-address", "  addresses: [10.0.0.11]", "  addresses: [node1]",
     "gateway.addresses[0]", "not an IP address", "addresses: [node1]"),
    ("externalips-without-addresses", "  addresses: [10.0.0.11]", "  addresses: []",
     "gateway.addresses", "no addresses are given", "addresses: []"),
    ("environment", '  image_tag: "2026.03.01"', '  image_tag: "2026.03.01"\n  environment: PROD',
     "cube.environment", "is not clusters[0].name 'main'", "environment: PROD"),
    ("gpu-type-removed", '  image_tag: "2026.03.01"', '  image_tag: "2026.03.01"\n  gpu_type: NVIDIA',
     "cube.gpu_type", "unknown key", "gpu_type: NVIDIA"),
    ("bad-database-name", "  mode: in-cluster\n  password: {file: secrets/mysql-root-password.demo}",
     "  mode: in-cluster\n  password: {file: secrets/mysql-root-password.demo}\n"
     "  databases: [{name: 'kubeflow; DROP DATABASE x'}]",
     "mysql.databases[0].name", "must match", "databases:"),
    ("invalid-ipv4", "    address: node2.cube.example.com", "    address: 10.0.0.300",
     "nodes[1].address", "not a valid IP address: '10.0.0.300'", "address: 10.0.0.300"),
    ("bad-host-name", "    address: node2.cube.example.com", "    address: node 2!",
     "nodes[1].address", "not a host name or IP address", "address: node 2!"),
    ("monitor-port-range", "ceph-mon2.cube.example.com:6789]", "ceph-mon2.cube.example.com:99999]",
     "storage.monitors[1]", "port out of range (1-65535) in 'ceph-mon2.cube.example.com:99999'",
     "monitors: ["),
    ("monitor-port-not-a-number", "ceph-mon2.cube.example.com:6789]", "ceph-mon2.cube.example.com:ceph]",
     "storage.monitors[1]", "the port is a number", "monitors: ["),
    ("external-mysql-bad-ip", "  mode: in-cluster", "  mode: external\n  host: 192.168.1.256",
     "mysql.host", "not a valid IP address", "host: 192.168.1.256"),
    ("node-without-roles", "    roles: [cpu, train, notebook, service]\n  - name: gpu1", "  - name: gpu1",
     "nodes[1].roles", "required but missing: a node needs its kind", "name: node2"),
    ("roles-not-a-list", "    roles: [cpu, train, notebook, service]\n  - name: gpu1",
     "    roles: gpu\n  - name: gpu1", "nodes[1].roles", "write a list: [gpu]", "roles: gpu"),
    ("key-file-a-list", "  key_file: ~/.ssh/id_ed25519", "  key_file: [~/.ssh/id_ed25519]",
     "ssh.key_file", "must be one path, a string (got a list)", "key_file: ["),
    ("kubeconfig-a-mapping", "    kubeconfig: kubeconfigs/main.demo.yaml",
     "    kubeconfig: {path: kubeconfigs/main.demo.yaml}",
     "clusters[0].kubeconfig", "must be one path, a string (got a mapping)", "kubeconfig: {path"),
    ("duplicate-key", "  username: robot-cube", "  username: robot-cube\n  username: robot-two",
     "registry.username", "given twice (first at line 18); keep one", "username: robot-two"),
    # every cluster after the first has a gateway of its own (#15)
    ("cluster-without-gateway", FIRST_CLUSTER, FIRST_CLUSTER + "\n  - name: east",
     "clusters[1]", "cluster east needs `domain`", "- name: east"),
    ("first-cluster-domain", FIRST_CLUSTER, FIRST_CLUSTER + "\n    domain: main.example.com",
     "clusters[0].domain", "move clusters[0].domain there", "domain: main.example.com"),
    ("cluster-domain-twice", FIRST_CLUSTER,
     FIRST_CLUSTER + "\n  - name: east\n    domain: cube.example.com\n"
     "    gateway: {addresses: [10.0.1.11]}",
     "clusters[1].domain", "is also domain", "domain: cube.example.com\n    gateway"),
    ("gateway-address-twice", FIRST_CLUSTER,
     FIRST_CLUSTER + "\n  - name: east\n    domain: east.example.com\n"
     "    gateway: {addresses: [10.0.1.11, 10.0.0.11]}",
     "clusters[1].gateway.addresses[1]", "10.0.0.11 is also in gateway.addresses",
     "gateway: {addresses: [10.0.1.11, 10.0.0.11]}"),
    ("gateway-node-port-clash", FIRST_CLUSTER,
     FIRST_CLUSTER + "\n  - name: east\n    domain: east.example.com\n"
     "    gateway: {expose: NodePort, node_port_http: 31080, node_port_http_alt: 31080}",
     "clusters[1].gateway.node_port_http_alt", "the two Gateways need two ports",
     "gateway: {expose: NodePort"),
    ("cluster-gateway-without-addresses", FIRST_CLUSTER,
     FIRST_CLUSTER + "\n  - name: east\n    domain: east.example.com\n    gateway: {}",
     "clusters[1].gateway.addresses", "no addresses are given", "gateway: {}"),
    ("volume-size", "  type: cephfs", "  type: cephfs\n", None, None, None),
    ("no-nodes", None, None, None, None, None),
    ("yaml-syntax", "  naming: flatten", "  naming: [flatten", "", "not valid YAML", None),
    ("not-a-mapping", None, None, None, None, None),
]
# Two rows above are placeholders for cases built differently below; keep the
# table simple for the common shape and handle those explicitly.
CASES = [case for case in CASES if case[1] is not None and case[3] is not None]


def _line_of(text: str, needle: str) -> int:
    index = text.index(needle)
    return text.count("\n", 0, index) + 1 + (needle[: len(needle) - len(needle.lstrip("\n"))].count("\n"))


@pytest.fixture
def site_dir(tmp_path):
    for sub in ("secrets", "kubeconfigs"):
        shutil.copytree(EXAMPLE_SITE.parent / sub, tmp_path / sub)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_malformed_site_is_refused_with_field_and_line(case, site_dir, capsys):
    _id, old, new, field, words, line_text = case
    assert old in BASE, f"case {_id}: the example no longer contains {old!r}"
    text = BASE.replace(old, new, 1)
    path = site_dir / "site.yaml"
    path.write_text(text)

    code, out, err = run_cli(["validate", "--config", str(path)], capsys)

    assert code == 2, out + err
    output = out + err
    if field:
        assert f": {field}: " in output, output
    assert words in output, output
    if line_text is not None:
        line = _line_of(text, line_text)
        assert re.search(rf"site\.yaml:{line}:\d+: {re.escape(field)}", output), (line, output)


def test_every_problem_is_reported_at_once(site_dir, capsys):
    text = (BASE.replace("runtime: docker", "runtime: podman")
                .replace("  naming: flatten", "  naming: squash")
                .replace("    address: node2.cube.example.com", "    adress: node2.cube.example.com"))
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    assert "4 problems" in err
    for field in ("runtime", "registry.naming", "nodes[1].adress", "nodes[1].address"):
        assert f": {field}: " in err


def test_yaml_syntax_error_names_line(site_dir, capsys):
    path = site_dir / "site.yaml"
    path.write_text(BASE.replace("  naming: flatten", "  naming: [flatten"))
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    assert "not valid YAML" in err
    assert re.search(r"site\.yaml:\d+:\d+", err)


def _refused_at(site_dir, capsys, text: str, marker: str) -> tuple[str, int]:
    """`validate` of ``text`` exits 2; its stderr and the line holding ``marker``."""
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    return err, text.count("\n", 0, text.index(marker)) + 1


def test_gpu_runtime_enabled_without_gpu_nodes(site_dir, capsys):
    text = (BASE.replace("    roles: [gpu, train, notebook, service]", "    roles: [cpu, train]")
                .replace("  kube-batch: {enabled: false}",
                         "  kube-batch: {enabled: false}\n  gpu-runtime: {enabled: true}"))
    err, line = _refused_at(site_dir, capsys, text, "gpu-runtime: {enabled: true}")
    assert re.search(rf"site\.yaml:{line}:\d+: components\.gpu-runtime\.enabled: .*no node has role gpu", err), err


def test_registry_trust_enabled_without_anything_to_trust(site_dir, capsys):
    text = (BASE.replace("  insecure: true\n", "")
                .replace("  kube-batch: {enabled: false}",
                         "  kube-batch: {enabled: false}\n  registry-trust: {enabled: true}"))
    err, line = _refused_at(site_dir, capsys, text, "registry-trust: {enabled: true}")
    assert re.search(rf"site\.yaml:{line}:\d+: components\.registry-trust\.enabled: "
                     r".*insecure or has a ca_file", err), err


def test_site_must_be_a_mapping(site_dir, capsys):
    path = site_dir / "site.yaml"
    path.write_text("- just\n- a list\n")
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2 and "site.yaml:1:1" in err and "mapping" in err


def test_site_without_nodes(site_dir, capsys):
    start = BASE.index("nodes:")
    end = BASE.index("storage:")
    path = site_dir / "site.yaml"
    path.write_text(BASE[:start] + "nodes: []\n\n" + BASE[end:])
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2 and ": nodes: " in err and "at least 1 item" in err


def test_missing_site_file(tmp_path, capsys):
    code, _, err = run_cli(["validate", "-c", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "cannot read site file" in err and "cubeinstall init" in err


def test_valid_example(capsys):
    code, out, _ = run_cli(["validate", "-c", str(EXAMPLE_SITE)], capsys)
    assert code == 0 and "is valid" in out


def test_tab_says_use_spaces(site_dir, capsys):
    text = BASE.replace("  parallel: 16", "\tparallel: 16")
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    line = _line_of(text, "\tparallel")
    assert code == 2
    assert re.search(rf"site\.yaml:{line}:\d+: not valid YAML: a tab character", err), err
    assert "use spaces" in err


def test_cross_field_problems_come_with_schema_problems(site_dir, capsys):
    """Schema problems in some sections do not hide the cross-field rules of the others."""
    text = (BASE.replace("runtime: docker", "runtime: podman")
                .replace("  - name: node2", "  - name: node1")
                .replace("  mode: in-cluster", "  mode: external")
                .replace("  kube-batch: {enabled: false}",
                         "  kube-batch: {enabled: false}\n  efk: {mode: existing}"))
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    assert "4 problems" in err, err
    for field, words in (("runtime", "'docker' or 'containerd'"),
                         ("nodes[1].name", "already used by nodes[0]"),
                         ("mysql.mode", "needs mysql.host"),
                         ("components.efk.mode", "cannot use an existing installation")):
        assert re.search(rf"site\.yaml:\d+:\d+: {re.escape(field)}: .*{re.escape(words)}", err), (field, err)


def test_rules_do_not_judge_a_section_that_failed(site_dir, capsys):
    """components fails (an unknown key): the placement rule must not judge the defaults,
    by which mysql would be enabled with no node of role mysql."""
    text = (BASE.replace("roles: [cpu, train, notebook, service, mysql, redis,",
                         "roles: [cpu, train, notebook, service, redis,")
                .replace("  kube-batch: {enabled: false}",
                         "  kube-batch: {enabled: false}\n  mysql: {enabled: false, enabld: true}"))
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    assert "components.mysql.enabld: unknown key" in err and "1 problem " in err, err


def test_a_section_that_failed_gets_only_its_own_problems(site_dir, capsys):
    """nodes fails (an invalid address): the rules reading nodes are not run; the others are."""
    text = BASE.replace("  mode: in-cluster", "  mode: external", 1)
    text = text.replace("address: node1.cube.example.com", "address: 10.0.0.300")
    path = site_dir / "site.yaml"
    path.write_text(text)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2
    assert "2 problems" in err and "10.0.0.300" in err and "needs mysql.host" in err, err


def test_every_rule_runs_with_only_the_sections_it_declares():
    """What `reads` declares is all a rule reads: on a site holding nothing else it runs."""
    from cubeinstall.site.checks import RULES
    from cubeinstall.site.loader import load_site

    site = load_site(EXAMPLE_SITE)
    for rule in RULES:
        partial = site.model_copy()
        for name in list(partial.__dict__):
            if name not in rule.sections:
                partial.__dict__.pop(name)
        list(rule(partial))  # an undeclared section would raise AttributeError here


def test_a_rule_with_a_bug_raises_instead_of_being_skipped(monkeypatch):
    """An AttributeError inside a rule is its own bug, not a missing section."""
    from cubeinstall.site import checks
    from cubeinstall.site.loader import load_site

    monkeypatch.setattr(checks, "RULES", list(checks.RULES))  # registered for this test only

    @checks.reads("nodes")
    def buggy(site):
        yield (("nodes",), site.nodes[0].no_such_field)

    with pytest.raises(AttributeError, match="no_such_field"):
        checks.check_site(load_site(EXAMPLE_SITE))
