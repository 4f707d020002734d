"""The pinned catalog (``manifests/catalog.yaml``) and what a site makes of it.

The package ships one catalog: component -> repository, version, files (path ->
sha256), image pins and the stage whose ``components.<stage>`` entry may override it.
``resolve`` applies a site's overrides and answers, for one component, the exact files
to use: where to download each one and the sha256 it must have. Pure: no network, no
cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Iterable

import yaml

from cubeinstall.core.errors import ConfigError

if TYPE_CHECKING:
    from cubeinstall.site.model import Site

MIRROR_ENV = "CUBEINSTALL_UPSTREAM_URL"  # overrides site.upstream.base_url (tests, CI mirrors)
MIRROR_LAYOUT = "{component}/{version}/{path}"


@dataclass(frozen=True)
class CatalogComponent:
    name: str
    repo: str
    version: str
    stage: str  # its components.<stage> entry overrides version and sha256
    files: dict[str, str]  # path in the repository -> sha256 at ``version``
    pins: dict[str, str]  # image repository -> tag ("{version}" follows the version)
    used_by: tuple[str, ...] = ()  # other stages that read its files

    def needed_by(self, stages: Iterable[str]) -> bool:
        return any(stage == self.stage or stage in self.used_by for stage in stages)


@dataclass(frozen=True)
class UpstreamFile:
    component: str
    version: str
    path: str
    url: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.component} {self.version} {self.path}"

    def as_lock(self) -> dict:
        return {"component": self.component, "version": self.version, "file": self.path,
                "url": self.url, "sha256": self.sha256}


@dataclass(frozen=True)
class Resolved:
    """One component as a site uses it."""

    name: str
    version: str
    files: tuple[UpstreamFile, ...]
    pins: dict[str, str]  # image repository -> concrete tag

    def file(self, path: str) -> UpstreamFile:
        for item in self.files:
            if item.path == path:
                return item
        raise KeyError(f"{self.name} has no file {path!r} in the catalog")

    def image(self, repository: str) -> str:
        """A pinned image of this component: ``repository:tag``."""
        return f"{repository}:{self.pins[repository]}"


@lru_cache(maxsize=1)
def load() -> tuple[str, dict[str, CatalogComponent]]:
    """(default URL template, components) of the shipped catalog."""
    text = resources.files("cubeinstall").joinpath("manifests/catalog.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    components = {
        name: CatalogComponent(name, entry["repo"], str(entry["version"]), entry["stage"],
                               dict(entry["files"]), dict(entry.get("pins") or {}),
                               tuple(entry.get("used_by") or ()))
        for name, entry in data["components"].items()
    }
    return data["default_url"], components


def components() -> dict[str, CatalogComponent]:
    return load()[1]


def for_stage(stage: str) -> list[str]:
    return [name for name, entry in components().items() if entry.stage == stage]


def mirror(site: "Site | None") -> str | None:
    value = os.environ.get(MIRROR_ENV) or (site.upstream.base_url if site else None)
    return value.rstrip("/") if value else None


def file_url(entry: CatalogComponent, version: str, path: str, base: str | None) -> str:
    fields = {"component": entry.name, "repo": entry.repo, "version": version, "path": path}
    if base is None:
        return load()[0].format(**fields)
    template = base if "{" in base else f"{base}/{MIRROR_LAYOUT}"
    return template.format(**fields)


def resolve(site: "Site | None", name: str) -> Resolved:
    """The files and image pins of one component, with the site's overrides applied."""
    entry = components()[name]
    setting = site.component(entry.stage) if site else None
    version = _version(entry, setting)
    digests = dict(entry.files)
    overrides = dict(setting.sha256) if setting else {}
    known = {path for other in for_stage(entry.stage) for path in components()[other].files}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"components.{entry.stage}.sha256 names files the stage does not use",
                          problems=unknown, hint="keys are file paths of cubeinstall's catalog: "
                          + ", ".join(sorted(known)))
    digests.update({path: digest for path, digest in overrides.items() if path in digests})
    if version != entry.version:
        missing = sorted(path for path in entry.files if path not in overrides)
        if missing:
            raise ConfigError(
                f"components.{entry.stage}: {name} {version} is not the pinned {entry.version}; "
                "give the sha256 of each of its files", problems=missing,
                hint=f"add components.{entry.stage}.sha256: {{<path>: <sha256>}} for every file "
                     "listed (a file is never used unverified)")
    base = mirror(site)
    files = tuple(UpstreamFile(name, version, path, file_url(entry, version, path, base),
                               digests[path].lower()) for path in sorted(entry.files))
    pins = {repo: tag.format(version=version) for repo, tag in entry.pins.items()}
    return Resolved(name, version, files, pins)


def _version(entry: CatalogComponent, setting) -> str:
    value = setting.version if setting else None
    if value is None:
        return entry.version
    if isinstance(value, dict):
        known = set(for_stage(entry.stage))
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"components.{entry.stage}.version names unknown components",
                              problems=unknown, hint="use " + ", ".join(sorted(known)))
        return str(value.get(entry.name, entry.version))
    shared = for_stage(entry.stage)
    if len(shared) > 1:
        raise ConfigError(
            f"components.{entry.stage}.version is ambiguous: the stage installs "
            + " and ".join(shared),
            hint=f"write components.{entry.stage}.version: {{{shared[0]}: {value}}}")
    return value


def site_files(site: "Site", stage_names: list[str] | None = None) -> list[UpstreamFile]:
    """Every upstream file the enabled stages of a site use (or the named stages')."""
    from cubeinstall.site import stages as registry

    stages = stage_names if stage_names is not None else [
        stage.name for stage in registry.STAGES if stage.enabled(site)]
    wanted = [name for name, entry in components().items() if entry.needed_by(stages)
              and site.component(entry.stage).mode == "install"]  # "existing": nothing to fetch
    return [item for name in wanted for item in resolve(site, name).files]
