"""The site's image inventory: every image it needs, once, with its private name.

Sources of images:
- the rendered objects of every enabled stage, walked by ``walk.images_in_objects``
  (``stages.images.site_inventory`` renders them with the registry rewrite OFF so that
  the inventory sees the upstream names);
- the shipped list of images the platform starts at run time
  (``manifests/runtime-images.yaml``).

Everything here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Iterable, Mapping

import yaml

from cubeinstall.core.errors import ConfigError
from cubeinstall.render import naming

if TYPE_CHECKING:
    from cubeinstall.site.model import Registry, Site

RUNTIME_PREFIX = "runtime:"


@dataclass(frozen=True)
class ImageUse:
    source: str  # normalised reference, e.g. docker.io/library/mysql:8.0.32
    target: str  # private reference in the site registry ("" without a registry)
    used_by: tuple[str, ...]  # stage names, "runtime:<group>" for run-time images
    in_site_registry: bool = False  # already served by the site registry: nothing to copy

    @property
    def needs_copy(self) -> bool:
        return bool(self.target) and not self.in_site_registry

    def as_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "used_by": list(self.used_by),
                "in_site_registry": self.in_site_registry}


@lru_cache(maxsize=1)
def runtime_images() -> dict[str, tuple[str, ...]]:
    """Group -> images of the shipped run-time list."""
    text = resources.files("cubeinstall").joinpath("manifests/runtime-images.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return {group: tuple(images) for group, images in data["images"].items()}


def build_inventory(images_by_user: Mapping[str, Iterable[str]],
                    registry: "Registry | None") -> list[ImageUse]:
    """De-duplicated, sorted inventory; ConfigError lists every bad or colliding reference."""
    users: dict[str, set[str]] = {}
    parsed: dict[str, naming.ImageRef] = {}
    problems: list[str] = []
    for user, images in images_by_user.items():
        for image in images:
            try:
                ref = naming.parse(image)
            except naming.InvalidReference as exc:
                problems.append(f"{user}: {exc}")
                continue
            parsed[str(ref)] = ref
            users.setdefault(str(ref), set()).add(user)
    if problems:
        raise ConfigError("invalid image references", problems=problems,
                          hint="fix the image in the component or the run-time list")
    inventory = [_use(ref, tuple(sorted(users[key])), registry)
                 for key, ref in sorted(parsed.items())]
    _refuse_collisions(inventory)
    return inventory


def _use(ref: naming.ImageRef, used_by: tuple[str, ...], registry: "Registry | None") -> ImageUse:
    if registry is None:
        return ImageUse(str(ref), "", used_by)
    local = naming.in_registry(ref, registry)
    return ImageUse(str(ref), naming.target_name(ref, registry), used_by, local)


def _refuse_collisions(inventory: list[ImageUse]) -> None:
    owner: dict[str, str] = {}
    problems = []
    for use in inventory:
        if not use.needs_copy:
            continue
        other = owner.setdefault(use.target, use.source)
        if other != use.source:
            problems.append(f"{other} and {use.source} would both become {use.target}")
    if problems:
        raise ConfigError("two images get the same private name", problems=problems,
                          hint="switch registry.naming (flatten keeps the source registry in "
                               "the name)")


def source_site(site: "Site") -> "Site":
    """The same site with the render-time rewrite off, so objects carry upstream names."""
    if site.registry is None or not site.registry.mirror:
        return site
    return site.model_copy(update={"registry": site.registry.model_copy(update={"mirror": False})})
