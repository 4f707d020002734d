"""A changing run of a site: locks held, journal open, cluster copy mirrored."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError
from cubeinstall.run.journal import Journal
from cubeinstall.run.lock import local_lock
from cubeinstall.site.stages import Layer, Stage


@contextmanager
def changing_run(ctx: RunContext, stages: list[Stage]) -> Iterator[Journal]:
    """Hold the site's locks for the run and give it the journal.

    The cluster Lease and the journal's cluster copy are used only when the run
    touches the cluster: node stages alone must work before any cluster exists.
    """
    site = ctx.site.site
    journal = Journal.load(site)
    with ExitStack() as stack:
        stack.enter_context(local_lock(site))
        if any(stage.layer is Layer.CLUSTER for stage in stages):
            from cubeinstall.kube.client import client_for
            from cubeinstall.kube.lease import save_journal, site_lease

            client = client_for(ctx)
            stack.enter_context(site_lease(client, site))
            journal.mirror = _mirror(ctx, lambda text: save_journal(client, site, text))
            stack.callback(journal.flush)  # before the Lease is given back
        yield journal


def _mirror(ctx: RunContext, save):
    """The cluster copy is a convenience: losing it must not fail the install."""
    warned = False

    def mirror(text: str) -> None:
        nonlocal warned
        try:
            save(text)
        except CubeError as exc:  # the server's answer: reported once, the local journal is kept
            if not warned:
                ctx.out.warn(f"could not save the journal's cluster copy: {exc}")
                warned = True

    return mirror
