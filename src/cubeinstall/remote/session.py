"""One long-lived root shell per host connection, fed one script at a time.

Every SSH exec channel costs the host a session process, the user's login
shell, ``sh`` and, for other users, a ``sudo``; a stage makes a round trip or
more per host (facts, changes, checks), so all of a connection's round trips
go to one ``sh -s`` started once (behind ``sudo`` once). Each script reaches
that shell as one quoted word, run by ``eval`` in a subshell: a syntax error,
an ``exit`` or ``set -e`` in it end the subshell only, and nothing in it can
read the scripts that follow (its stdin is /dev/null).

The subshell's stdout and stderr go to two spool files of the shell (``/tmp``,
a random name created exclusively with mode 600 by its first script, unlinked
at once and kept open), emptied before each script; one ``cat`` then sends
them back between a random begin marker, a stderr marker and an end marker
with the exit status. So a script's output crosses the network in one or two
writes instead of one per command it ran: each write is an SSH packet that
both ends encrypt, MAC and hand between threads, which was most of the
installer's CPU per host. Opened once per shell, not per script, the spool
costs a script no ``rm`` and no subshell on the host. A background child that a
script leaves behind and that writes after its script ended writes into the
emptied spool (before the next script's begin marker, or emptied again): it
cannot stall the match or leak into the next script. A shell that timed out
or broke is closed, and the next script starts a new one.
"""

from __future__ import annotations

import secrets
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from cubeinstall.core.redaction import redact
from cubeinstall.remote.errors import HostError
from cubeinstall.remote.shell import q

_READ = 65536


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Deadline:
    def __init__(self, label: str, timeout: float):
        self.label = label
        self.timeout = timeout
        self.at = time.monotonic() + timeout

    def remaining(self) -> float:
        """Seconds left (at most 1, so waits wake up to check); HostError once past."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise HostError(self.label, f"command timed out after {self.timeout:g}s",
                            hint="raise ssh.command_timeout in site.yaml if the host is slow")
        return min(left, 1.0)


def collect(channel, deadline: Deadline,
            finished: Callable[[bytearray, bytearray], bool] = lambda out, err: False):
    """(stdout, stderr) read until ``finished`` says so, or EOF."""
    out, err = bytearray(), bytearray()
    # poll, not select: a run holds every host's connection open (3 descriptors each),
    # and select() cannot wait on a descriptor numbered 1024 or more.
    wakeup = select.poll()
    wakeup.register(channel, select.POLLIN)
    while not finished(out, err):
        if channel.recv_ready():
            out += channel.recv(_READ)
        elif channel.recv_stderr_ready():
            err += channel.recv_stderr(_READ)
        elif channel.eof_received or channel.closed:
            break
        else:  # sleeps until data or EOF arrives
            wakeup.poll(deadline.remaining() * 1000)
    return out, err


class RemoteShell:
    """``sh -s`` (as root) on an open exec channel; ``run`` one script at a time."""

    def __init__(self, channel, label: str):
        self.channel = channel
        self.label = label

    @property
    def usable(self) -> bool:
        channel = self.channel
        return not (channel.closed or channel.eof_received or channel.exit_status_ready())

    def run(self, script: str, timeout: float) -> CommandResult:
        token = secrets.token_hex(8)
        begin, middle, end = (f"@@cubeinstall-{word}-{token}" for word in ("begin", "stderr", "done"))
        self._drain()
        self.channel.sendall(_spooled(script, f"/tmp/.cubeinstall-{token}", begin, middle, end))
        done = f"\n{end} ".encode()

        def finished(out: bytearray, err: bytearray) -> bool:  # "<end> <status>\n" is complete
            at = out.find(done)
            return at != -1 and out.find(b"\n", at + len(done)) != -1

        out, err = collect(self.channel, Deadline(self.label, timeout), finished)
        if not finished(out, err):
            tail = redact(err.decode("utf-8", "replace").strip()[-500:])
            raise HostError(self.label, f"the remote shell ended unexpectedly: {tail or 'no output'}",
                            hint="check the host's sshd and sudo logs")
        done_at = out.find(done)
        status = int(out[done_at + len(done):out.find(b"\n", done_at + len(done))])
        errors_at = out.rfind(f"\n{middle}\n".encode(), 0, done_at)
        return CommandResult(status, _between(out, begin, errors_at),
                             bytes(out[errors_at + len(middle) + 2:done_at]).decode("utf-8", "replace"))

    def _drain(self) -> None:
        """Discard what arrived since the last script (a background child it left may write
        later): only this script's output, between its markers, is ever read."""
        while self.channel.recv_ready():
            self.channel.recv(_READ)
        while self.channel.recv_stderr_ready():
            self.channel.recv_stderr(_READ)

    def close(self) -> None:
        self.channel.close()


def _spooled(script: str, spool: str, begin: str, middle: str, end: str) -> bytes:
    """Shell that runs ``script`` with its output spooled, then sends it with one write:
    begin marker, stdout, stderr marker, stderr, end marker and exit status (125 and the
    reason when the spool cannot be written). One write, because sshd leaves Nagle's
    algorithm on for sessions without a terminal: a second write would wait for the ACK
    of the first, a network round trip.

    The shell's first script creates the spool files (``spool``.o and .e, exclusively,
    mode 600), opens them for appending as fd 5 and 6 and removes their names at once
    (nothing is left behind, even if the shell is killed); a shell that could not stays
    without them and every script says so. Each script empties them through
    /proc/self/fd (the files have no name) and ``cat`` reads them back the same way, from
    their start, so a script costs the host no process but its subshell and one ``cat``.
    (``true``, not ``:``, empties them: a failed redirection of a special builtin such as
    ``:`` would end the shell.)"""
    out, err = f"{spool}.o", f"{spool}.e"
    failed = "printf '%s\\n\\n%s\\n%s\\n\\n%s 125\\n' {} {} {} {}".format(
        begin, middle, q(f"cannot write {out}: the node stages need /tmp writable by root"), end)
    return (
        f'if [ -z "${{__cube_spool-}}" ] && ( umask 077; set -C; : >{out} && : >{err} ) 2>/dev/null; then\n'
        f"exec 5>>{out} 6>>{err}; rm -f {out} {err}; __cube_spool=open\n"
        f"fi\n"
        f'if [ -n "${{__cube_spool-}}" ] && true >/proc/self/fd/5 && true >/proc/self/fd/6; then\n'
        f"printf '%s\\n' {begin} >&5\n"
        f"( eval {q(script)} ) </dev/null >&5 2>&6 5>&- 6>&-; __cube_rc=$?\n"
        f"printf '\\n%s\\n' {middle} >&5 && {{ [ ! -s /proc/self/fd/6 ] || cat </proc/self/fd/6 >&5; }} &&\n"
        f"printf '\\n%s %s\\n' {end} \"$__cube_rc\" >&5 && cat </proc/self/fd/5 || {failed}\n"
        f"else {failed}; fi\n"
    ).encode()


def _between(data: bytearray, begin: str, end_at: int) -> str:
    """The text after the begin marker's line and before ``end_at`` (output a background
    child of an earlier script wrote late stands before the marker, and is dropped)."""
    marker = f"{begin}\n".encode()
    start = data.rfind(marker, 0, end_at)
    start = 0 if start == -1 else start + len(marker)
    return bytes(data[start:end_at]).decode("utf-8", "replace")
