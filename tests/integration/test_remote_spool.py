"""The remote shell's spooled output (remote/session.py) and what a connection costs, on a
real sshd node."""

from __future__ import annotations

import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.stages import node_prep
from tests.integration.test_node_ssh import one_node_pool
from tests.servers.sshd import stage_context

pytestmark = pytest.mark.ssh


def spool_files(node) -> list[str]:
    return sorted(p.name for p in node.path("/tmp").iterdir() if p.name.startswith(".cubeinstall-"))


def test_output_of_any_size_comes_back_whole_and_no_spool_file_stays(sandbox_nodes, tmp_path,
                                                                      ssh_client_key):
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key)
    try:
        connection = pool.get(site.nodes[0])
        result = connection.run("head -c 300000 /dev/zero | tr '\\0' x; echo; "
                                "printf 'err\\n%s\\n' '@@cubeinstall-stderr-0' >&2; exit 3")
        assert result.exit_code == 3
        assert result.stdout == "x" * 300000 + "\n"
        assert result.stderr == "err\n@@cubeinstall-stderr-0\n"
        assert (connection.run("printf 'no newline'").stdout, connection.run("true").stderr) == (
            "no newline", "")
        assert spool_files(sandbox_nodes.nodes[0]) == []
    finally:
        pool.close()


def test_a_host_whose_tmp_cannot_be_written_fails_with_the_reason(sandbox_nodes, tmp_path,
                                                                   ssh_client_key):
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key)
    try:
        assert pool.get(site.nodes[0]).run("mount -t tmpfs -o ro,size=1m tmpfs /tmp").exit_code == 0
    finally:
        pool.close()
    with pytest.raises(StageFailed, match=r"reading host facts failed \(exit 125\): cannot write "
                                          r"/tmp/\.cubeinstall-\w+\.o: the node stages need /tmp "
                                          r"writable by root"):
        node_prep.apply(stage_context(site))


def test_a_script_s_output_comes_back_in_one_piece_not_one_packet_per_command(
        sandbox_nodes, tmp_path, ssh_client_key, monkeypatch):
    """Each SSH data packet costs both ends encryption, a MAC and a hand-over between
    threads: twenty commands that each print must not mean twenty packets."""
    import paramiko
    from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA

    packets = []
    handlers = paramiko.Transport._channel_handler_table  # how paramiko dispatches channel data
    for kind in (MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA):
        monkeypatch.setitem(handlers, kind, lambda channel, m, handle=handlers[kind]: (
            packets.append(1), handle(channel, m)))
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key)
    try:
        connection = pool.get(site.nodes[0])
        connection.run("true")
        packets.clear()
        result = connection.run("for i in $(seq 20); do /bin/echo line $i; sleep 0.01; done")
        assert result.stdout.count("line") == 20
        assert len(packets) <= 3, len(packets)
    finally:
        pool.close()


def test_a_run_works_with_more_than_1024_descriptors_open(sandbox_nodes, tmp_path, ssh_client_key):
    """A run holds every host's connection open (3 descriptors each): past ~300 hosts the
    descriptors are numbered over 1024, where select() cannot wait on them."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), max(hard, 2048)))
    pipes = [os.pipe() for _ in range(600)]
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key)
    try:
        connection = pool.get(site.nodes[0])
        assert connection.run("echo high").stdout == "high\n"
    finally:
        pool.close()
        for fds in pipes:
            os.close(fds[0])
            os.close(fds[1])
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_connection_prefers_aes_gcm_and_still_checks_the_host_key(sandbox_nodes, tmp_path,
                                                                     ssh_client_key):
    """An AEAD cipher spares paramiko a MAC in Python per packet; nothing else changes."""
    site, pool = one_node_pool(sandbox_nodes, tmp_path, ssh_client_key)
    try:
        transport = pool.get(site.nodes[0])._clients[-1].get_transport()
        assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
        assert transport.get_remote_server_key().get_base64() in sandbox_nodes.nodes[0].host_key_line
    finally:
        pool.close()
