"""Run the real CLI as a subprocess and read its JSON events.

Every e2e step is `python -m cubeinstall --json ...` in a child process,
exactly as an operator runs it: its own interpreter, environment (secrets as
environment variables, its own cache and state directories) and exit code.
``start`` gives a running process whose events are read as they come, so a
test can SIGKILL it at a chosen event.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    events: list[dict]
    stderr: str
    seconds: float
    max_rss_kib: int = 0  # peak RSS of the child (ru_maxrss of wait4)

    def of(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["event"] == kind]

    def stage_events(self, kind: str) -> dict[str, dict]:
        return {event["stage"]: event for event in self.of(kind)}

    @property
    def done(self) -> dict[str, dict]:
        return self.stage_events("stage-done")

    @property
    def started(self) -> list[str]:
        return [event["stage"] for event in self.of("stage-start")]

    @property
    def skipped(self) -> list[str]:
        return [event["stage"] for event in self.of("stage-skipped")]

    def changes(self, stage: str | None = None) -> list[dict]:
        """Change events that changed something (create/update/delete/run)."""
        return [event for event in self.of("change")
                if event.get("action") not in ("unchanged", "skip")
                and (stage is None or event["stage"] == stage)]

    def explain(self) -> str:
        """What to print when an assertion on this run fails."""
        interesting = [e for e in self.events if e["event"] in
                       ("error", "stage-failed", "preflight", "warning", "stage-done")]
        lines = [json.dumps(e, sort_keys=True)[:600] for e in interesting[-40:]]
        return (f"cubeinstall {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f} s\n"
                + "\n".join(lines) + f"\nstderr: {self.stderr[-3000:]}")


@dataclass
class Cli:
    """The product's command line with a fixed environment and working directory."""

    config: Path
    env: dict[str, str]
    cwd: Path

    def command(self, *args: str, config: bool = True) -> list[str]:
        site = ["-c", str(self.config)] if config else []
        # --yes: `all`, `stage` and `uninstall` ask on a terminal and refuse without one
        return [sys.executable, "-m", "cubeinstall", "--json", "--yes", *args, *site]

    def __call__(self, *args: str, config: bool = True, timeout: float = 900) -> Run:
        process = self.start(*args, config=config)
        return process.finish(timeout)

    def start(self, *args: str, config: bool = True, env: dict[str, str] | None = None
              ) -> RunningCli:
        command = self.command(*args, config=config)
        process = subprocess.Popen(command, cwd=self.cwd, env=env or self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        return RunningCli(tuple(args), process, time.monotonic())


@dataclass
class RunningCli:
    args: tuple[str, ...]
    process: subprocess.Popen
    started: float
    events: list[dict] = field(default_factory=list)

    def read_until(self, trigger: Callable[[dict, list[dict]], bool], timeout: float = 600
                   ) -> dict | None:
        """Read events until ``trigger(event, events so far)``; None if the run ended first."""
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            event = _parse(line)
            if event is None:
                continue
            self.events.append(event)
            if trigger(event, self.events):
                return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no trigger event within {timeout} s: {self.events[-5:]}")
        return None

    def kill(self) -> Run:
        """SIGKILL the CLI process itself (as an OOM kill or a lost machine would), then
        reap it and whatever children it left in its session."""
        # os.kill, not Popen.send_signal: that polls first and would reap a run that has
        # just ended, leaving nothing for wait4 (and the test no exit code to report).
        os.kill(self.process.pid, signal.SIGKILL)
        run = self._reap()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # orphans (skopeo...) of this run only
        except ProcessLookupError:
            pass
        return run

    def finish(self, timeout: float = 900) -> Run:
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            event = _parse(line)
            if event is not None:
                self.events.append(event)
            if time.monotonic() > deadline:
                self.process.kill()
                raise TimeoutError(f"cubeinstall {' '.join(self.args)} ran over {timeout} s")
        return self._reap()

    def _reap(self) -> Run:
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        for line in self.process.stdout:  # what was written before the end
            event = _parse(line)
            if event is not None:
                self.events.append(event)
        stderr = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return Run(self.args, self.process.returncode, self.events, stderr,
                   time.monotonic() - self.started, usage.ru_maxrss)


def _parse(line: str) -> dict | None:
    return json.loads(line) if line.startswith("{") else None
