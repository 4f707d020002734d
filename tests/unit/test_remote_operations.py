"""Host operations as tables: facts in -> noop reason, or diff + script out.

The scripts that write files are also run for real with the local sh on a
temp directory: what a host runs is exactly what is tested here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from cubeinstall.remote.edits import (
    CommentOut,
    EnsureJsonMerge,
    EnsureLine,
    EnsureTomlValues,
    Union,
    merge_json,
)
from cubeinstall.remote.errors import Refused
from cubeinstall.remote.facts import (
    MISSING,
    ActiveSwaps,
    FileText,
    Mount,
    Mounts,
    PathInfo,
    PathState,
)
from cubeinstall.remote.host import steps_of
from cubeinstall.remote.operations import (
    EnsureDir,
    EnsureFile,
    EnsureMounted,
    EnsureSymlink,
    SwapOff,
    atomic_write,
)
from cubeinstall.remote.shell import wrap


def directory(mode=0o755, owner="root", group="root", empty=False):
    return PathState("directory", mode=mode, owner=owner, group=group, inode=1, mtime=1, size=4096,
                     empty=empty)


def file_state(content: bytes, mode=0o644, owner="root", group="root"):
    return PathState("file", mode=mode, owner=owner, group=group, inode=2, mtime=1,
                     size=len(content), sha256=hashlib.sha256(content).hexdigest())


def text_facts(path: str, text: str | None, mode=0o644):
    state = MISSING if text is None else file_state(text.encode(), mode=mode)
    return {PathInfo(path): state, FileText(path): text}


# -- directories -------------------------------------------------------------------------


@pytest.mark.parametrize("state, action, in_detail, script_has, script_lacks", [
    (MISSING, "create", "directory (0755 root:root)", ["install -d -m 0755 -o root -g root -- /d"],
     ["chmod", "chown"]),
    (directory(), "unchanged", "directory exists (0755 root:root)", [], ["mkdir"]),
    (directory(mode=0o700), "update", "mode 0700 -> 0755", ["chmod 0755 /d"], ["mkdir", "chown"]),
    (directory(owner="bob"), "update", "owner bob -> root", ["chown root:root /d"], ["chmod"]),
])
def test_ensure_dir(state, action, in_detail, script_has, script_lacks):
    outcome = EnsureDir("/d").decide({PathInfo("/d"): state})
    assert outcome.action == action
    assert in_detail in outcome.detail
    for text in script_has:
        assert text in outcome.script
    for text in script_lacks:
        assert text not in outcome.script


def test_ensure_dir_without_attributes_only_creates():
    op = EnsureDir("/mnt/x", mode=None, owner=None, group=None)
    assert op.decide({PathInfo("/mnt/x"): MISSING}).script.strip() == "mkdir -p -- /mnt/x"
    assert op.decide({PathInfo("/mnt/x"): directory(mode=0o700, owner="ceph")}).action == "unchanged"


@pytest.mark.parametrize("state", [file_state(b"x"), PathState("symlink", link_target="/e")])
def test_ensure_dir_refuses_other_kinds(state):
    with pytest.raises(Refused, match="not a directory"):
        EnsureDir("/d").decide({PathInfo("/d"): state})


# -- files ---------------------------------------------------------------------------------


def test_ensure_file_unchanged_when_content_and_mode_match():
    op = EnsureFile("/etc/x", b"hello\n")
    outcome = op.decide({PathInfo("/etc/x", digest=True): file_state(b"hello\n"),
                         FileText("/etc/x"): "hello\n"})
    assert (outcome.action, outcome.script) == ("unchanged", "")


def test_ensure_file_mode_drift_is_a_chmod_not_a_rewrite():
    op = EnsureFile("/etc/x", b"hello\n", mode=0o600)
    outcome = op.decide({PathInfo("/etc/x", digest=True): file_state(b"hello\n"),
                         FileText("/etc/x"): "hello\n"})
    assert outcome.action == "update" and "mode 0644 -> 0600" in outcome.detail
    assert "chmod 0600 /etc/x" in outcome.script and "base64" not in outcome.script


def test_ensure_file_new_content_diff_and_backup():
    op = EnsureFile("/etc/x", b"new\n")
    outcome = op.decide({PathInfo("/etc/x", digest=True): file_state(b"old\n"),
                         FileText("/etc/x"): "old\n"})
    assert outcome.action == "update"
    assert "-old" in outcome.diff and "+new" in outcome.diff
    assert "cp -p" in outcome.script  # the replaced file is kept


def test_ensure_file_missing_is_created_without_backup():
    outcome = EnsureFile("/etc/x", b"new\n").decide({PathInfo("/etc/x", digest=True): MISSING,
                                                     FileText("/etc/x"): None})
    assert outcome.action == "create" and "cp -p" not in outcome.script


def test_secret_file_is_never_read_back_nor_shown():
    op = EnsureFile("/etc/ceph/admin.secret", b"AQBtopsecret==\n", mode=0o600, secret=True)
    assert FileText("/etc/ceph/admin.secret") not in op.facts()
    outcome = op.decide({PathInfo("/etc/ceph/admin.secret", digest=True): MISSING})
    assert "AQBtopsecret" not in outcome.diff + outcome.detail
    assert "secret content" in outcome.diff
    assert "AQBtopsecret" not in outcome.script  # octal escapes only, never the clear text


# -- lines -----------------------------------------------------------------------------------

FSTAB_KEY = r"^\s*[^#\s]\S*\s+/data/k8s(\s|$)"
CEPH = "m1:6789:/ /data/k8s ceph name=admin,secretfile=/etc/ceph/admin.secret,_netdev,noatime 0 0"


@pytest.mark.parametrize("old, expected", [
    (None, f"{CEPH}\n"),
    ("UUID=1 / ext4 defaults 0 1\n", f"UUID=1 / ext4 defaults 0 1\n{CEPH}\n"),
    # The entry of the same mount point is replaced, not kept beside ours.
    ("UUID=1 / ext4 defaults 0 1\nold:/ /data/k8s ceph name=x 0 0\n",
     f"UUID=1 / ext4 defaults 0 1\n{CEPH}\n"),
    # Duplicates collapse into one line, at the place of the first.
    (f"old:/ /data/k8s nfs defaults 0 0\nUUID=1 / ext4 defaults 0 1\n{CEPH}\n",
     f"{CEPH}\nUUID=1 / ext4 defaults 0 1\n"),
    # Comments and other mount points are left alone.
    ("# old:/ /data/k8s ceph x 0 0\nsrv:/x /data/k8s2 nfs defaults 0 0\n",
     f"# old:/ /data/k8s ceph x 0 0\nsrv:/x /data/k8s2 nfs defaults 0 0\n{CEPH}\n"),
])
def test_ensure_line_replaces_conflicting_entry(old, expected):
    op = EnsureLine("/etc/fstab", CEPH, replaces=FSTAB_KEY)
    outcome = op.decide(text_facts("/etc/fstab", old))
    assert outcome.action == ("create" if old is None else "update")
    assert op.edit(old) == expected
    assert op.edit(expected) == expected  # a second run finds it done


def test_ensure_line_present_is_unchanged():
    text = f"UUID=1 / ext4 defaults 0 1\n{CEPH}\n"
    outcome = EnsureLine("/etc/fstab", CEPH, replaces=FSTAB_KEY).decide(text_facts("/etc/fstab", text))
    assert outcome.action == "unchanged" and outcome.script == ""


def test_text_edit_keeps_the_files_mode_and_owner():
    facts = text_facts("/etc/fstab", "a\n", mode=0o640)
    outcome = EnsureLine("/etc/fstab", "b").decide(facts)
    assert 'install -m 0640 -o root -g root /dev/null "$tmp"' in outcome.script


@pytest.mark.parametrize("old, expected", [
    ("/swapfile none swap sw 0 0\n", "#/swapfile none swap sw 0 0\n"),
    ("UUID=9 none swap sw 0 0\nUUID=1 / ext4 defaults 0 1\n",
     "#UUID=9 none swap sw 0 0\nUUID=1 / ext4 defaults 0 1\n"),
    ("#/swapfile none swap sw 0 0\n", "#/swapfile none swap sw 0 0\n"),
    ("/dev/sdb1 /swapdata ext4 defaults 0 0\n", "/dev/sdb1 /swapdata ext4 defaults 0 0\n"),
])
def test_comment_out_swap(old, expected):
    from cubeinstall.stages.node_prep import FSTAB_SWAP_LINE

    op = CommentOut("/etc/fstab", FSTAB_SWAP_LINE)
    assert op.edit(old) == expected
    outcome = op.decide(text_facts("/etc/fstab", old))
    assert outcome.action == ("unchanged" if old == expected else "update")


def test_comment_out_without_file_is_unchanged():
    outcome = CommentOut("/etc/fstab", "swap").decide(text_facts("/etc/fstab", None))
    assert outcome.action == "unchanged"


# -- JSON ------------------------------------------------------------------------------------

NVIDIA = {"default-runtime": "nvidia",
          "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}},
          "insecure-registries": Union(("harbor:5000",))}


@pytest.mark.parametrize("current, expected", [
    ({}, {"default-runtime": "nvidia", "runtimes": NVIDIA["runtimes"],
          "insecure-registries": ["harbor:5000"]}),
    ({"log-driver": "json-file", "insecure-registries": ["a:1"],
      "runtimes": {"kata": {"path": "/k"}}},
     {"log-driver": "json-file", "insecure-registries": ["a:1", "harbor:5000"],
      "runtimes": {"kata": {"path": "/k"}, **NVIDIA["runtimes"]}, "default-runtime": "nvidia"}),
    ({"runtimes": {"nvidia": {"path": "/old", "runtimeArgs": ["-x"], "extra": 1}}},
     {"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": [],
                              "extra": 1}},
      "default-runtime": "nvidia", "insecure-registries": ["harbor:5000"]}),
])
def test_merge_json_keeps_every_other_key(current, expected):
    assert merge_json(current, NVIDIA) == expected


def test_json_merge_already_merged_keeps_the_bytes():
    text = json.dumps(merge_json({"log-level": "warn"}, NVIDIA), indent=4)  # not our indent
    outcome = EnsureJsonMerge("/etc/docker/daemon.json", NVIDIA).decide(
        text_facts("/etc/docker/daemon.json", text))
    assert outcome.action == "unchanged"


@pytest.mark.parametrize("text, reason", [
    ('{"log-level": "warn",}', "not valid JSON"),
    ("[1, 2]", "not an object"),
])
def test_json_merge_refuses_what_it_cannot_read(text, reason):
    with pytest.raises(Refused, match=reason) as error:
        EnsureJsonMerge("/etc/docker/daemon.json", NVIDIA).decide(
            text_facts("/etc/docker/daemon.json", text))
    assert "left unchanged" in error.value.message


def test_json_merge_of_an_empty_file_starts_from_an_object():
    outcome = EnsureJsonMerge("/j", {"a": 1}).decide(text_facts("/j", "\n"))
    assert outcome.action == "update" and '+  "a": 1' in outcome.diff


# -- TOML ---------------------------------------------------------------------------------------

CRI = ("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")
CONFIG_PATH = EnsureTomlValues("/c.toml", ((CRI, "/etc/containerd/certs.d"),), start="version = 2\n")
V2 = 'version = 2\n\n# ours\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n'


@pytest.mark.parametrize("old, expected", [
    (None, ('version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
           '  config_path = "/etc/containerd/certs.d"\n')),
    (V2, V2 + '\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
              '  config_path = "/etc/containerd/certs.d"\n'),
    # the key replaced in its own table, the next table untouched
    (V2 + '  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = ""\n'
          '  [plugins."io.containerd.grpc.v1.cri".containerd]\n    snapshotter = "overlayfs"\n',
     V2 + '  [plugins."io.containerd.grpc.v1.cri".registry]\n'
          '    config_path = "/etc/containerd/certs.d"\n'
          '  [plugins."io.containerd.grpc.v1.cri".containerd]\n    snapshotter = "overlayfs"\n'),
    # a table header in single quotes is the same table: the key is added under it
    ("version = 2\n[plugins.'io.containerd.grpc.v1.cri'.registry] # mine\n  [x]\n",
     ("version = 2\n[plugins.'io.containerd.grpc.v1.cri'.registry] # mine\n"
     '  config_path = "/etc/containerd/certs.d"\n  [x]\n')),
])
def test_toml_values_set_every_other_line_kept(old, expected):
    outcome = CONFIG_PATH.decide(text_facts("/c.toml", old))
    assert outcome.action == ("create" if old is None else "update")
    assert CONFIG_PATH.edit(old) == expected
    assert CONFIG_PATH.decide(text_facts("/c.toml", expected)).action == "unchanged"


def test_toml_values_in_a_new_table_keep_their_order_and_root_keys_stay_on_top():
    edit = EnsureTomlValues("/h.toml", ((("server",), "https://r:5000"),
                                        (("host", "https://r:5000", "capabilities"), ("pull", "resolve")),
                                        (("host", "https://r:5000", "skip_verify"), True)))
    old = '# kept\n[host."http://other"]\n  capabilities = ["pull"]\n'
    assert edit.edit(old) == ('# kept\nserver = "https://r:5000"\n[host."http://other"]\n'
                              '  capabilities = ["pull"]\n\n[host."https://r:5000"]\n'
                              '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n')


@pytest.mark.parametrize("old, reason", [
    ("version = 2\n[plugins\n", "not valid TOML"),
    ('version = 2\nplugins."io.containerd.grpc.v1.cri".registry = {config_path = ""}\n',
     "inline table or dotted keys"),
])
def test_toml_values_refuse_what_they_cannot_read_or_change(old, reason):
    with pytest.raises(Refused, match=reason) as error:
        CONFIG_PATH.decide(text_facts("/c.toml", old))
    assert "left unchanged" in error.value.message


# -- symlinks, mounts, swap ---------------------------------------------------------------------


@pytest.mark.parametrize("state, action, script_has", [
    (MISSING, "create", "ln -s -- /mnt/cephfs /data/k8s"),
    (PathState("symlink", link_target="/mnt/cephfs"), "unchanged", ""),
    (PathState("symlink", link_target="/mnt/old"), "update", "mv -Tf"),
    (directory(empty=True), "update", "rmdir -- /data/k8s"),
])
def test_ensure_symlink(state, action, script_has):
    outcome = EnsureSymlink("/data/k8s", "/mnt/cephfs").decide({PathInfo("/data/k8s", entries=True): state})
    assert outcome.action == action and script_has in outcome.script


@pytest.mark.parametrize("state", [directory(empty=False), file_state(b"x")])
def test_ensure_symlink_refuses_to_replace_data(state):
    with pytest.raises(Refused, match="should be a symlink"):
        EnsureSymlink("/data/k8s", "/mnt/cephfs").decide({PathInfo("/data/k8s", entries=True): state})


ROOT = Mount("/", "/dev/vda", "ext4", "rw")


@pytest.mark.parametrize("mounts, action", [
    ((ROOT,), "create"),
    ((ROOT, Mount("/data/k8s", "m1:6789:/", "ceph", "rw")), "unchanged"),
    ((ROOT, Mount("/data/k8s/sub", "m1:6789:/", "ceph", "rw")), "create"),
])
def test_ensure_mounted(mounts, action):
    outcome = EnsureMounted("/data/k8s", ("ceph",)).decide({Mounts(): mounts})
    assert outcome.action == action
    if action == "create":
        assert outcome.script == "mount -- /data/k8s"


def test_ensure_mounted_refuses_another_file_system():
    mounts = (ROOT, Mount("/data/k8s", "/dev/sdb1", "xfs", "rw"))
    with pytest.raises(Refused, match="already a xfs mount of /dev/sdb1"):
        EnsureMounted("/data/k8s", ("ceph",)).decide({Mounts(): mounts})


@pytest.mark.parametrize("swaps, action", [((), "unchanged"), (("/swapfile",), "run")])
def test_swap_off(swaps, action):
    outcome = SwapOff().decide({ActiveSwaps(): swaps})
    assert outcome.action == action and (outcome.script == "swapoff -a") == (action == "run")


# -- the write script, run for real --------------------------------------------------------------

NASTY = "quote ' double \" dollar $(touch CANARY) `touch CANARY` ; newline\n\\ \x00 end"


def run_locally(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-s"], input=wrap(script), capture_output=True, text=True,
                          cwd=cwd, check=True)


def test_atomic_write_is_exact_keeps_a_backup_and_runs_nothing(tmp_path):
    target = tmp_path / "dir with space" / "conf'file"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    done = run_locally(atomic_write(str(target), NASTY.encode(), 0o600, "root", "root",
                                    backup=True), tmp_path)
    assert target.read_bytes() == NASTY.encode()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    backups = list(target.parent.glob("conf'file.cubeinstall-*.bak"))
    assert [b.read_text() for b in backups] == ["old\n"]
    assert oct(backups[0].stat().st_mode & 0o777) == "0o640"  # cp -p: the old mode kept
    assert f"backup: {backups[0]}" in done.stdout
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, backups[0].name])
    assert not list(tmp_path.rglob("CANARY"))


TEXT = "quote ' double \" dollar $(touch CANARY) %s %% \\n \\ -n é\r\n\n last line, no newline"


def test_text_is_written_with_builtins_exactly_in_its_mode(tmp_path):
    """Text (UTF-8, no NUL) for root:root without execute bits: created by a redirection
    and filled by printf, no install or base64 process, byte for byte, in its mode."""
    target = tmp_path / "conf"
    script = atomic_write(str(target), TEXT.encode(), 0o640, "root", "root", backup=False)
    assert "base64" not in script and script.count("install -m") == 1  # only for set-group-ID dirs
    run_locally(script, tmp_path)
    assert target.read_bytes() == TEXT.encode()
    assert (oct(target.stat().st_mode & 0o7777), target.stat().st_uid, target.stat().st_gid) == (
        "0o640", 0, 0)
    assert not list(tmp_path.rglob("CANARY"))


def test_a_secret_is_written_exactly_from_octal_escapes(tmp_path):
    secret = "AQB+/=='\"%s\\ é\n".encode()
    script = atomic_write(str(tmp_path / "key"), secret, 0o600, "root", "root", False, secret=True)
    assert "AQB" not in script and "base64" not in script
    run_locally(script, tmp_path)
    assert (tmp_path / "key").read_bytes() == secret


def test_in_a_set_group_id_directory_the_file_still_gets_root_s_group(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chown(directory, 0, 65534)
    os.chmod(directory, 0o2775)
    run_locally(atomic_write(str(directory / "conf"), b"x\n", 0o644, "root", "root", False), tmp_path)
    assert (directory / "conf").stat().st_gid == 0
    assert ((directory / "conf").read_bytes(), oct((directory / "conf").stat().st_mode & 0o7777)) == (
        b"x\n", "0o644")


@pytest.mark.parametrize("mode, owner", [(0o755, "root"), (0o4644, "root"), (0o644, "nobody")])
def test_execute_bits_special_bits_or_another_owner_are_set_by_install(tmp_path, mode, owner):
    target = tmp_path / "tool"
    script = atomic_write(str(target), b"#!/bin/sh\n", mode, owner, "root", backup=False)
    assert "if [ -g" not in script
    run_locally(script, tmp_path)
    stat = target.stat()
    assert (oct(stat.st_mode & 0o7777), stat.st_uid) == (oct(mode), 0 if owner == "root" else 65534)


def test_two_backups_in_one_second_do_not_overwrite_each_other(tmp_path):
    target = tmp_path / "fstab"
    target.write_bytes(b"original\n")
    for content in (b"a\n", b"b\n", b"c\n"):
        run_locally(atomic_write(str(target), content, 0o644, "root", "root", True), tmp_path)
    backups = sorted(p.read_bytes() for p in tmp_path.glob("fstab.cubeinstall-*.bak"))
    assert backups == [b"a\n", b"b\n", b"original\n"]
    assert target.read_bytes() == b"c\n"


def test_directories_in_a_row_are_made_by_one_install(tmp_path):
    paths = [tmp_path / "a", tmp_path / "a" / "b c", tmp_path / "x", tmp_path / "open"]
    outcomes = [EnsureDir(str(p)).decide({PathInfo(str(p)): MISSING}) for p in paths[:3]]
    outcomes.append(EnsureDir(str(paths[3]), mode=0o777).decide({PathInfo(str(paths[3])): MISSING}))
    steps = steps_of(outcomes)
    assert [len(done) for done, _ in steps] == [3, 1]
    for _, script in steps:
        run_locally(script, tmp_path)
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == ["0o755"] * 3 + ["0o777"]
