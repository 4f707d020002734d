"""Where to connect: node settings > explicit ssh: settings > ~/.ssh/config > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cubeinstall.remote.target import resolve
from cubeinstall.site.model import Site

CONFIG = """
Host gpu-alias
  HostName 192.0.2.50
  User ubuntu
  Port 2222
  IdentityFile {key}
  ProxyJump jump@bastion:2200,second

Host 192.0.2.11
  User fromconfig
  Port 2022

Host bastion
  HostName 192.0.2.1

Host *
  IdentityFile ~/.ssh/cubeinstall-test-missing-key
"""


def site(tmp_path: Path, ssh: dict, nodes: list[dict]) -> Site:
    key = tmp_path / "config_key"
    key.write_text("not really a key")
    config = tmp_path / "ssh_config"
    config.write_text(CONFIG.format(key=key))
    data = {
        "site": "t", "domain": "t.example.com",
        "ssh": {"config_file": str(config), "known_hosts": str(tmp_path / "kh"), **ssh},
        "nodes": [{"roles": ["cpu"], **node} for node in nodes],
        "storage": {"type": "local"}, "mysql": {"password": "mysql-pw-1"}, "redis": {"password": "redis-pw-1"},
        "gateway": {"expose": "NodePort"},
    }
    return Site.model_validate(data, context={"base_dir": str(tmp_path)})


def test_config_fills_what_site_yaml_leaves_open(tmp_path):
    s = site(tmp_path, {}, [{"name": "n1", "address": "192.0.2.11"}])
    target = resolve(s, s.nodes[0])
    assert (target.endpoint.hostname, target.endpoint.user, target.endpoint.port) == \
        ("192.0.2.11", "fromconfig", 2022)
    assert target.sudo  # not root: sudo by default
    assert target.endpoint.key_files == ()  # a missing IdentityFile is skipped, as ssh does


def test_explicit_site_values_beat_the_config(tmp_path):
    s = site(tmp_path, {"user": "root", "port": 22},
             [{"name": "n1", "address": "192.0.2.11"},
              {"name": "n2", "address": "192.0.2.11", "user": "ops", "port": 2200, "sudo": False}])
    first, second = (resolve(s, node) for node in s.nodes)
    assert (first.endpoint.user, first.endpoint.port, first.sudo) == ("root", 22, False)
    assert (second.endpoint.user, second.endpoint.port, second.sudo) == ("ops", 2200, False)


def test_alias_with_proxy_jump_chain(tmp_path):
    s = site(tmp_path, {"key_file": str(tmp_path / "site_key")},
             [{"name": "gpu1", "address": "10.9.9.9", "ssh_alias": "gpu-alias"}])
    target = resolve(s, s.nodes[0])
    assert (target.endpoint.hostname, target.endpoint.user, target.endpoint.port) == \
        ("192.0.2.50", "ubuntu", 2222)
    assert target.endpoint.key_files == (tmp_path / "site_key", tmp_path / "config_key")
    first, second = target.jumps
    assert (first.hostname, first.user, first.port) == ("192.0.2.1", "jump", 2200)
    assert (second.hostname, second.user, second.port) == ("second", "ubuntu", 22)
    assert first.password is None  # the node's password is never offered to a jump host
    assert target.label == "gpu1 (ubuntu@192.0.2.50:2222)"


def test_alias_without_hostname_uses_the_address(tmp_path):
    s = site(tmp_path, {}, [{"name": "n1", "address": "192.0.2.77", "ssh_alias": "no-such-block"}])
    assert resolve(s, s.nodes[0]).endpoint.hostname == "192.0.2.77"


@pytest.mark.parametrize("node, ssh, expected", [
    ({}, {}, None),
    ({}, {"sudo_password": "site-sudo"}, "site-sudo"),
    ({"sudo_password": "node-sudo"}, {"sudo_password": "site-sudo"}, "node-sudo"),
])
def test_sudo_password_precedence(tmp_path, node, ssh, expected):
    s = site(tmp_path, ssh, [{"name": "n1", "address": "192.0.2.5", **node}])
    secret = resolve(s, s.nodes[0]).sudo_password
    assert (secret.reveal() if secret else None) == expected
