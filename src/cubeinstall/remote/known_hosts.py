"""Host key verification against the site's known_hosts file.

Unknown hosts are refused unless the run trusts new hosts explicitly
(``--trust-new-hosts``): then the key is appended to known_hosts, so every
later run verifies it. A key that differs from the recorded one is always
refused, trust flag or not, with both fingerprints in the message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import paramiko

from cubeinstall.remote.errors import HostError


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"{hostname} is not in known_hosts")
        self.hostname = hostname
        self.key = key


class KnownHosts:
    """The site's known_hosts file, shared by every connection of a run."""

    def __init__(self, path: Path, trust_new_hosts: bool):
        self.path = path
        self.trust_new_hosts = trust_new_hosts
        self._lock = threading.Lock()

    def prepare(self, client: paramiko.SSHClient) -> None:
        with self._lock:
            if self.path.is_file():
                try:
                    client.load_host_keys(str(self.path))
                except (OSError, paramiko.SSHException) as exc:
                    raise HostError("known_hosts", f"cannot read {self.path}: {exc}",
                                    hint="fix or move the file (ssh.known_hosts in site.yaml)") from None
        client.set_missing_host_key_policy(_Policy(self))

    def record(self, hostname: str, key: paramiko.PKey) -> None:
        """Append one entry; appending keeps the user's comments and other entries."""
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as handle:
                handle.write(line)

    def unknown_error(self, label: str, exc: UnknownHostKey) -> HostError:
        return HostError(
            label,
            f"host key not in known_hosts {self.path}: the server offered {fingerprint(exc.key)}; "
            "refusing to connect to an unverified host",
            hint="compare that fingerprint with the host's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub "
                 "on its console), then run again with --trust-new-hosts to record it",
        )

    def changed_error(self, label: str, exc: paramiko.BadHostKeyException) -> HostError:
        return HostError(
            label,
            f"HOST KEY CHANGED for {exc.hostname}: known_hosts {self.path} has "
            f"{fingerprint(exc.expected_key)}, the server offered {fingerprint(exc.key)}; "
            "refusing to connect (someone may be intercepting the connection)",
            hint=f"if the host was reinstalled, verify the new key and remove the old entry: "
                 f"ssh-keygen -R '{exc.hostname}' -f {self.path}",
        )


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: KnownHosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        if not self.known_hosts.trust_new_hosts:
            raise UnknownHostKey(hostname, key)
        self.known_hosts.record(hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
