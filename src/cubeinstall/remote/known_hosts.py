"""Host key verification against the site's known_hosts file.

Unknown hosts are refused unless the run trusts new hosts explicitly
(``--trust-new-hosts``): then the key is appended to known_hosts, so every
later run verifies it. A key that differs from the recorded one is always
refused, trust flag or not, with both fingerprints in the message.

The file is parsed once per run (again only when it changes) and each
connection is given just its host's entries: paramiko's own loading, per
connection, re-parses every key and compares each entry with all before it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
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
        self._version: tuple | None = None
        self._lines: list[tuple[list[str], str]] = []  # (host names, line) in file order

    def prepare(self, client: paramiko.SSHClient, hostname: str, port: int) -> None:
        """Give ``client`` the recorded keys of this host (first line per key type, as
        paramiko) and the policy for a host that has none."""
        name = entry_name(hostname, port)
        host_keys, types = client.get_host_keys(), set()
        for key in self._keys_for(name):
            if key.get_name() not in types:
                types.add(key.get_name())
                host_keys.add(name, key.get_name(), key)
        client.set_missing_host_key_policy(_Policy(self))

    def _keys_for(self, name: str) -> list[paramiko.PKey]:
        with self._lock:
            lines = self._current_lines()
        keys = []
        for names, line in lines:
            if any(_matches(name, pattern) for pattern in names):
                try:
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                except paramiko.SSHException:
                    continue  # an unreadable line is skipped, as paramiko's loading does
                if entry is not None:
                    keys.append(entry.key)
        return keys

    def _current_lines(self) -> list[tuple[list[str], str]]:
        """The file's entry lines, parsed again only when the file changed."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._unreadable(exc) from None
        version = (info.st_ino, info.st_size, info.st_mtime_ns)
        if version != self._version:
            try:
                text = self.path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise self._unreadable(exc) from None
            self._lines = [(re.split(" |\t", line, maxsplit=1)[0].split(","), line)
                           for line in map(str.strip, text.splitlines())
                           if line and not line.startswith("#")]
            self._version = version
        return self._lines

    def _unreadable(self, exc: OSError) -> HostError:
        return HostError("known_hosts", f"cannot read {self.path}: {exc}",
                         hint="fix or move the file (ssh.known_hosts in site.yaml)")

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

    def changed_error(self, label: str, exc: paramiko.BadHostKeyException,
                      port: int = 22) -> HostError:
        name = entry_name(exc.hostname, port)  # paramiko names the host without its port
        return HostError(
            label,
            f"HOST KEY CHANGED for {name}: known_hosts {self.path} has "
            f"{fingerprint(exc.expected_key)}, the server offered {fingerprint(exc.key)}; "
            "refusing to connect (someone may be intercepting the connection)",
            hint=f"if the host was reinstalled, verify the new key and remove the old entry: "
                 f"ssh-keygen -R '{name}' -f {self.path}",
        )


def entry_name(hostname: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` off port 22."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _matches(name: str, pattern: str) -> bool:
    """A known_hosts host field: the name itself, or its hashed form (``|1|salt|hash``)."""
    if pattern.startswith("|1|"):
        try:
            return hmac.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
        except (ValueError, IndexError, AssertionError):
            return False  # a malformed hashed entry matches nothing
    return pattern == name


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: KnownHosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        if not self.known_hosts.trust_new_hosts:
            raise UnknownHostKey(hostname, key)
        self.known_hosts.record(hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
