"""storage on real sshd nodes: CephFS/NFS/local, fstab, mount, idempotence, injection."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.site import platform
from cubeinstall.stages import node_prep, storage
from tests.servers.sshd import NodeSpec, make_site, snapshot, stage_context, trust

pytestmark = pytest.mark.ssh

SECRET = "AQBcephKey+/=='$(touch /tmp/secret-canary)'"
CEPH = {"type": "cephfs", "monitors": ["10.0.0.31:6789", "10.0.0.32:6789"], "user": "admin",
        "secret": SECRET}
CEPH_LINE = ("10.0.0.31:6789,10.0.0.32:6789:/ /data/k8s ceph "
             "name=admin,secretfile=/etc/ceph/admin.secret,_netdev,noatime 0 0")
WATCHED = ("/etc", "/data/k8s")  # /etc: fstab, ceph secret, backups, anything else


def fstab_lines(node, mount_point: str) -> list[str]:
    return [line for line in node.read("/etc/fstab").decode().splitlines()
            if not line.startswith("#") and line.split()[1:2] == [mount_point]]


def backups(node) -> list[str]:
    return sorted(p.name for p in node.path("/etc").rglob("*.cubeinstall-*.bak"))


PLAIN = NodeSpec()


def started(sandbox_nodes, tmp_path, count=1, spec=PLAIN, **site):
    nodes = sandbox_nodes.start(count, spec)
    trust(nodes, tmp_path / "known_hosts")
    return nodes, make_site(nodes, tmp_path, sandbox_nodes.client_key, **site)


def test_cephfs_mount_then_a_second_run_changes_nothing(sandbox_nodes, tmp_path):
    nodes, site = started(sandbox_nodes, tmp_path, 2, storage=CEPH)
    first = storage.apply(stage_context(site))
    for node in nodes:
        assert fstab_lines(node, "/data/k8s") == [CEPH_LINE]
        secret = node.path("/etc/ceph/admin.secret")
        assert secret.read_text() == SECRET + "\n"
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        [call] = node.shim_calls("mount.ceph")  # the real mount(8) read our fstab line
        assert call[1:3] == ["10.0.0.31:6789,10.0.0.32:6789:/", "/data/k8s"]
        assert "name=admin" in call[4] and "secretfile=/etc/ceph/admin.secret" in call[4]
        for sub in platform.DATA_DIRECTORIES:
            assert node.path(f"/data/k8s/{sub}").is_dir()
        assert oct(node.path("/data/k8s/monitoring/grafana").stat().st_mode & 0o777) == "0o777"
        assert [p.name for p in node.path("/data/k8s").iterdir() if "probe" in p.name] == []
        assert not node.path("/tmp/secret-canary").exists()
    assert {c.action for c in first if c.target.endswith(":mount /data/k8s")} == {"create"}

    # The probe (create + remove a file) touches the mount root's mtime, and only that.
    before = {n.name: snapshot(n, *WATCHED, skip=("/data/k8s",)) for n in nodes}
    kept = {n.name: backups(n) for n in nodes}
    second = storage.apply(stage_context(site))
    assert {c.action for c in second} == {"unchanged"}
    for node in nodes:
        assert snapshot(node, *WATCHED, skip=("/data/k8s",)) == before[node.name]
        assert len(kept[node.name]) == 1 and kept[node.name][0].startswith("fstab.cubeinstall-")
        assert backups(node) == kept[node.name]  # no new backup: nothing was replaced
        assert len(node.shim_calls("mount.ceph")) == 1


def test_plan_shows_diffs_and_writes_nothing(sandbox_nodes, tmp_path):
    nodes, site = started(sandbox_nodes, tmp_path, storage=CEPH)
    before = snapshot(nodes[0], *WATCHED)
    changes = storage.plan(stage_context(site))
    [fstab] = [c for c in changes if c.target.endswith(":/etc/fstab")]
    assert fstab.action == "update" and f"+{CEPH_LINE}" in fstab.diff
    [secret] = [c for c in changes if c.target.endswith(":/etc/ceph/admin.secret")]
    assert secret.action == "create" and "AQBceph" not in secret.diff
    assert snapshot(nodes[0], *WATCHED) == before
    assert nodes[0].shim_calls("mount.ceph") == []


def test_conflicting_fstab_entry_is_replaced_not_duplicated(sandbox_nodes, tmp_path):
    old = b"UUID=1 / ext4 defaults 0 1\nnas:/old /data/k8s nfs defaults 0 0\n"
    nodes, site = started(sandbox_nodes, tmp_path, spec=NodeSpec(files={"/etc/fstab": old}),
                          storage=CEPH)
    changes = storage.apply(stage_context(site))
    node = nodes[0]
    assert node.read("/etc/fstab") == f"UUID=1 / ext4 defaults 0 1\n{CEPH_LINE}\n".encode()
    [backup] = backups(node)
    assert node.read(f"/etc/{backup}") == old
    [fstab] = [c for c in changes if c.target.endswith(":/etc/fstab")]
    assert f"backup: /etc/{backup}" in fstab.detail and "-nas:/old" in fstab.diff


def test_mount_elsewhere_and_symlink(sandbox_nodes, tmp_path):
    nodes, site = started(sandbox_nodes, tmp_path, storage={**CEPH, "mount_at": "/mnt/cephfs"})
    storage.apply(stage_context(site))
    node = nodes[0]
    assert node.path("/data/k8s").is_symlink()
    assert str(node.path("/data/k8s").readlink()) == "/mnt/cephfs"
    assert fstab_lines(node, "/mnt/cephfs") == [CEPH_LINE.replace(" /data/k8s ", " /mnt/cephfs ")]
    assert node.path("/mnt/cephfs/kubeflow/pipeline/workspace").is_dir()
    assert {c.action for c in storage.apply(stage_context(site))} == {"unchanged"}


def test_nfs(sandbox_nodes, tmp_path):
    nfs = {"type": "nfs", "server": "nas.example.com", "export": "/export/k8s"}
    nodes, site = started(sandbox_nodes, tmp_path, storage=nfs)
    storage.apply(stage_context(site))
    node = nodes[0]
    assert fstab_lines(node, "/data/k8s") == [
        "nas.example.com:/export/k8s /data/k8s nfs _netdev,noatime 0 0"]
    assert node.shim_calls("mount.nfs")[0][1:3] == ["nas.example.com:/export/k8s", "/data/k8s"]
    assert node.path("/data/k8s/infra/mysql").is_dir()


def test_local_storage_is_plain_directories(sandbox_nodes, tmp_path):
    nodes, site = started(sandbox_nodes, tmp_path)
    fstab = nodes[0].read("/etc/fstab")
    storage.apply(stage_context(site))
    assert nodes[0].read("/etc/fstab") == fstab
    assert nodes[0].path("/data/k8s/kubeflow/global").is_dir()
    assert nodes[0].shim_calls() == []


def test_missing_mount_helper_names_the_package(sandbox_nodes, tmp_path):
    nodes, site = started(sandbox_nodes, tmp_path, spec=NodeSpec(mount_helpers=()), storage=CEPH)
    fstab = nodes[0].read("/etc/fstab")
    with pytest.raises(StageFailed, match="mount.ceph not found") as failure:
        storage.apply(stage_context(site))
    assert "ceph-common" in str(failure.value)
    assert nodes[0].read("/etc/fstab") == fstab  # failed before changing anything


def test_hostile_site_values_are_data_never_code(sandbox_nodes, tmp_path):
    """Quotes, $(), backticks and ; in the ceph user, the mount path and the secret reach
    files and argv literally; no canary file appears anywhere."""
    tag = uuid.uuid4().hex[:8]
    user = f"x'\"$(touch${{IFS}}canary-{tag})`touch${{IFS}}canary-{tag}`;y"  # no space: valid in fstab
    mount_point = f"/data/k8s';$(touch /tmp/canary-{tag});'"
    hostile = {**CEPH, "user": user, "mount_point": mount_point,
               "secret": f"k'$(touch /tmp/canary-{tag})'"}
    nodes, site = started(sandbox_nodes, tmp_path, storage=hostile)
    ctx = stage_context(site)
    node_prep.apply(ctx)
    storage.apply(ctx)
    node = nodes[0]
    assert node.read(f"/etc/ceph/{user}.secret") == f"k'$(touch /tmp/canary-{tag})'\n".encode()
    [line] = fstab_lines(node, mount_point.replace(" ", "\\040"))
    assert f"name={user}," in line
    [call] = node.shim_calls("mount.ceph")
    assert call[2] == mount_point and f"name={user}" in call[4]
    assert node.path(f"{mount_point}/kubeflow/minio").is_dir()
    for place in (node.path("/tmp"), node.path("/root"), node.path("/"), Path("/tmp"), Path.cwd()):
        assert not list(place.glob(f"canary-{tag}*")), place
    assert {c.action for c in storage.apply(stage_context(site))} == {"unchanged"}


def test_mounted_foreign_file_system_is_refused_before_any_change(sandbox_nodes, tmp_path):
    """Something else is already mounted at /data/k8s: refuse; fstab stays as it was."""
    nodes, site = started(sandbox_nodes, tmp_path, storage=CEPH)
    node = nodes[0]
    subprocess.run(["nsenter", "-t", str(node.process.pid), "-m", "-r", "sh", "-c",
                    "mkdir -p /data/k8s && mount -t tmpfs scratch /data/k8s"], check=True)
    before = snapshot(node, "/etc/fstab", "/etc/ceph")
    with pytest.raises(StageFailed, match="already a tmpfs mount of scratch") as failure:
        storage.apply(stage_context(site))
    assert "storage.mount_at" in str(failure.value)
    assert snapshot(node, "/etc/fstab", "/etc/ceph") == before
    assert node.shim_calls("mount.ceph") == []
