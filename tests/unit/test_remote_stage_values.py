"""What the node stages derive from site values: fstab lines, the docker patch, checks."""

from __future__ import annotations

import re

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.remote.edits import Union
from cubeinstall.site.model import Site
from cubeinstall.stages import gpu_runtime, storage


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


def test_docker_patch_adds_the_registry_only_when_insecure():
    insecure = make_site(CEPH, registry={"host": "harbor.example.com:5000", "insecure": True})
    secure = make_site(CEPH, registry={"host": "harbor.example.com"})
    assert gpu_runtime.docker_patch(insecure, "/usr/bin/ncr")["insecure-registries"] == \
        Union(("harbor.example.com:5000",))
    assert "insecure-registries" not in gpu_runtime.docker_patch(secure, "/usr/bin/ncr")
    assert gpu_runtime.docker_patch(secure, "/usr/bin/ncr")["runtimes"] == {
        "nvidia": {"path": "/usr/bin/ncr", "runtimeArgs": []}}


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
