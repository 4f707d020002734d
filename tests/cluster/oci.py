"""OCI images without Docker: one uncompressed tar layer, a config, a manifest.

Used for the real node's pause image (an archive ``ctr images import`` reads)
and the MySQL/Redis test images (a layout ``skopeo copy oci:DIR:TAG`` pushes).
Layers are reproducible: entries sorted, owned by root, mtime 0, so the same
files always give the same digest.  Standard library only (build.py imports
it before anything is pip-installed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Mapping
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: A file's content and mode; a str instead of bytes is a symlink target.
FileEntry = tuple[bytes | str, int]


def _blob(layout: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _add_dirs(tar: tarfile.TarFile, path: str, seen: set[str]) -> None:
    parts = path.strip("/").split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/".join(parts[:depth])
        if directory not in seen:
            seen.add(directory)
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)


def layer(files: Mapping[str, FileEntry], dirs: Mapping[str, int] = {}) -> bytes:
    """A tar of ``files`` (image path -> (content or symlink target, mode)) and empty ``dirs``."""
    raw = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted([(p, None, m) for p, m in dirs.items()]
                         + [(p, c, m) for p, (c, m) in files.items()])
        for path, content, mode in entries:
            _add_dirs(tar, path, seen)
            info = tarfile.TarInfo(path.strip("/"))
            info.mode, info.mtime = mode, 0
            if content is None:
                if info.name in seen:
                    continue
                seen.add(info.name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def files_from_host(paths: list[str]) -> dict[str, FileEntry]:
    """Host files (regular files and symlinks, as they are) for an image layer."""
    files: dict[str, FileEntry] = {}
    for path in paths:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            files[path] = (os.readlink(path), 0o777)
        elif stat.S_ISREG(st.st_mode):
            files[path] = (Path(path).read_bytes(), stat.S_IMODE(st.st_mode))
    return files


def write_layout(layout: Path, tag: str, layer_tar: bytes, config: Mapping,
                 annotations: Mapping[str, str] | None = None) -> str:
    """An OCI layout dir holding one image tagged ``tag``; returns the manifest digest."""
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_desc = _blob(layout, layer_tar, OCI_LAYER)
    diff_id = layer_desc["digest"]  # uncompressed: the layer's digest is its diff id
    config_desc = _blob(layout, json.dumps({
        "architecture": "amd64", "os": "linux", "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode(), OCI_CONFIG)
    manifest = _blob(layout, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
        "layers": [layer_desc]}, sort_keys=True).encode(), OCI_MANIFEST)
    manifest["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag, **(annotations or {})}
    (layout / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [manifest]}, sort_keys=True))
    return manifest["digest"]


def write_archive(path: Path, image: str, files: Mapping[str, FileEntry],
                  config: Mapping) -> str:
    """A tar of an OCI layout whose image ``ctr images import`` names ``image``."""
    layout = path.with_suffix(".layout")
    tag = image.rsplit(":", 1)[1]
    digest = write_layout(layout, tag, layer(files), config,
                          annotations={"io.containerd.image.name": image})
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for entry in sorted(layout.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(layout)), recursive=False)
    tmp.replace(path)
    shutil.rmtree(layout)
    return digest
