"""pv-pvc: the platform's PersistentVolumes on the shared storage, each bound to its claim."""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.site import platform
from cubeinstall.site.model import Site

STAGE = "pv-pvc"


def render(site: Site) -> list[dict]:
    volumes = [
        {"pv_name": volume.pv_name, "namespace": volume.namespace, "claim": volume.claim,
         "size": platform.volume_size(site, volume), "path": platform.volume_path(site, volume)}
        for volume in platform.PLATFORM_VOLUMES
    ]
    return render_stage(STAGE, volumes=volumes)
