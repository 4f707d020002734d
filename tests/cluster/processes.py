"""Child processes of the test control plane: start, watch, stop, diagnose.

Every component runs in its own session (``start_new_session=True``), so
it is the leader of its own process group: stopping it signals the whole
group and nothing it may have forked survives, and a Ctrl-C in the
terminal running pytest does not hit the components half-way through a
clean shutdown.  Each process writes to its own log file; every error
raised here names the process and quotes the tail of that log, because
"kube-apiserver exited with code 1" alone never says why.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A control plane component failed to start, died, or did not get ready."""


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def format_tail(name: str, path: Path, lines: int = TAIL_LINES) -> str:
    tail = log_tail(path, lines) or "(log is empty)"
    return f"--- last {lines} lines of {name} log {path} ---\n{tail}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    There is a small window between closing the probe socket and the
    component binding the port; the components bind within a second and
    nothing else on a test machine allocates loopback ports that fast.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie.

    A detached cluster's processes are re-parented to PID 1, which in some
    containers never reaps them: a zombie counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # Format: "pid (comm) state ...": comm may contain spaces and parentheses.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def pid_executable(pid: int) -> str | None:
    """argv[0] of a running process, to check a recorded PID was not reused."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError:
        return None


def stop_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    if pid_alive(pid):
        raise ProcessError(f"process group {pid} survived SIGKILL")


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: have the kernel SIGKILL the child when its parent dies.

    Without it a test run killed hard (SIGKILL, OOM, a CI job cancelled)
    leaves a whole control plane running in its own sessions forever.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl ran
            os._exit(1)

    return preexec


@dataclass
class ManagedProcess:
    """One component: its command line, its log file and its Popen handle."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    #: Set instead of ``popen`` when re-attached to a detached cluster
    #: (``scripts/testcluster down`` runs in another Python process).
    attached_pid: int | None = None
    #: Killed by the kernel when the starting process dies (False for
    #: clusters meant to outlive it: ``scripts/testcluster up``).
    die_with_parent: bool = True

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # a fresh log per start
            try:
                self.popen = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(self.env) if self.env is not None else None,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
                )
            except OSError as exc:
                raise ProcessError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc
        return self

    @property
    def pid(self) -> int:
        if self.popen is not None:
            return self.popen.pid
        assert self.attached_pid is not None, f"{self.name} was not started"
        return self.attached_pid

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.attached_pid is None:
            return False
        # A recorded PID may have been reused after a reboot or a crash.
        return pid_alive(self.attached_pid) and pid_executable(self.attached_pid) == self.argv[0]

    def to_state(self) -> dict:
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "log": str(self.log_path),
        }

    @classmethod
    def from_state(cls, state: Mapping) -> ManagedProcess:
        return cls(state["name"], state["argv"], Path(state["log"]), attached_pid=state["pid"])

    def failure(self, what: str) -> ProcessError:
        """An error naming this process, what went wrong, and its log tail."""
        return ProcessError(f"{self.name}: {what}\n{format_tail(self.name, self.log_path)}")

    def check(self) -> None:
        """Raise if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise self.failure(f"exited with code {self.popen.returncode}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            if self.running():
                stop_group(self.pid, timeout)
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        # The leader is reaped; make sure no member of its group lingers.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watched: Iterable[ManagedProcess] = (),
    blame: ManagedProcess | None = None,
    interval: float = 0.1,
) -> float:
    """Poll ``condition`` until true; return the seconds it took.

    While waiting, a watched process that dies fails the wait at once
    (with its log tail) instead of letting it run into the timeout.  On
    timeout, the error quotes the log of ``blame`` (the process expected
    to make the condition true).
    """
    watched = list(watched)
    start = time.monotonic()
    deadline = start + timeout
    last_error: Exception | None = None
    while True:
        for proc in watched:
            proc.check()
        try:
            if condition():
                return time.monotonic() - start
        except Exception as exc:  # noqa: BLE001 - remembered for the report
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            message = f"timed out after {timeout:.0f}s waiting for {what}{detail}"
            if blame is not None:
                raise blame.failure(message)
            raise ProcessError(message)
        time.sleep(interval)
