"""Offline transfer on real registries: save from the source, load into the private one."""

from __future__ import annotations

import io
import json

import pytest

from cubeinstall.core.errors import CubeError
from cubeinstall.core.output import Output
from cubeinstall.images.inventory import build_inventory
from cubeinstall.images.mirror import MirrorSettings
from cubeinstall.images.offline import load, read_index, save
from cubeinstall.images.registry_client import RegistryClient
from cubeinstall.images.status import missing_in_registry, target_endpoint
from cubeinstall.render import naming
from tests.servers.registry import make_site

pytestmark = pytest.mark.registry

FAST = MirrorSettings(parallel=4, attempts=2, backoff=0.05)


def _output() -> Output:
    return Output(json_mode=True, stream=io.StringIO())


def test_save_then_load_keeps_every_digest(source_registry, target_registry, tmp_path):
    bundle = tmp_path / "bundle"
    images = list(source_registry.images)
    report = save(images, bundle, _output(), FAST)
    assert report.failed == [] and len(report.by_action("copied")) == len(images)
    index = read_index(bundle)
    assert {entry.digest for entry in index.values()} == set(source_registry.images.values())
    # saving again asks the source and copies nothing
    again = save(images, bundle, _output(), FAST)
    assert {r.action for r in again.results} == {"present"}

    site = make_site(target_registry)
    loaded = load(bundle, site, _output(), FAST)
    assert loaded.failed == [] and len(loaded.by_action("copied")) == len(images)
    client = RegistryClient(target_endpoint(site.registry))
    for source, digest in source_registry.images.items():
        target = naming.target_ref(source, site.registry)
        assert client.manifest_digest(target.repository, target.tag) == digest
    assert {r.action for r in load(bundle, site, _output(), FAST).results} == {"present"}


def test_blobs_are_stored_once(source_registry, tmp_path):
    bundle = tmp_path / "bundle"
    save(list(source_registry.images), bundle, _output(), FAST)
    store = list((bundle / "blobs").iterdir())
    assert store and all(path.stat().st_nlink >= 2 for path in store)
    index = read_index(bundle)
    linked = [bundle / e.path / name for e in index.values() for name in e.files
              if (bundle / "blobs" / name).exists()]
    assert linked and all(path.stat().st_nlink >= 2 for path in linked)


def test_damaged_directory_is_refused_before_any_push(source_registry, target_registry,
                                                      tmp_path):
    bundle = tmp_path / "bundle"
    save(list(source_registry.images), bundle, _output(), FAST)
    entry = next(iter(read_index(bundle).values()))
    victim = next(name for name in entry.files if name != "manifest.json" and name != "version")
    path = bundle / entry.path / victim
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.unlink()  # break the hard link: damage this copy only
    path.write_bytes(bytes(data))
    site = make_site(target_registry)
    with pytest.raises(CubeError) as info:
        load(bundle, site, _output(), FAST)
    assert f"{entry.path}/{victim}" in str(info.value) and "nothing was pushed" in info.value.hint
    uses = build_inventory({"t": list(source_registry.images)}, site.registry)
    assert len(missing_in_registry(site, uses)) == len(uses)


def test_load_without_index_says_how_to_make_one(target_registry, tmp_path):
    with pytest.raises(CubeError, match="no saved images") as info:
        load(tmp_path, make_site(target_registry), _output(), FAST)
    assert "images save" in info.value.hint


def test_index_is_plain_json_with_checksums(source_registry, tmp_path):
    bundle = tmp_path / "bundle"
    save(list(source_registry.images)[:1], bundle, _output(), FAST)
    data = json.loads((bundle / "index.json").read_text())
    assert data["format"] == "cubeinstall-images/v1"
    files = data["images"][0]["files"]
    assert files["manifest.json"] == data["images"][0]["digest"]
    assert all(value.startswith("sha256:") for value in files.values())
