"""A directory in the format of `cubeinstall images save`, built without any network.

The inventory names public images (docker.io, quay.io, registry.k8s.io, ...) that
this machine cannot pull. What an air-gapped operator carries in is a directory
written by `images save` on a connected machine; here one is built for every
inventory reference, each a tiny single-layer image of its own (so every name has
its own digest), in skopeo's ``dir:`` layout with the index and checksums the
product's loader verifies. The e2e then runs the real `cubeinstall images load`
(skopeo pushes with --preserve-digests into the TLS + htpasswd site registry), and
the images stage of `all` must find every image present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cubeinstall.images.offline import FORMAT, INDEX, SavedImage, image_key, sha256_file
from tests.servers.registry import build_image

DIR_VERSION = "Directory Transport Version: 1.1\n"  # what skopeo writes into dir: layouts


def _oci_to_dir(layout: Path, digest: str, target: Path) -> None:
    """The OCI layout's image as skopeo's dir: layout: manifest.json, version, blobs by hex."""
    blobs = layout / "blobs" / "sha256"
    manifest = (blobs / digest.split(":", 1)[1]).read_bytes()
    target.mkdir(parents=True)
    (target / "manifest.json").write_bytes(manifest)
    (target / "version").write_text(DIR_VERSION)
    document = json.loads(manifest)
    for descriptor in [document["config"], *document["layers"]]:
        hex_digest = descriptor["digest"].split(":", 1)[1]
        shutil.copyfile(blobs / hex_digest, target / hex_digest)


def build_saved_directory(sources: list[str], directory: Path) -> dict[str, str]:
    """Write ``directory`` (index.json + images/<key>/) for ``sources``; return source -> digest."""
    saved = {}
    scratch = directory / ".layouts"
    for source in sources:
        key = image_key(source)
        layout = scratch / key
        digest = build_image(layout, f"e2e stand-in for {source}")
        image_dir = directory / "images" / key
        _oci_to_dir(layout, digest, image_dir)
        files = {p.name: sha256_file(p) for p in sorted(image_dir.iterdir())}
        saved[source] = SavedImage(source, f"images/{key}", files["manifest.json"], files)
    shutil.rmtree(scratch)
    index = {"format": FORMAT, "images": [saved[s].as_dict() for s in sorted(saved)]}
    (directory / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return {source: entry.digest for source, entry in saved.items()}
