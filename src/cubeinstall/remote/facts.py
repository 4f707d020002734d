"""Host facts: a read-only shell command plus a pure parser of its output.

Facts are frozen dataclasses, so equal facts are one key: a host gathers all
the facts a batch of operations needs in one round trip (``Host.facts``).
Parsers never raise on odd output; they return what can be known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from cubeinstall.remote.shell import q


class Fact:
    """Base: ``script`` prints the fact, ``parse(stdout, exit_code)`` reads it."""

    @property
    def script(self) -> str:
        raise NotImplementedError

    def parse(self, stdout: str, exit_code: int) -> Any:
        raise NotImplementedError


# -- paths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PathState:
    kind: str  # missing | file | directory | symlink | other
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    inode: int | None = None
    mtime: int | None = None
    size: int | None = None
    sha256: str | None = None
    link_target: str | None = None
    empty: bool | None = None  # directories only

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    def describe(self) -> str:
        if self.kind == "symlink":
            return f"a symlink to {self.link_target}"
        if self.kind in ("file", "directory"):
            return f"a {self.kind} ({self.mode:04o} {self.owner}:{self.group})"
        return "missing" if self.kind == "missing" else "a special file"


MISSING = PathState("missing")


@dataclass(frozen=True)
class PathInfo(Fact):
    """Kind, mode, owner, inode, mtime; sha256 of a file; ``entries``: whether a
    directory is empty (asked only where it matters: listing costs processes)."""

    path: str
    entries: bool = False

    @property
    def script(self) -> str:
        p = q(self.path)
        count = f"; ls -A -- {p} | head -n 1 | wc -l" if self.entries else ""
        return (
            f"if [ -L {p} ]; then echo symlink; readlink -- {p}\n"
            f"elif [ -d {p} ]; then echo directory; stat -c '%a %U %G %i %Y %s' -- {p}{count}\n"
            f"elif [ -f {p} ]; then echo file; stat -c '%a %U %G %i %Y %s' -- {p}; "
            f"sha256sum < {p}\n"
            f"elif [ -e {p} ]; then echo other\n"
            "else echo missing; fi"
        )

    def parse(self, stdout: str, exit_code: int) -> PathState:
        kind, _, rest = stdout.partition("\n")
        if kind == "symlink":
            return PathState("symlink", link_target=rest.removesuffix("\n"))
        if kind not in ("file", "directory"):
            return PathState(kind if kind == "other" else "missing")
        lines = rest.splitlines()
        mode, owner, group, inode, mtime, size = lines[0].split()
        extra = lines[1].split()[0] if len(lines) > 1 and lines[1].split() else ""
        common = {"mode": int(mode, 8), "owner": owner, "group": group, "inode": int(inode),
                  "mtime": int(mtime), "size": int(size)}
        if kind == "directory":
            return PathState("directory", empty=(extra == "0") if self.entries else None, **common)
        return PathState("file", sha256=extra, **common)


@dataclass(frozen=True)
class FileText(Fact):
    """A text file's content; None when it does not exist."""

    path: str

    @property
    def script(self) -> str:
        p = q(self.path)
        return f"if [ -f {p} ]; then cat -- {p}; else exit 3; fi"

    def parse(self, stdout: str, exit_code: int) -> str | None:
        return stdout if exit_code == 0 else None


# -- system --------------------------------------------------------------------------


@dataclass(frozen=True)
class OsInfo:
    distro: str
    version: str
    pretty: str
    kernel: str
    arch: str


@dataclass(frozen=True)
class OsFacts(Fact):
    script: ClassVar[str] = "uname -rm; cat /etc/os-release"

    def parse(self, stdout: str, exit_code: int) -> OsInfo:
        lines = stdout.splitlines() or [""]
        kernel, _, arch = lines[0].partition(" ")
        release = {}
        for line in lines[1:]:
            key, sep, value = line.partition("=")
            if sep:
                release[key.strip()] = value.strip().strip('"')
        return OsInfo(release.get("ID", "unknown"), release.get("VERSION_ID", ""),
                      release.get("PRETTY_NAME", release.get("ID", "unknown")), kernel, arch)


@dataclass(frozen=True)
class CommandPaths(Fact):
    """Where each named command is found on the host's (fixed) PATH; None if absent."""

    names: tuple[str, ...]

    @property
    def script(self) -> str:
        return "".join(f"command -v {q(n)} || echo\n" for n in self.names)  # no subshells

    def parse(self, stdout: str, exit_code: int) -> dict[str, str | None]:
        found = (stdout.splitlines() + [""] * len(self.names))[: len(self.names)]
        return {name: path or None for name, path in zip(self.names, found)}


@dataclass(frozen=True)
class Mount:
    target: str
    source: str
    fstype: str
    options: str


def _unescape_hex(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True)
class Mounts(Fact):
    """The mount table as findmnt reads it (raw: fields hex-escaped, split on spaces)."""

    script: ClassVar[str] = "findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS"

    def parse(self, stdout: str, exit_code: int) -> tuple[Mount, ...]:
        mounts = []
        for line in stdout.splitlines():
            fields = line.split(" ")
            if len(fields) == 4:
                mounts.append(Mount(*(_unescape_hex(f) for f in fields)))
        return tuple(mounts)


def mount_at(mounts: tuple[Mount, ...], target: str) -> Mount | None:
    """The mount covering exactly ``target`` (the last one wins, as in the kernel)."""
    found = [m for m in mounts if m.target == target]
    return found[-1] if found else None


@dataclass(frozen=True)
class ActiveSwaps(Fact):
    script: ClassVar[str] = "cat /proc/swaps"

    def parse(self, stdout: str, exit_code: int) -> tuple[str, ...]:
        return tuple(line.split()[0] for line in stdout.splitlines()[1:] if line.strip())


@dataclass(frozen=True)
class ClockSync(Fact):
    """'yes', 'no' or 'unknown': is the clock synchronised (systemd, chrony or ntpd)?"""

    script: ClassVar[str] = (
        "if command -v timedatectl >/dev/null && s=$(timedatectl show -p NTPSynchronized --value)"
        "; then echo \"$s\"\n"
        "elif command -v chronyc >/dev/null; then chronyc -n tracking | grep -q 'Leap status *: Normal'"
        " && echo yes || echo no\n"
        "elif command -v ntpstat >/dev/null; then ntpstat >/dev/null && echo yes || echo no\n"
        "else echo unknown; fi"
    )

    def parse(self, stdout: str, exit_code: int) -> str:
        answer = stdout.strip().lower()
        return answer if answer in ("yes", "no") else "unknown"


FIREWALLS = ("firewalld", "ufw")


@dataclass(frozen=True)
class ActiveFirewalls(Fact):
    script: ClassVar[str] = "systemctl is-active " + " ".join(FIREWALLS)  # a line per unit

    def parse(self, stdout: str, exit_code: int) -> tuple[str, ...]:
        states = stdout.split()
        return tuple(name for name, state in zip(FIREWALLS, states) if state == "active")


# -- GPU and container runtimes -----------------------------------------------------------


@dataclass(frozen=True)
class Gpus(Fact):
    """(driver version, GPU names) from nvidia-smi; None when it does not answer."""

    script: ClassVar[str] = "nvidia-smi --query-gpu=driver_version,name --format=csv,noheader"

    def parse(self, stdout: str, exit_code: int) -> tuple[str, tuple[str, ...]] | None:
        rows = [line.split(",", 1) for line in stdout.splitlines() if line.strip()]
        if exit_code != 0 or not rows:
            return None
        return rows[0][0].strip(), tuple(row[-1].strip() for row in rows)


@dataclass(frozen=True)
class DockerRuntimes(Fact):
    """(default runtime, runtime names) the running docker daemon reports; None if it does not."""

    script: ClassVar[str] = "docker info --format '{{json .}}'"

    def parse(self, stdout: str, exit_code: int) -> tuple[str, tuple[str, ...]] | None:
        try:
            info = json.loads(stdout)
        except ValueError:
            return None
        if exit_code != 0 or not isinstance(info, dict):
            return None
        return str(info.get("DefaultRuntime", "")), tuple(sorted(info.get("Runtimes") or {}))


@dataclass(frozen=True)
class ContainerdConfig(Fact):
    """The configuration containerd is running with (``containerd config dump``)."""

    script: ClassVar[str] = "containerd config dump"

    def parse(self, stdout: str, exit_code: int) -> str | None:
        return stdout if exit_code == 0 else None
