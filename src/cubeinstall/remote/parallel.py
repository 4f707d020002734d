"""Run one stage's work on many hosts at once, with a bounded pool.

A host that fails (unreachable, refused key, a failed step) does not stop the
others: every host finishes or fails on its own, then a per-host table is
shown and, if any failed, ``StageFailed`` lists each of them with its error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError, StageFailed
from cubeinstall.core.redaction import redact
from cubeinstall.site.model import Node

HostWork = Callable[["Host"], None]  # noqa: F821 - cubeinstall.remote.host.Host


@dataclass
class HostReport:
    name: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(1 for change in self.changes if change.changes_something)


def run_on_nodes(ctx: RunContext, stage: str, nodes: Sequence[Node], work: HostWork,
                 *, write: bool) -> list[Change]:
    """``work(host)`` on every node; the changes of all hosts, or StageFailed."""
    from cubeinstall.remote.pool import pool_for

    if not nodes:
        return []
    connections = pool_for(ctx)
    workers = min(ctx.site.ssh.parallel, len(nodes))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ssh-{stage}") as threads:
        reports = list(threads.map(
            lambda node: _finished(ctx, stage, _run_one(node, connections, work, write)), nodes))
    for report in reports:
        for warning in report.warnings:
            ctx.out.warn(f"{report.name}: {warning}", stage=stage, host=report.name)
    _table(ctx, stage, reports)
    failed = [r for r in reports if r.error]
    if failed:
        lines = "\n".join(f"  - {r.error}" for r in failed)
        error = StageFailed(
            stage, f"{len(failed)} of {len(reports)} hosts failed:\n{lines}",
            hint="fix those hosts and run the stage again; the other hosts are done "
                 "and will report unchanged")
        error.changes = [c for r in reports for c in r.changes]  # what the others did
        raise error
    return [change for report in reports for change in report.changes]


def _run_one(node: Node, connections, work: HostWork, write: bool) -> HostReport:
    from cubeinstall.remote.host import Host

    report = HostReport(node.name)
    started = time.monotonic()
    host = None
    try:
        host = Host(node.name, connections.get(node), write)
        work(host)
    except CubeError as exc:
        report.error = redact(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug on one host must not hide the others
        report.error = redact(f"{node.name}: unexpected {type(exc).__name__}: {exc}")
    if report.error:
        connections.discard(node.name)  # the next stage starts from a fresh connection
    if host is not None:
        report.changes, report.warnings = host.changes, host.warnings
    report.seconds = time.monotonic() - started
    return report


def _finished(ctx: RunContext, stage: str, report: HostReport) -> HostReport:
    """Say a host's result as soon as it is known (the table waits for the slowest host)."""
    if report.error:
        message = f"  ✖ {report.name}: failed: {report.error.splitlines()[0]}"
    else:
        message = (f"  ✔ {report.name}: "
                   + (f"{report.changed} changed" if report.changed else "unchanged")
                   + f" ({report.seconds:.1f}s)")
    ctx.out.event("host-done", stage=stage, host=report.name, changed=report.changed,
                  failed=bool(report.error), seconds=round(report.seconds, 2), message=message)
    return report


def _table(ctx: RunContext, stage: str, reports: list[HostReport]) -> None:
    rows = []
    for report in reports:
        unchanged = sum(1 for c in report.changes if c.action == "unchanged")
        status = "failed" if report.error else ("changed" if report.changed else "unchanged")
        note = (report.error or "; ".join(report.warnings)).splitlines()[0] if (
            report.error or report.warnings) else ""
        rows.append([report.name, status, report.changed, unchanged,
                     f"{report.seconds:.1f}s", note])
    ctx.out.table(f"{stage}: hosts", ["host", "result", "changed", "unchanged", "time", "note"],
                  rows)
