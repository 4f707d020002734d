"""known_hosts read once per run: each connection gets its host's keys, as paramiko would."""

from __future__ import annotations

import subprocess

import paramiko

from cubeinstall.remote.known_hosts import KnownHosts


def public_key(directory, name: str) -> str:
    """'ssh-ed25519 AAAA...' of a new key pair."""
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def keys_given(known_hosts: KnownHosts, hostname: str, port: int) -> dict[str, str]:
    client = paramiko.SSHClient()
    known_hosts.prepare(client, hostname, port)
    name = hostname if port == 22 else f"[{hostname}]:{port}"
    found = client.get_host_keys().lookup(name) or {}
    return {key_type: found[key_type].get_base64() for key_type in found}


def test_each_connection_gets_its_own_hosts_keys(tmp_path):
    first, second, third = (public_key(tmp_path, n) for n in ("a", "b", "c"))
    hashed = paramiko.HostKeys.hash_host("[10.0.0.1]:2222")
    path = tmp_path / "known_hosts"
    path.write_text("\n".join([
        "# comment", "", "not a valid line",
        f"{hashed} {first}",                      # hashed, as ssh -H writes them
        f"[10.0.0.1]:2222 {second}",              # a second key of the same type: the first wins
        f"other,10.0.0.9 {second}",
        "10.0.0.9 ssh-unknown-type AAAA",
        "|1|bad|salt " + third,                   # a malformed hashed entry matches nothing
    ]) + "\n")
    known_hosts = KnownHosts(path, trust_new_hosts=False)
    assert keys_given(known_hosts, "10.0.0.1", 2222) == {"ssh-ed25519": first.split()[1]}
    assert keys_given(known_hosts, "10.0.0.9", 22) == {"ssh-ed25519": second.split()[1]}
    assert keys_given(known_hosts, "10.0.0.1", 22) == {}  # another port is another host

    with path.open("a") as handle:  # e.g. recorded by --trust-new-hosts during the run
        handle.write(f"[10.0.0.2]:2222 {third}\n")
    assert keys_given(known_hosts, "10.0.0.2", 2222) == {"ssh-ed25519": third.split()[1]}


def test_no_file_means_no_known_hosts(tmp_path):
    assert keys_given(KnownHosts(tmp_path / "missing", trust_new_hosts=False), "h", 22) == {}
