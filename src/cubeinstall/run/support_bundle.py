"""The failure support bundle: one file per failed stage, its path printed with the error.

When a stage fails the runner calls ``write_for_failure``. The file holds the
header (site, stage, version, time, command, the failure and its hint), what
the stage reported (its warnings; for a node stage the per-host results its
error carries) and, for a stage with Kubernetes objects, the cluster's view of
them (kube/support.py: objects not ready, pods, logs, events). It is redacted
as a whole, written atomically with mode 0600 to
``<state dir>/support/<site>-<stage>-<UTC yyyymmddThhmmss>.txt``; the newest
KEEP files per site and stage are kept. Writing it never replaces the stage's
own error: a failure here is a warning.
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cubeinstall import __version__
from cubeinstall.core.errors import CubeError, StageFailed
from cubeinstall.core.files import write_atomically
from cubeinstall.core.redaction import redact
from cubeinstall.run.journal import state_dir
from cubeinstall.run.support_text import section

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.site.stages import Stage

KEEP = 20
WITHOUT_OBJECTS = {
    "node": "the stage works on the hosts over SSH",
    "registry": "the stage works on the image registry",
    "database": "the stage works on the database",
    "cluster": "the stage checks or changes the cluster in code",
}


def write_for_failure(ctx: RunContext, stage: Stage, failure: StageFailed,
                      objects: list[dict] | None, rendered: bool = True) -> str | None:
    """The bundle's path, or None (with a warning) when it could not be written.
    ``objects``: the stage's objects as the run rendered them (``rendered`` False: the
    stage failed before they could be rendered)."""
    try:
        text = bundle_text(ctx, stage, failure, objects, rendered)
        return str(write_bundle(state_dir() / "support", ctx.site.site, stage.name, text))
    except Exception as exc:  # noqa: BLE001 - the stage's own error must reach the user
        ctx.out.warn(f"could not write the support bundle of stage {stage.name}: {exc}",
                     stage=stage.name)
        return None


def bundle_text(ctx: RunContext, stage: Stage, failure: StageFailed,
                objects: list[dict] | None, rendered: bool = True) -> str:
    parts = [header(ctx.site.site, stage.name, failure), *stage_report(ctx, stage.name, failure),
             *cluster_part(ctx, stage, failure, objects, rendered)]
    return redact("\n".join(parts))


def header(site: str, stage: str, failure: CubeError, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    lines = ["cubeinstall support bundle",
             f"site:     {site}",
             f"stage:    {stage}",
             f"version:  cubeinstall {__version__}",
             f"time:     {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
             f"command:  {shlex.join(['cubeinstall', *sys.argv[1:]])}", ""]
    hint = [f"hint: {failure.hint}"] if failure.hint else []
    return "\n".join(lines) + "\n" + section("failure", [failure.message, *hint])


def stage_report(ctx: RunContext, stage: str, failure: StageFailed) -> list[str]:
    """What the stage itself reported: results of the hosts that did not fail, warnings."""
    sections = []
    changes = getattr(failure, "changes", None) or []
    if changes:
        sections.append(section("what the stage did on the hosts that did not fail", [
            f"- {c.action:9} {c.target}" + (f"  ({c.detail})" if c.detail else "")
            for c in changes]))
    warnings = [event.get("message", "") for event in ctx.out.events
                if event.get("event") == "warning" and event.get("stage") == stage]
    if warnings:
        sections.append(section("warnings the stage reported", [f"- {w}" for w in warnings]))
    return sections


def cluster_part(ctx: RunContext, stage: Stage, failure: StageFailed,
                 objects: list[dict] | None, rendered: bool = True) -> list[str]:
    if not rendered:
        return [section("cluster state", "not collected: the stage's objects could not be "
                        f"rendered ({failure.message})")]
    if not objects:
        why = WITHOUT_OBJECTS.get(stage.layer.value, WITHOUT_OBJECTS["cluster"])
        return [section("cluster state", f"not collected: {why} and has no Kubernetes objects "
                        "of its own; this bundle holds only the failure above (which names "
                        "each failed host or object and why) and what the stage reported")]
    from cubeinstall.kube.client import client_for
    from cubeinstall.kube.support import collect
    from cubeinstall.run.support_text import cluster_sections

    try:
        # Short requests: the budget in collect() bounds the whole, these each read.
        client = client_for(ctx).with_timeout(2, 4)
    except CubeError as exc:
        return [section("cluster state", f"not collected: {exc.message}")]
    return cluster_sections(collect(client, stage.name, objects, getattr(failure, "targets", ())))


def write_bundle(directory: Path, site: str, stage: str, text: str,
                 now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path, number = directory / f"{site}-{stage}-{stamp}.txt", 1
    while path.exists():  # two failures within a second
        number += 1
        path = directory / f"{site}-{stage}-{stamp}-{number}.txt"
    write_atomically(path, text)
    os.chmod(path, 0o600)  # mkstemp's mode already; said here because it matters
    for old in sorted(directory.glob(f"{site}-{stage}-[0-9]*T*.txt"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path
