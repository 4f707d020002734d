"""The hosts.toml registry-trust writes, read by a real containerd: an insecure site registry
(plain HTTP, or TLS with a certificate nobody trusts) is pulled from through it.

A real containerd daemon (the test cluster's build) runs with private root, state and
socket (its CRI plugin off: nothing here is a Kubernetes node), and ``ctr content fetch
--hosts-dir`` resolves the image the way the CRI does with ``config_path``: through the
same hosts.toml. Without the file the same fetch fails, so the file is what makes it work.
The registry listens on the machine's own address, not on loopback: containerd allows
plain HTTP to a loopback registry by itself.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from cubeinstall.remote.runtime_paths import CONTAINERD_CERTS
from cubeinstall.stages import registry_trust
from tests.cluster import build
from tests.cluster.processes import ManagedProcess, wait_until
from tests.servers.registry import (
    RegistryServer,
    build_image,
    make_site,
    push_image,
    start_registry,
    write_tls,
)

pytestmark = pytest.mark.registry


@pytest.fixture
def containerd(tmp_path):
    tools = build.toolset()
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'version = 3\nroot = "{tmp_path / "root"}"\nstate = "{tmp_path / "state"}"\n'
                      f'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",'
                      f' "io.containerd.cri.v1.runtime"]\n\n[grpc]\n  address = "{socket}"\n')
    process = ManagedProcess("containerd", [str(tools.binary("containerd")), "--config", str(config)],
                             tmp_path / "containerd.log").start()

    def ctr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(tools.binary("ctr")), "--address", str(socket), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    try:
        wait_until(lambda: ctr("version").returncode == 0, timeout=30, what="containerd to answer",
                   watched=[process], blame=process)
        yield ctr
    finally:
        process.stop()


def own_address() -> str:
    """An IPv4 address of this machine that is not loopback."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                           capture_output=True, text=True, check=False).stdout.split()
    addresses = [word.split("/")[0] for word in shown if "/" in word
                 and not ipaddress.ip_interface(word).ip.is_loopback]
    if not addresses:
        pytest.fail("this test needs a non-loopback IPv4 address on the machine", pytrace=False)
    return addresses[0]


def hosts_dir(tmp_path: Path, server: RegistryServer) -> Path:
    """The hosts.toml registry-trust writes for ``server`` as an insecure site registry,
    in a directory of the test's own (the file's content names no path of the machine)."""
    site = make_site(server, ca_file=None, insecure=True)
    [*_, edit] = registry_trust._host_files(site)
    assert edit.path == f"{CONTAINERD_CERTS}/{server.host}/hosts.toml"
    target = tmp_path / "certs.d" / server.host / "hosts.toml"
    target.parent.mkdir(parents=True)
    target.write_text(edit.edit(None))
    return tmp_path / "certs.d"


@pytest.mark.parametrize("tls", [False, True], ids=["plain-http", "untrusted-tls"])
def test_containerd_pulls_from_an_insecure_registry_through_the_hosts_toml(
        tmp_path, containerd, tls):
    address = own_address()
    # signed by a CA containerd is never told about: only skip_verify lets it pull
    certificates = write_tls(tmp_path / "tls", addresses=(address,)) if tls else None
    server = start_registry(tmp_path / "registry", tls=certificates, address=address)
    try:
        build_image(tmp_path / "layout", "registry-trust")
        push_image(tmp_path / "layout", server, "cube-studio/probe:1")
        reference = f"{server.host}/cube-studio/probe:1"

        without = containerd("content", "fetch", "--hosts-dir", str(tmp_path / "empty"), reference)
        assert without.returncode != 0  # by default containerd wants HTTPS it can verify

        directory = hosts_dir(tmp_path, server)
        fetched = containerd("content", "fetch", "--hosts-dir", str(directory), reference)
        assert fetched.returncode == 0, fetched.stderr
        listed = containerd("images", "list", "-q")
        assert reference in listed.stdout.split()
    finally:
        server.stop()
