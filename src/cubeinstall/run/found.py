"""What a site leaves to be found in the cluster, filled in before stages render.

``components.kubeflow.mode: existing``: the running argo-server's Service, which the
gateway's /argo/ route points at (stages/kubeflow.py with_existing_server).
"""

from __future__ import annotations

import dataclasses

from cubeinstall.core.context import RunContext


def with_found(ctx: RunContext) -> RunContext:
    from cubeinstall.stages.kubeflow import with_existing_server

    site = with_existing_server(ctx)
    return ctx if site is ctx.site else dataclasses.replace(ctx, site=site)
