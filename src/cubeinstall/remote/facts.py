"""Host facts: a read-only shell command plus a pure parser of its output.

Facts are frozen dataclasses, so equal facts are one key: a host gathers all
the facts a batch of operations needs in one round trip (``Host.facts``).
Parsers never raise on odd output; they return what can be known.

Every process a fact starts on the host costs about a millisecond of CPU
there, which adds up over many hosts: small files that are only parsed are
read with shell builtins, and all paths of a round trip are read by one
``find`` (``PathInfo`` reads its facts together, see ``reading``) instead of
a ``stat`` per path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import ClassVar

from cubeinstall.remote.reading import Fact
from cubeinstall.remote.shell import q


def print_file(path: str) -> str:
    """Shell printing a small text file with builtins only (no process), for parsing."""
    return (f"while IFS= read -r line || [ -n \"$line\" ]; do printf '%s\\n' \"$line\"; "
            f"done < {q(path)}")


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


# find prints, per path as given: path, type, mode, owner, group, inode, mtime, size,
# link target, then E for an empty directory; NUL-separated (a path may hold newlines).
_FIND_FIELDS = r"%p\0%y\0%m\0%u\0%g\0%i\0%T@\0%s\0%l\0"
_FIND_RECORD = 10
_DIGESTS = "@digests"  # separates find's records from sha256sum's lines (no path starts with @)


def _find_path(path: str) -> str:
    """``path`` as a find starting point: never taken for an option or an expression."""
    return path if path.startswith("/") else "./" + path


def _unescape_digest_name(name: str) -> str:
    """sha256sum escapes a name holding a backslash or newline (and marks the line with \\)."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), name)


def _digests(text: str) -> dict[str, str]:
    """{file name: sha256} from sha256sum's output lines."""
    found = {}
    for line in text.split("\n"):
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, separator, name = body[:64], body[64:66], body[66:]
        if len(digest) == 64 and separator in ("  ", " *"):
            found[_unescape_digest_name(name) if escaped else name] = digest
    return found


@dataclass(frozen=True)
class PathInfo(Fact):
    """Kind, mode, owner, inode, mtime; ``digest``: the sha256 of a file; ``entries``:
    whether a directory is empty. All paths of a round trip are read by one ``find``,
    and the files whose digest is asked by one ``sha256sum``."""

    path: str
    entries: bool = False
    digest: bool = False
    together: ClassVar[bool] = True

    @classmethod
    def read_together(cls, facts: list[PathInfo]) -> str:
        words = " ".join(q(_find_path(p)) for p in dict.fromkeys(f.path for f in facts))
        digested = " ".join(q(_find_path(p)) for p in dict.fromkeys(f.path for f in facts if f.digest))
        script = (f"find {words} -maxdepth 0 -printf '{_FIND_FIELDS}' "
                  "\\( -type d -empty -printf 'E\\0' -o -printf '-\\0' \\)\n")
        if digested:
            script += (f"printf '{_DIGESTS}\\0'\n"
                       f"set --; for p in {digested}; do "
                       'if [ -f "$p" ] && [ ! -L "$p" ]; then set -- "$@" "$p"; fi; done\n'
                       '[ "$#" = 0 ] || sha256sum -- "$@"')
        return script

    @classmethod
    def parse_together(cls, facts: list[PathInfo], stdout: str, exit_code: int) -> list[PathState]:
        fields = stdout.split("\0")
        records, index = {}, 0
        while index + _FIND_RECORD <= len(fields) and fields[index] != _DIGESTS:
            record = fields[index:index + _FIND_RECORD]
            records[record[0]] = record
            index += _FIND_RECORD
        digests = _digests("\0".join(fields[index + 1:])) if index < len(fields) else {}
        return [cls._state(fact, records.get(_find_path(fact.path)), digests) for fact in facts]

    @staticmethod
    def _state(fact: PathInfo, record: list[str] | None, digests: dict[str, str]) -> PathState:
        if record is None:
            return MISSING
        name, kind, mode, owner, group, inode, mtime, size, link, empty = record
        if kind == "l":
            return PathState("symlink", link_target=link)
        if kind not in ("f", "d"):
            return PathState("other")
        try:
            common = {"mode": int(mode, 8), "owner": owner, "group": group, "inode": int(inode),
                      "mtime": int(float(mtime)), "size": int(size)}
        except ValueError:
            return PathState("other")
        if kind == "d":
            return PathState("directory", empty=(empty == "E") if fact.entries else None, **common)
        return PathState("file", sha256=digests.get(name) if fact.digest else None, **common)


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


@dataclass(frozen=True)
class WriteProbe(Fact):
    """(ok, error): can root create a file at ``path`` (removed at once)? It writes, so
    only runs that may write ask it; asked with a stage's first read, its answer
    stands as long as nothing is written on the host afterwards."""

    path: str

    @property
    def script(self) -> str:
        p = q(self.path)
        return f"{{ echo probe > {p} && rm -f -- {p}; }} 2>&1"

    def parse(self, stdout: str, exit_code: int) -> tuple[bool, str]:
        return exit_code == 0, stdout.strip()


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
    script: ClassVar[str] = "uname -rm; " + print_file("/etc/os-release")

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
    script: ClassVar[str] = print_file("/proc/swaps")

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
    """The firewall services running. Only installed ones are asked (a line of their
    names, then systemctl's line per unit): no firewall program, no systemctl call."""

    script: ClassVar[str] = (
        f"set --; for unit in {' '.join(FIREWALLS)}; do "
        'if command -v "$unit" >/dev/null; then set -- "$@" "$unit"; fi; done\n'
        'echo "$@"; [ "$#" = 0 ] || systemctl is-active "$@"'
    )

    def parse(self, stdout: str, exit_code: int) -> tuple[str, ...]:
        names, _, states = stdout.partition("\n")
        return tuple(name for name, state in zip(names.split(), states.split())
                     if name in FIREWALLS and state == "active")


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


_DOCKER_INFO = "docker info --format '{{json .}}'"


def _docker_info(stdout: str, exit_code: int) -> dict | None:
    try:
        info = json.loads(stdout)
    except ValueError:
        return None
    return info if exit_code == 0 and isinstance(info, dict) else None


@dataclass(frozen=True)
class DockerRuntimes(Fact):
    """(default runtime, runtime names) the running docker daemon reports; None if it does not."""

    script: ClassVar[str] = _DOCKER_INFO

    def parse(self, stdout: str, exit_code: int) -> tuple[str, tuple[str, ...]] | None:
        info = _docker_info(stdout, exit_code)
        if info is None:
            return None
        return str(info.get("DefaultRuntime", "")), tuple(sorted(info.get("Runtimes") or {}))


@dataclass(frozen=True)
class DockerInsecureRegistries(Fact):
    """The registries the running docker daemon treats as insecure (its IndexConfigs
    marked not Secure); None when docker does not answer."""

    script: ClassVar[str] = _DOCKER_INFO

    def parse(self, stdout: str, exit_code: int) -> tuple[str, ...] | None:
        info = _docker_info(stdout, exit_code)
        if info is None:
            return None
        indexes = (info.get("RegistryConfig") or {}).get("IndexConfigs") or {}
        return tuple(sorted(name for name, index in indexes.items()
                            if isinstance(index, dict) and index.get("Secure") is False))


@dataclass(frozen=True)
class ContainerdConfig(Fact):
    """The configuration containerd is running with (``containerd config dump``)."""

    script: ClassVar[str] = "containerd config dump"

    def parse(self, stdout: str, exit_code: int) -> str | None:
        return stdout if exit_code == 0 else None


# -- network -------------------------------------------------------------------------


@dataclass(frozen=True)
class TcpConnect(Fact):
    """(ok, problem): can the host open a TCP connection to ``address``:``port`` within
    ``seconds``? bash's /dev/tcp under coreutils' timeout: both are on every node that
    runs Kubernetes, where python3 or nc may not be."""

    address: str
    port: int
    seconds: int = 5

    @property
    def script(self) -> str:
        return ("if ! command -v bash >/dev/null; then echo 'bash not found'; exit 2; fi\n"
                f"timeout {self.seconds} bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' connect "
                f"{q(self.address)} {q(self.port)} 2>&1")

    def parse(self, stdout: str, exit_code: int) -> tuple[bool, str]:
        if exit_code == 0:
            return True, ""
        if exit_code == 124:
            return False, f"no answer within {self.seconds}s"
        # bash's first line holds the cause ("...: Connection refused"), the next one the path
        lines = [line.rsplit(": ", 1)[-1] for line in stdout.strip().splitlines() if line.strip()]
        return False, lines[0] if lines else f"exit {exit_code}"
