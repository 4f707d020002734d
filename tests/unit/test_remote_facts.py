"""Fact parsers as tables, and the fact scripts run for real against local files."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess

import pytest

from cubeinstall.remote.facts import (
    MISSING,
    ActiveFirewalls,
    ActiveSwaps,
    ClockSync,
    CommandPaths,
    DockerInsecureRegistries,
    DockerRuntimes,
    FileText,
    Gpus,
    Mount,
    Mounts,
    OsFacts,
    PathInfo,
    TcpConnect,
    WriteProbe,
    mount_at,
)
from cubeinstall.remote.reading import reading
from cubeinstall.remote.shell import batch, split_batch, wrap


def gather(*facts):
    """The facts read in one batch through the local sh, parsed: what a host does."""
    plan = reading(facts)
    script, marker = batch(plan.sections)
    done = subprocess.run(["sh", "-s"], input=wrap(script), capture_output=True, text=True,
                          check=False)  # a fact's own failure is part of its answer
    values = plan.values(split_batch(done.stdout, marker, plan.sections))
    return [values[fact] for fact in facts]


def test_path_info_of_real_paths(tmp_path):
    (tmp_path / "f i'le").write_bytes(b"data\n")
    os.chmod(tmp_path / "f i'le", 0o640)
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / ".hidden").touch()
    (tmp_path / "link").symlink_to("/some where")
    paths = ["f i'le", "empty", "full", "link", "missing"]
    file_, empty, full, link, missing = gather(*(PathInfo(str(tmp_path / p), entries=True, digest=True)
                                                 for p in paths))
    assert (file_.kind, file_.mode, file_.owner, file_.size) == ("file", 0o640, "root", 5)
    assert file_.sha256 == hashlib.sha256(b"data\n").hexdigest()
    assert file_.inode == (tmp_path / "f i'le").stat().st_ino
    assert (empty.kind, empty.empty, full.empty) == ("directory", True, False)
    assert (link.kind, link.link_target) == ("symlink", "/some where")
    assert not missing.exists
    unasked, undigested = gather(PathInfo(str(tmp_path / "full")), PathInfo(str(tmp_path / "f i'le")))
    assert unasked.kind == "directory" and unasked.empty is None
    assert undigested.kind == "file" and undigested.sha256 is None  # no sha256sum asked


@pytest.mark.parametrize("name", ["new\nline", "back\\slash", "-starts-with-dash", "sp ace",
                                  "quote'\"", "$(touch CANARY)", "tab\there"])
def test_all_paths_read_by_one_find_whatever_their_names(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # relative paths too: "-starts-with-dash" is not an option
    (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d").mkdir()
    facts = [PathInfo(name, digest=True), PathInfo(str(tmp_path / name), digest=True),
             PathInfo(str(tmp_path / "d")), PathInfo(str(tmp_path / "d"), entries=True),
             PathInfo(str(tmp_path / "gone"), digest=True)]
    assert len(reading(facts).sections) == 1
    relative, absolute, directory, listed, gone = gather(*facts)
    digest = hashlib.sha256(b"x").hexdigest()
    assert (relative.kind, relative.sha256) == (absolute.kind, absolute.sha256) == ("file", digest)
    assert directory.kind == listed.kind == "directory" and listed.empty is True
    assert gone == MISSING and not (tmp_path / "CANARY").exists()


def test_write_probe_creates_and_removes_a_file(tmp_path):
    (tmp_path / "d").mkdir()
    writable, missing_dir = gather(WriteProbe(str(tmp_path / "d" / ".probe")),
                                   WriteProbe(str(tmp_path / "nope" / ".probe")))
    assert writable == (True, "") and list((tmp_path / "d").iterdir()) == []
    assert missing_dir[0] is False and "nope" in missing_dir[1]


def test_file_text_and_missing_file(tmp_path):
    (tmp_path / "t").write_text("a\nb")
    text, missing = gather(FileText(str(tmp_path / "t")), FileText(str(tmp_path / "nope")))
    assert (text, missing) == ("a\nb", None)


def test_command_paths_of_the_local_host():
    [found] = gather(CommandPaths(("sh", "no-such-command-x", "base64")))
    assert found["no-such-command-x"] is None
    assert found["sh"].endswith("/sh") and found["base64"].endswith("/base64")


def test_mounts_of_the_local_host():
    [mounts] = gather(Mounts())
    root = mount_at(mounts, "/")
    assert root is not None and root.fstype


@pytest.mark.parametrize("output, expected", [
    ("/ /dev/vda ext4 rw\n/data/k8s 10.0.0.1:6789,10.0.0.2:6789:/ ceph rw,name=admin\n",
     [Mount("/", "/dev/vda", "ext4", "rw"),
      Mount("/data/k8s", "10.0.0.1:6789,10.0.0.2:6789:/", "ceph", "rw,name=admin")]),
    # findmnt -r escapes spaces and backslashes (not quotes) as \xNN.
    ("/mnt/a\\x20b'c\\x5cd srv:/e\\x20x nfs4 rw\n", [Mount("/mnt/a b'c\\d", "srv:/e x", "nfs4", "rw")]),
])
def test_mounts_parser(output, expected):
    assert list(Mounts().parse(output, 0)) == expected


def test_os_facts_parser():
    output = "6.1.0-18-amd64 x86_64\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"
    info = OsFacts().parse(output, 0)
    assert (info.distro, info.version, info.kernel, info.arch) == ("debian", "12", "6.1.0-18-amd64", "x86_64")
    assert info.pretty == "Debian GNU/Linux 12 (bookworm)"


@pytest.mark.parametrize("fact, output, code, expected", [
    (ActiveSwaps(), "Filename\tType\tSize\tUsed\tPriority\n", 0, ()),
    (ActiveSwaps(), "Filename\tType\n/swapfile file 1024 0 -2\n/dev/sda2 partition 9 0 -3\n", 0,
     ("/swapfile", "/dev/sda2")),
    (ClockSync(), "yes\n", 0, "yes"),
    (ClockSync(), "no\n", 0, "no"),
    (ClockSync(), "Failed to connect to bus\n", 0, "unknown"),
    (ActiveFirewalls(), "firewalld ufw\nactive\ninactive\n", 0, ("firewalld",)),
    (ActiveFirewalls(), "firewalld ufw\ninactive\nactive\n", 3, ("ufw",)),
    (ActiveFirewalls(), "ufw\nactive\n", 0, ("ufw",)),  # firewalld not installed
    (ActiveFirewalls(), "\n", 0, ()),  # neither installed: systemctl not asked
    (ActiveFirewalls(), "firewalld\n", 1, ()),  # no systemd
    (Gpus(), "535.104.05, NVIDIA A100-SXM4-80GB\n535.104.05, NVIDIA A100-SXM4-80GB\n", 0,
     ("535.104.05", ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"))),
    (Gpus(), "NVIDIA-SMI has failed\n", 9, None),
    (DockerRuntimes(), '{"DefaultRuntime": "nvidia", "Runtimes": {"runc": {}, "nvidia": {}}}', 0,
     ("nvidia", ("nvidia", "runc"))),
    (DockerRuntimes(), "", 1, None),
    (DockerInsecureRegistries(), json.dumps({"RegistryConfig": {"IndexConfigs": {
        "docker.io": {"Secure": True}, "r.example.com:5000": {"Secure": False}}}}), 0,
     ("r.example.com:5000",)),
    (DockerInsecureRegistries(), '{"RegistryConfig": null}', 0, ()),
    (DockerInsecureRegistries(), "Cannot connect to the Docker daemon", 1, None),
    (TcpConnect("r.example.com", 5000), "", 0, (True, "")),
    (TcpConnect("r.example.com", 5000, seconds=3), "", 124, (False, "no answer within 3s")),
    (TcpConnect("127.0.0.1", 1), ("connect: connect: Connection refused\n"
                                  "connect: line 1: /dev/tcp/127.0.0.1/1: Connection refused\n"), 1,
     (False, "Connection refused")),
    (TcpConnect("x.invalid", 1), "bash not found\n", 2, (False, "bash not found")),
])
def test_parsers(fact, output, code, expected):
    assert fact.parse(output, code) == expected


def test_equal_facts_are_one_key():
    assert len({PathInfo("/a"), PathInfo("/a"), PathInfo("/b"), Mounts(), Mounts(), OsFacts()}) == 4


def test_tcp_connect_script_run_for_real(tmp_path):
    """The script a node runs, with the local sh: a listening port answers, a closed one
    is refused, and neither address nor port can become shell code."""
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        for port, expected in ((listening.getsockname()[1], (True, "")),
                               (closed.getsockname()[1], (False, "Connection refused"))):
            fact = TcpConnect("127.0.0.1", port, seconds=5)
            result = subprocess.run(["sh", "-c", wrap(fact.script)], capture_output=True, text=True,
                                    check=False)
            assert fact.parse(result.stdout, result.returncode) == expected
    canary = tmp_path / "canary"
    hostile = TcpConnect(f"$(touch {canary});'", 1)
    result = subprocess.run(["sh", "-c", wrap(hostile.script)], capture_output=True, text=True,
                            check=False)
    assert hostile.parse(result.stdout, result.returncode)[0] is False
    assert not canary.exists()
