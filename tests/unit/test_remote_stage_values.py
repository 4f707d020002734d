"""What the node stages derive from site values: fstab lines, the docker patch, checks."""

from __future__ import annotations

import re

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.remote.errors import Refused
from cubeinstall.site.model import Site
from cubeinstall.stages import gpu_runtime, registry_trust, storage


def make_site(storage_data: dict, **extra) -> Site:
    data = {"site": "t", "domain": "t.example.com",
            "nodes": [{"name": "n1", "address": "192.0.2.1", "roles": ["gpu"]}],
            "storage": storage_data, "mysql": {"password": "mysql-pw-1"}, "redis": {"password": "redis-pw-1"},
            "gateway": {"expose": "NodePort"}, **extra}
    return Site.model_validate(data, context={"base_dir": "/tmp"})


CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789", "10.0.0.32:6789"], "user": "admin",
        "secret": "AQBkey=="}


@pytest.mark.parametrize("storage_data, line", [
    (CEPH, ("10.0.0.31:6789,10.0.0.32:6789:/ /data/k8s ceph "
            "name=admin,secretfile=/etc/ceph/admin.secret,_netdev,noatime 0 0")),
    ({**CEPH, "path": "/volumes/cube", "mount_at": "/mnt/ceph fs", "options": ["rsize=1048576"]},
     ("10.0.0.31:6789,10.0.0.32:6789:/volumes/cube /mnt/ceph\\040fs ceph "
      "name=admin,secretfile=/etc/ceph/admin.secret,_netdev,noatime,rsize=1048576 0 0")),
    ({"type": "nfs", "server": "nas.example.com", "export": "/export/k8s"},
     "nas.example.com:/export/k8s /data/k8s nfs _netdev,noatime 0 0"),
])
def test_fstab_line(storage_data, line):
    assert storage.fstab_line(make_site(storage_data)) == line


def test_fstab_key_matches_only_entries_of_our_mount_point():
    key = re.compile(storage.fstab_key(make_site({**CEPH, "mount_point": "/data/k 8s"})))
    assert key.search("old:/ /data/k\\0408s ceph defaults 0 0")
    assert not key.search("# old:/ /data/k\\0408s ceph defaults 0 0")
    assert not key.search("old:/ /data/k\\0408s2 ceph defaults 0 0")


@pytest.mark.parametrize("user", ["a,b", "a b", "x=y", "../etc/passwd", ".hidden"])
def test_unusable_ceph_user_is_a_config_error(user):
    with pytest.raises(ConfigError, match="storage.user"):
        storage.check_values(make_site({**CEPH, "user": user}))


def test_hostile_but_representable_values_pass_the_check():
    storage.check_values(make_site({**CEPH, "user": "x'\"$(touch;CANARY)",
                                    "mount_point": "/data/k8s';$(touch /tmp/c);'"}))


def test_docker_patch_holds_only_the_nvidia_keys():
    """insecure-registries belongs to registry-trust: two stages never write one key."""
    assert gpu_runtime.docker_patch("/usr/bin/ncr") == {
        "default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "/usr/bin/ncr", "runtimeArgs": []}}}


V2_CRI = ("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")


@pytest.mark.parametrize("text, running, key, value", [
    (None, "version = 2\n", V2_CRI, "/etc/containerd/certs.d"),  # new file: the running version
    (None, "version = 3\n", ("plugins", "io.containerd.cri.v1.images", "registry", "config_path"),
     "/etc/containerd/certs.d"),
    ("[plugins.cri]\n", "version = 3\n", ("plugins", "cri", "registry", "config_path"),
     "/etc/containerd/certs.d"),  # no version line: version 1, whatever runs
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/srv/hosts"\n',
     "", V2_CRI, "/etc/containerd/certs.d:/srv/hosts"),  # a directory already named is kept
])
def test_containerd_config_path_per_config_version(text, running, key, value):
    edit = registry_trust._config_edit(text, running)
    assert edit.values == ((key, value),)


def test_containerd_2_defaults_need_no_config_file():
    running = ("version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n"
               "  config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'\n")
    assert registry_trust._config_edit(None, running) is None


@pytest.mark.parametrize("text, message", [
    (('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
     '  endpoint = ["https://m"]\n'), "refuses beside config_path"),
    (('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."r".tls]\n'
     '  insecure_skip_verify = true\n'), "refuses beside config_path"),
    ("version = 7\n", "config version 7"),
    ("version = \n", "not valid TOML"),
])
def test_containerd_configs_it_cannot_extend_are_refused(text, message):
    with pytest.raises(Refused, match=message):
        registry_trust._config_edit(text, "version = 2\n")


def test_registry_ca_file_must_be_a_readable_pem(tmp_path):
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "ca.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")

    def site(**registry):
        data = {"site": "t", "domain": "t.example.com",
                "nodes": [{"name": "n1", "address": "192.0.2.1", "roles": ["cpu"]}],
                "storage": {"type": "local"}, "mysql": {"password": "mysql-pw-1"},
                "redis": {"password": "redis-pw-1"}, "gateway": {"expose": "NodePort"},
                "registry": {"host": "r.example.com", **registry}}
        return Site.model_validate(data, context={"base_dir": str(tmp_path)})

    assert registry_trust.ca_certificate(site(ca_file="ca.pem")) == pem
    assert registry_trust.ca_certificate(site(ca_file="ca.pem", insecure=True)) is None
    with pytest.raises(ConfigError, match=r"registry.ca_file .*key.pem holds no PEM certificate"):
        registry_trust.check_values(site(ca_file="key.pem"))
    with pytest.raises(ConfigError, match=r"registry.ca_file .*missing.pem: cannot read it"):
        registry_trust.check_values(site(ca_file="missing.pem"))


@pytest.mark.parametrize("config, configured", [
    (None, False),
    ("version = 2\n", False),
    (('[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "nvidia"\n'
      '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'), True),
    (("[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'nvidia'\n"
      "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]\n"), True),
    ('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n', False),  # not default
])
def test_containerd_nvidia_detection(config, configured):
    assert gpu_runtime.containerd_has_nvidia(config) is configured
