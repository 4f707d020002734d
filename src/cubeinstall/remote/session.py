"""One long-lived root shell per host connection, fed one script at a time.

Every SSH exec channel costs the host a session process, the user's login
shell, ``sh`` and, for other users, a ``sudo``; a stage makes a round trip or
more per host (facts, changes, checks), so all of a connection's round trips
go to one ``sh -s`` started once (behind ``sudo`` once). Each script reaches
that shell as one quoted word, run by ``eval`` in a subshell: a syntax error,
an ``exit`` or ``set -e`` in it end the subshell only, and nothing in it can
read the scripts that follow (its stdin is /dev/null). After the subshell the
shell prints a random end marker with the exit status on stdout, and the
marker on stderr; the output is read up to both. A shell that timed out or
broke is closed, and the next script starts a new one.
"""

from __future__ import annotations

import re
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
    while not finished(out, err):
        if channel.recv_ready():
            out += channel.recv(_READ)
        elif channel.recv_stderr_ready():
            err += channel.recv_stderr(_READ)
        elif channel.eof_received or channel.closed:
            break
        else:  # sleeps until data or EOF arrives
            select.select([channel], [], [], deadline.remaining())
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
        marker = f"@@cubeinstall-done-{secrets.token_hex(8)}".encode()
        self.channel.sendall(
            f"( eval {q(script)} ) </dev/null\n"
            f"printf '\\n%s %s\\n' {marker.decode()} \"$?\"; "
            f"printf '\\n%s\\n' {marker.decode()} >&2\n".encode())
        status = re.compile(rb"\n" + marker + rb" (\d+)\n\Z")
        err_end = b"\n" + marker + b"\n"

        def finished(out: bytearray, err: bytearray) -> bool:
            return err.endswith(err_end) and status.search(out[-len(marker) - 16:]) is not None

        out, err = collect(self.channel, Deadline(self.label, timeout), finished)
        if not finished(out, err):
            tail = redact(err.decode("utf-8", "replace").strip()[-500:])
            raise HostError(self.label, f"the remote shell ended unexpectedly: {tail or 'no output'}",
                            hint="check the host's sshd and sudo logs")
        code = int(status.search(out[-len(marker) - 16:]).group(1))
        stdout = out[:out.rindex(b"\n" + marker + b" ")]
        return CommandResult(code, stdout.decode("utf-8", "replace"),
                             err[:-len(err_end)].decode("utf-8", "replace"))

    def close(self) -> None:
        self.channel.close()
