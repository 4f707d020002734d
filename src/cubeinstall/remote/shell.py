"""Remote shell scripts, built so that no site value can become shell code.

Every remote command is a POSIX ``sh`` script sent on the channel's STDIN;
the remote command line is always a constant: ``sh -s`` (behind sudo for
non-root users, first through ``ROOT_SHELL_OR_SUDO``). So nothing we send —
file contents, secrets, paths — ever shows up in the node's process list, and
every value that appears inside the script is a ``shlex.quote``d word (printed
by the ``printf`` builtin where it is a file's content), octal escapes or a
base64 heredoc. The body runs inside
``{ ...; } </dev/null`` so no command in it can swallow the rest of the
script from stdin.
"""

from __future__ import annotations

import base64
import secrets
import shlex
from dataclasses import dataclass

# Fixed PATH: sbin helpers (mount.ceph, swapoff) are found whatever the login
# shell or sudo's secure_path say; LC_ALL=C keeps tool output parseable.
# HUP and PIPE ignored: when the installer dies, sshd closes the session's pipes
# and the next write would kill the script by a signal, which runs no cleanup
# (an atomic write's temp file would stay). Ignored, a failed write ends a
# change step under ``set -e`` like any error: its EXIT trap cleans up and the
# file stays whole. (Ignored signals stay ignored in subshells and commands.)
PRELUDE = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH\n"
    "LC_ALL=C; export LC_ALL\n"
    "trap '' HUP PIPE\n"
)


def q(value: object) -> str:
    """One shell word, whatever characters the value holds."""
    return shlex.quote(str(value))


def join(*words: object) -> str:
    """A command line from words, each quoted."""
    return " ".join(q(word) for word in words)


def sudo_command(mode: str) -> str:
    """The remote command line that runs the script read from stdin.

    ``root``: no sudo. ``nopasswd``: ``sudo -n`` never prompts. ``password``:
    ``sudo -k -S`` always reads exactly one password line from stdin first
    (-k ignores cached credentials, so the line is never left for the script).
    """
    if mode == "root":
        return "sh -s"
    if mode == "nopasswd":
        return "sudo -n -- sh -s"
    if mode == "password":
        return "sudo -k -S -p '' -- sh -s"
    raise ValueError(f"unknown sudo mode {mode!r}")


# A user other than root (sudo on) gets its root shell from the session that finds out
# how: uid 0 runs ``sh -s`` itself, anyone else ``sudo -n``; the shell's first line says
# which. When sudo needs a password (or refuses), the session ends with sudo's message
# on stderr. One session, one sudo: a separate probe cost each host a second session
# (its login shell, ``id``, ``sudo true``) and two round trips. ``sh -c`` so that any
# login shell runs it.
SHELL_MARK = "@@cubeinstall-shell"
ROOT_SHELL_OR_SUDO = (
    f"exec sh -c 'if [ \"$(id -u)\" = 0 ]; then echo {SHELL_MARK} root; exec sh -s; fi; "
    f"exec sudo -n -- sh -c \"echo {SHELL_MARK} nopasswd; exec sh -s\"'"
)


def wrap(body: str) -> str:
    """A complete script: fixed environment, body isolated from stdin."""
    return f"{PRELUDE}{{\n{body.rstrip()}\n}} </dev/null\n"


def heredoc_base64(data: bytes, into: str) -> str:
    """Shell that writes ``data`` exactly into the (already quoted) path ``into``.

    base64 keeps any byte (and any quoting character) out of the shell's
    reach; the random terminator cannot occur in base64 text.
    """
    tag = f"CUBEINSTALL_{secrets.token_hex(6).upper()}"
    encoded = base64.encodebytes(data).decode("ascii")
    return f"base64 -d > {into} <<'{tag}'\n{encoded}{tag}\n"


@dataclass(frozen=True)
class Section:
    """A piece of a batched script whose output is read back on its own."""

    key: str
    script: str


def batch(sections: list[Section], *, apply: bool = False,
          then: list[Section] = ()) -> tuple[str, str]:
    """One script running every section; returns (script, marker).

    Each section prints ``<marker> begin <n>`` before and ``<marker> end <n>
    <rc>`` after its output, so ``split_batch`` gives each its stdout and exit
    status. Fact sections (read-only) drop stderr and all run; ``apply``
    sections run under ``set -e``, keep stderr for the error report, and the
    script stops at the first failing one: later steps may need it. ``then``
    are read-only sections run after the apply sections, in the same round
    trip, only if all of those succeeded (the facts a next phase needs).
    """
    marker = f"@@cubeinstall-{secrets.token_hex(8)}"
    parts = []
    kinds = [apply] * len(sections) + [False] * len(then)
    for index, (section, write) in enumerate(zip([*sections, *then], kinds)):
        shell_opts, stderr, stop = (
            ("set -e\n", "2>&1", '; [ "$rc" = 0 ] || exit "$rc"') if write else ("", "2>/dev/null", "")
        )
        parts.append(
            f"printf '\\n%s begin {index}\\n' {q(marker)}\n"
            f"( {shell_opts}{section.script.rstrip()}\n) {stderr}\n"
            f"rc=$?; printf '\\n%s end {index} %s\\n' {q(marker)} \"$rc\"{stop}\n"
        )
    return "".join(parts), marker


def split_batch(stdout: str, marker: str, sections: list[Section]) -> dict[str, tuple[str, int]]:
    """Per-section (output, exit code) of the sections that ran, from a ``batch`` script."""
    results: dict[str, tuple[str, int]] = {}
    opened: tuple[int, str] | None = None
    for chunk in stdout.split(f"\n{marker} ")[1:]:
        head, _, rest = chunk.partition("\n")
        word, index, *status = head.split()
        if word == "begin":
            opened = (int(index), rest)
        elif opened is not None and opened[0] == int(index):
            results[sections[opened[0]].key] = (opened[1], int(status[0]))
            opened = None
    return results
