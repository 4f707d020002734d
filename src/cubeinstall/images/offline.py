"""Offline transfer: ``save`` images into a directory, ``load`` them into the site registry.

Layout of a saved directory::

    index.json             format, and per image: source, path, digest, sha256 of each file
    images/<key>/          one image in skopeo's ``dir:`` layout (all platforms)
    blobs/<sha256>         one hard link per distinct blob: images sharing base layers
                           (CUDA notebook images) are stored, and tarred, once

Why ``dir:`` and not an OCI layout: skopeo's ``oci:`` destination accepts only OCI
manifests, so Docker-format images (most of Docker Hub) would be converted and get
new digests; ``dir:`` keeps every manifest byte for byte. ``load`` pushes with
``--preserve-digests``: the site registry ends up with the source's digests, or the
copy fails. ``load`` verifies every file's checksum first: a damaged bundle is
refused before anything is pushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cubeinstall.core.errors import CubeError
from cubeinstall.images import skopeo
from cubeinstall.images.inventory import ImageUse, build_inventory
from cubeinstall.images.mirror import (
    Counter,
    ImageResult,
    MirrorReport,
    MirrorSettings,
    copy_with_retries,
    report_image,
    summarize,
)
from cubeinstall.images.registry_client import RegistryClient, RegistryError
from cubeinstall.images.status import (
    CHECK_PARALLEL,
    SourceClients,
    digest_of,
    target_endpoint,
)
from cubeinstall.render import naming

if TYPE_CHECKING:
    from cubeinstall.core.output import Output
    from cubeinstall.site.model import Site

FORMAT = "cubeinstall-images/v1"
INDEX = "index.json"


@dataclass(frozen=True)
class SavedImage:
    source: str
    path: str  # relative to the directory
    digest: str
    files: dict[str, str]  # file name inside path -> sha256:hex

    def as_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "digest": self.digest,
                "files": self.files}


def read_index(directory: Path) -> dict[str, SavedImage]:
    path = directory / INDEX
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CubeError(f"cannot read {path}: {exc}", hint="the image directory is damaged: "
                        "save it again") from None
    if data.get("format") != FORMAT:
        raise CubeError(f"{path} is not a cubeinstall image index (format {data.get('format')!r})")
    return {entry["source"]: SavedImage(**entry) for entry in data["images"]}


def _write_index(directory: Path, saved: dict[str, SavedImage]) -> None:
    data = {"format": FORMAT, "images": [saved[k].as_dict() for k in sorted(saved)]}
    temporary = directory / (INDEX + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, directory / INDEX)


def image_key(source: str) -> str:
    readable = re.sub(r"[^a-z0-9._-]+", "-", source.lower())[:80]
    return f"{readable}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# --- save -------------------------------------------------------------------------------


def save(images: Iterable[str], directory: Path, out: "Output",
         settings: MirrorSettings = MirrorSettings()) -> MirrorReport:
    """Copy every image (all platforms) into ``directory``; images saved before and unchanged
    at the source are skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    uses = build_inventory({"save": images}, None)
    saved = read_index(directory)
    sources = SourceClients(settings.insecure_sources)
    binary = skopeo.find_skopeo()
    counter = Counter(len(uses))

    def one(use: ImageUse) -> tuple[ImageResult, SavedImage | None]:
        return _save_one(use, directory, saved.get(use.source), binary, sources, settings, out,
                         counter)

    with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
        outcomes = list(pool.map(one, uses))
    for result, entry in outcomes:
        if entry is not None:
            saved[entry.source] = entry
    _write_index(directory, saved)
    _prune_blob_store(directory)
    report = MirrorReport(sorted((r for r, _ in outcomes), key=lambda r: r.source))
    summarize(report, out, f"images saved in {directory}")
    return report


def _save_one(use: ImageUse, directory: Path, previous: SavedImage | None, binary: str,
              sources: SourceClients, settings: MirrorSettings, out: "Output",
              counter: Counter) -> tuple[ImageResult, SavedImage | None]:
    ref = naming.parse(use.source)
    source_digest = ref.digest
    if source_digest is None:
        try:
            source_digest = sources.digest(use.source)
        except RegistryError as exc:
            out.debug(f"cannot ask {ref.registry} for {use.source}: {exc.message}")
    if previous and previous.digest == source_digest and _manifest_intact(directory, previous):
        return ImageResult(use.source, previous.path, "present", previous.digest), previous
    key = image_key(use.source)
    image_dir = directory / "images" / key
    shutil.rmtree(image_dir, ignore_errors=True)
    image_dir.parent.mkdir(parents=True, exist_ok=True)
    options = ["--multi-arch=all", *skopeo.source_options(sources.insecure(ref.registry))]
    display = ImageUse(use.source, f"images/{key}", use.used_by)
    result = copy_with_retries(binary, options, "docker://" + ref.pull_reference, display,
                               settings, out, destination=f"dir:{image_dir}")
    entry = None
    if result.action == "copied":
        files = {p.name: sha256_file(p) for p in sorted(image_dir.iterdir()) if p.is_file()}
        entry = SavedImage(use.source, f"images/{key}", files["manifest.json"], files)
        result.digest = entry.digest
        _link_blobs(directory, image_dir)
    report_image(result, out, counter)
    return result, entry


def _manifest_intact(directory: Path, entry: SavedImage) -> bool:
    manifest = directory / entry.path / "manifest.json"
    return manifest.is_file() and sha256_file(manifest) == entry.digest


def _link_blobs(directory: Path, image_dir: Path) -> None:
    """Replace each blob by a hard link into blobs/, so identical layers are stored once."""
    store = directory / "blobs"
    store.mkdir(exist_ok=True)
    for path in image_dir.iterdir():
        if not re.fullmatch(r"[0-9a-f]{64}", path.name):
            continue  # manifests, version: small and per image
        shared = store / path.name
        try:
            os.link(path, shared)
        except FileExistsError:
            temporary = path.with_name(path.name + ".link")
            os.link(shared, temporary)
            os.replace(temporary, path)


def _prune_blob_store(directory: Path) -> None:
    store = directory / "blobs"
    if store.is_dir():
        for path in store.iterdir():
            if path.stat().st_nlink == 1:  # no saved image uses it any more
                path.unlink()


# --- load -------------------------------------------------------------------------------


def verify_directory(directory: Path) -> dict[str, SavedImage]:
    """Every file of every saved image against its recorded checksum; CubeError lists damage."""
    saved = read_index(directory)
    if not saved:
        raise CubeError(f"no saved images in {directory} (no {INDEX})",
                        hint="run `cubeinstall images save DIR` where the sources are reachable")
    problems = []
    for entry in saved.values():
        for name, expected in entry.files.items():
            path = directory / entry.path / name
            if not path.is_file():
                problems.append(f"{entry.path}/{name}: missing")
            elif sha256_file(path) != expected:
                problems.append(f"{entry.path}/{name}: checksum differs from {INDEX}")
    if problems:
        raise CubeError(f"the image directory {directory} is damaged: " + "; ".join(problems),
                        hint="copy it again from where it was saved (nothing was pushed)")
    return saved


def load(directory: Path, site: "Site", out: "Output",
         settings: MirrorSettings = MirrorSettings()) -> MirrorReport:
    """Push every saved image into the site registry under its private name, digests kept."""
    if site.registry is None:
        raise CubeError("no registry in site.yaml: nowhere to load images into",
                        hint="add a registry: section (host, project, credentials)")
    saved = verify_directory(directory)
    uses = build_inventory({"load": list(saved)}, site.registry)
    endpoint = target_endpoint(site.registry)
    target = RegistryClient(endpoint)
    target.ping()
    with ThreadPoolExecutor(max_workers=CHECK_PARALLEL) as pool:
        digests = list(pool.map(lambda use: digest_of(target, use.target)
                                if use.needs_copy else None, uses))
    report = MirrorReport()
    to_push = []
    for use, digest in zip(uses, digests):
        if not use.needs_copy or digest == saved[use.source].digest:
            report.results.append(ImageResult(use.source, use.target, "present", digest))
        else:
            to_push.append(use)
    out.info(f"{len(uses) - len(to_push)} of {len(uses)} saved images already in "
             f"{endpoint.host}; {len(to_push)} to push")
    if to_push:
        binary = skopeo.find_skopeo()
        counter = Counter(len(to_push))
        with skopeo.destination(endpoint) as dest, \
                ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:

            def push(use: ImageUse) -> ImageResult:
                entry = saved[use.source]
                options = ["--multi-arch=all", "--preserve-digests", *dest.copy_options()]
                result = copy_with_retries(binary, options, f"dir:{directory / entry.path}", use,
                                           settings, out)
                if result.action == "copied":
                    result.digest = digest_of(target, use.target)
                report_image(result, out, counter)
                return result

            report.results.extend(pool.map(push, to_push))
    report.results.sort(key=lambda r: r.source)
    summarize(report, out, f"images loaded into {endpoint.host}")
    return report


def saved_sources(directory: Path) -> list[str]:
    return sorted(read_index(directory))
