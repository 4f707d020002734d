"""pv-pvc: the platform's PersistentVolumes on the shared storage, each bound to its claim."""

from __future__ import annotations

from cubeinstall import facts
from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site

STAGE = "pv-pvc"


def render(site: Site) -> list[dict]:
    volumes = [
        {"pv_name": volume.pv_name, "namespace": volume.namespace, "claim": volume.claim,
         "size": facts.volume_size(site, volume), "path": facts.volume_path(site, volume)}
        for volume in facts.PLATFORM_VOLUMES
    ]
    return render_stage(STAGE, volumes=volumes)
