"""Idempotent host operations: facts in, a noop reason or a diff plus shell out.

Each operation names the facts it needs and decides, as a pure function of
their values, whether the host already matches ("directory /data/k8s exists")
or what to change: a human diff and the script that applies it. Nothing here
talks to a host, so unit tests are tables of facts -> outcome.

File writes are atomic — a temp file in the same directory, renamed over the
old one — keep the replaced file as ``<file>.cubeinstall-<UTC time>.bak``,
and keep an existing file's mode and owner unless the operation sets them.
Whole-file text and JSON edits are in ``edits.py``.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cubeinstall.remote.errors import Refused
from cubeinstall.remote.facts import (
    ActiveSwaps,
    Fact,
    FileText,
    Mounts,
    PathInfo,
    PathState,
    mount_at,
)
from cubeinstall.remote.shell import heredoc_base64, q

Facts = Mapping[Fact, Any]


@dataclass(frozen=True)
class Outcome:
    target: str
    action: str  # unchanged | create | update | delete | run
    detail: str
    diff: str = ""
    script: str = ""
    # (command, operand) when the script is just ``command -- operand``: outcomes in a
    # row with the same command are applied by one process with all their operands.
    batchable: tuple[str, str] | None = None

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def unchanged(target: str, reason: str) -> Outcome:
    return Outcome(target, "unchanged", reason)


class Operation:
    target: str

    def facts(self) -> tuple[Fact, ...]:
        raise NotImplementedError

    def decide(self, facts: Facts) -> Outcome:
        raise NotImplementedError


# -- shared pieces -------------------------------------------------------------------------


def _attributes_script(path: str, mode: int | None, owner: str | None, group: str | None) -> str:
    lines = []
    if owner:
        lines.append(f"chown {q(owner + (':' + group if group else ''))} {path}")
    if mode is not None:
        lines.append(f"chmod {mode:04o} {path}")
    return "\n".join(lines)


def _drift(state: PathState, mode: int | None, owner: str | None, group: str | None) -> list[str]:
    wrong = []
    if mode is not None and state.mode != mode:
        wrong.append(f"mode {state.mode:04o} -> {mode:04o}")
    if owner and state.owner != owner:
        wrong.append(f"owner {state.owner} -> {owner}")
    if group and state.group != group:
        wrong.append(f"group {state.group} -> {group}")
    return wrong


def backup_dest() -> str:
    """Shell: copy "$dest" (mode and owner kept) to a new <dest>.cubeinstall-<UTC time>[-n].bak
    and print its name; two backups within one second do not overwrite each other. The
    time is when the script was made (moments before it runs): no ``date`` process."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return (
        f'stamp="$dest.cubeinstall-{stamp}"; backup="$stamp.bak"; n=0\n'
        'while [ -e "$backup" ]; do n=$((n + 1)); backup="$stamp-$n.bak"; done\n'
        'cp -p -- "$dest" "$backup"; echo "backup: $backup"\n'
    )


def _fix_script(path: str, state: PathState, mode: int | None, owner: str | None,
                group: str | None) -> str:
    """Shell that corrects only the attributes that differ."""
    owner_wrong = (owner and state.owner != owner) or (group and state.group != group)
    return _attributes_script(q(path), mode if state.mode != mode else None,
                              owner if owner_wrong else None, group if owner_wrong else None)


def atomic_write(path: str, data: bytes, mode: int, owner: str, group: str, backup: bool,
                 secret: bool = False) -> str:
    """Shell: write ``data`` to a temp file beside ``path``, back up the old file, rename.

    The temp file (a random name) is made with its final mode and owner, then filled,
    with shell builtins where they give the exact result (``_create_temp``,
    ``_fill_temp``): a process costs the host about a millisecond of CPU, a builtin
    next to nothing. A ``secret``'s clear text never stands in the script.
    """
    directory, name = posixpath.split(path)
    temp = q(f"{directory or '.'}/.{name}.cubeinstall.{secrets.token_hex(8)}")
    keep_old = backup_dest() if backup else ""
    return (
        f"umask 077; dest={q(path)}; tmp={temp}\n"
        "trap 'rm -f -- \"$tmp\"' EXIT\n"
        + _create_temp(directory or ".", mode, owner, group)
        + _fill_temp(data, secret)
        + keep_old
        + 'mv -f -- "$tmp" "$dest"; trap - EXIT'
    )


def _create_temp(directory: str, mode: int, owner: str, group: str) -> str:
    """Shell creating "$tmp" empty with ``mode`` and ``owner``:``group``. A file root
    creates is root's, in root's group unless its directory is set-group-ID, and gets
    0666 minus the umask: so for root:root and a mode without execute or special bits
    the shell's own redirection does it; otherwise one ``install`` (mode and owner in one
    process where mktemp, chown and chmod were three)."""
    install = f'install -m {mode:04o} -o {q(owner)} -g {q(group)} /dev/null "$tmp"\n'
    if (owner, group) != ("root", "root") or mode & ~0o666:
        return install
    return (f"if [ -g {q(directory)} ]; then {install.rstrip()}\n"
            f'else umask {0o777 & ~mode:03o}; : >"$tmp"; umask 077; fi\n')


def _fill_temp(data: bytes, secret: bool) -> str:
    """Shell writing ``data`` exactly into "$tmp" with ``printf``, a builtin of every
    ``sh`` the node stages run on (dash, bash, busybox ash), so nothing is on a command
    line: text as one quoted word, a secret as octal escapes (its clear text is not in the
    script); what a shell word cannot hold (a NUL byte, or bytes that are not UTF-8) as
    base64 through ``base64 -d``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        return heredoc_base64(data, '"$tmp"')
    if secret:
        escaped = "".join(f"\\{byte:03o}" for byte in data)
        return f"printf '{escaped}' >\"$tmp\"\n"
    return f"printf '%s' {q(text)} >\"$tmp\"\n"


def unified_diff(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"{path} (now)", f"{path} (wanted)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# -- directories, files, symlinks ------------------------------------------------------------


@dataclass(frozen=True)
class EnsureDir(Operation):
    """A directory; ``mode``/``owner``/``group`` None means "whatever it has"."""

    path: str
    mode: int | None = 0o755
    owner: str | None = "root"
    group: str | None = "root"

    @property
    def target(self) -> str:
        return self.path

    def facts(self):
        return (PathInfo(self.path),)

    def decide(self, facts: Facts) -> Outcome:
        state: PathState = facts[PathInfo(self.path)]
        if state.kind == "missing":
            command = self._create()
            return Outcome(self.path, "create", "directory" + self._wanted(),
                           script=f"{command} -- {q(self.path)}", batchable=(command, self.path))
        if state.kind != "directory":
            raise Refused(f"{self.path} exists but is {state.describe()}, not a directory",
                          hint="move it away; it is not touched")
        wrong = _drift(state, self.mode, self.owner, self.group)
        if not wrong:
            return unchanged(self.path, f"directory exists ({state.mode:04o} {state.owner}:{state.group})")
        return Outcome(self.path, "update", ", ".join(wrong),
                       script=_fix_script(self.path, state, self.mode, self.owner, self.group))

    def _create(self) -> str:
        """One process: install -d sets mode and owner as it creates (parents as mkdir -p)."""
        flags = [f"-m {self.mode:04o}" if self.mode is not None else "",
                 f"-o {q(self.owner)}" if self.owner else "", f"-g {q(self.group)}" if self.group else ""]
        if not any(flags):
            return "mkdir -p"
        return " ".join(["install -d", *filter(None, flags)])

    def _wanted(self) -> str:
        parts = [f"{self.mode:04o}" if self.mode is not None else "",
                 ":".join(filter(None, (self.owner, self.group)))]
        return f" ({' '.join(filter(None, parts))})" if any(parts) else ""


@dataclass(frozen=True)
class EnsureFile(Operation):
    """A file with exactly ``content``. A secret file's content is never read back
    nor shown: it is compared by sha256 and its diff says only that it changes."""

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False

    @property
    def target(self) -> str:
        return self.path

    def facts(self):
        state = PathInfo(self.path, digest=True)  # content compared by its sha256
        return (state,) if self.secret else (state, FileText(self.path))

    def decide(self, facts: Facts) -> Outcome:
        state: PathState = facts[PathInfo(self.path, digest=True)]
        if state.kind not in ("missing", "file"):
            raise Refused(f"{self.path} exists but is {state.describe()}, not a file",
                          hint="move it away; it is not touched")
        same_content = state.sha256 == hashlib.sha256(self.content).hexdigest()
        if same_content:
            wrong = _drift(state, self.mode, self.owner, self.group)
            if not wrong:
                return unchanged(self.path, f"content and mode {self.mode:04o} as wanted")
            return Outcome(self.path, "update", ", ".join(wrong),
                           script=_fix_script(self.path, state, self.mode, self.owner, self.group))
        if self.secret:
            diff = "(secret content: not shown)\n"
        else:
            old = facts[FileText(self.path)] or ""
            diff = unified_diff(old, self.content.decode("utf-8", "replace"), self.path)
        action = "create" if state.kind == "missing" else "update"
        script = atomic_write(self.path, self.content, self.mode, self.owner, self.group,
                              backup=state.exists, secret=self.secret)
        return Outcome(self.path, action, f"file {self.mode:04o} {self.owner}:{self.group}",
                       diff, script)


@dataclass(frozen=True)
class EnsureSymlink(Operation):
    path: str
    points_to: str

    @property
    def target(self) -> str:
        return self.path

    def facts(self):
        return (PathInfo(self.path, entries=True),)

    def decide(self, facts: Facts) -> Outcome:
        state: PathState = facts[PathInfo(self.path, entries=True)]
        link = f"symlink -> {self.points_to}"
        if state.kind == "symlink" and state.link_target == self.points_to:
            return unchanged(self.path, f"{link} exists")
        if state.kind == "symlink":
            temp = q(f"{self.path}.cubeinstall-new")
            script = f"ln -sfn -- {q(self.points_to)} {temp}\nmv -Tf -- {temp} {q(self.path)}"
            return Outcome(self.path, "update", f"{link} (was -> {state.link_target})", script=script)
        if state.kind == "directory" and state.empty:
            script = f"rmdir -- {q(self.path)}\nln -s -- {q(self.points_to)} {q(self.path)}"
            return Outcome(self.path, "update", f"{link} (replaces an empty directory)", script=script)
        if state.kind != "missing":
            raise Refused(f"{self.path} exists and is {state.describe()}"
                          + (" that is not empty" if state.kind == "directory" else "")
                          + f"; it should be a symlink to {self.points_to}",
                          hint=f"move its contents to {self.points_to}, remove it, and run again")
        script = (f"mkdir -p -- {q(posixpath.dirname(self.path) or '/')}\n"
                  f"ln -s -- {q(self.points_to)} {q(self.path)}")
        return Outcome(self.path, "create", link, script=script)


# -- mounts, swap, commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureMounted(Operation):
    """``mount_point`` mounted with one of ``fstypes``, else ``mount <mount_point>`` from fstab."""

    mount_point: str
    fstypes: tuple[str, ...]

    @property
    def target(self) -> str:
        return f"mount {self.mount_point}"

    def facts(self):
        return (Mounts(),)

    def decide(self, facts: Facts) -> Outcome:
        mount = mount_at(facts[Mounts()], self.mount_point)
        if mount is None:
            return Outcome(self.target, "create", f"mount {'/'.join(self.fstypes)} per /etc/fstab",
                           script=f"mount -- {q(self.mount_point)}")
        if mount.fstype in self.fstypes:
            return unchanged(self.target, f"mounted ({mount.fstype} from {mount.source})")
        raise Refused(f"{self.mount_point} is already a {mount.fstype} mount of {mount.source}, "
                      f"not {'/'.join(self.fstypes)}",
                      hint="unmount it (and remove its fstab line), or mount the shared file "
                           "system elsewhere with storage.mount_at")


@dataclass(frozen=True)
class SwapOff(Operation):
    target: str = "swap"

    def facts(self):
        return (ActiveSwaps(),)

    def decide(self, facts: Facts) -> Outcome:
        active = facts[ActiveSwaps()]
        if not active:
            return unchanged(self.target, "no active swap")
        return Outcome(self.target, "run", f"swapoff -a (active: {', '.join(active)})",
                       script="swapoff -a")


@dataclass(frozen=True)
class Run(Operation):
    """A command that always runs (it is the change): a restart, a tool that edits a file."""

    target: str
    script: str
    detail: str = ""

    def facts(self):
        return ()

    def decide(self, facts: Facts) -> Outcome:
        return Outcome(self.target, "run", self.detail or self.script, script=self.script)
