"""Parsed upstream files: parsed once, the on-disk copy checked against its own name."""

from __future__ import annotations

import pytest

from cubeinstall.site.loader import load_site
from cubeinstall.upstream import manifests
from cubeinstall.upstream.cache import Cache, ChecksumMismatch
from tests.helpers import EXAMPLE_SITE
from tests.servers.http_upstream import seed

COMPONENT = "volcano"


@pytest.fixture
def cache(tmp_path, upstream_dir, monkeypatch) -> Cache:
    seed(tmp_path, upstream_dir)
    monkeypatch.setenv("CUBEINSTALL_CACHE", str(tmp_path))
    monkeypatch.setattr(manifests, "_PARSED", {})  # a process that has parsed nothing yet
    return Cache()


def source_and_parsed(cache: Cache):
    site = load_site(EXAMPLE_SITE)
    [item] = manifests.files(site, COMPONENT)
    return site, cache.path(item.sha256), lambda: list((cache.root / "parsed").glob(f"{item.sha256}-*.json"))


def test_a_damaged_parsed_copy_is_made_again_from_the_verified_source(cache):
    site, _, parsed = source_and_parsed(cache)
    first = manifests.objects(site, COMPONENT)
    [copy] = parsed()
    copy.write_bytes(copy.read_bytes().replace(b"volcano", b"vulcano", 1))
    manifests._PARSED.clear()
    assert manifests.objects(site, COMPONENT) == first
    [again] = parsed()
    assert b"vulcano" not in again.read_bytes()


def test_an_intact_parsed_copy_spares_reading_the_source(cache, monkeypatch):
    site, _, _ = source_and_parsed(cache)
    first = manifests.objects(site, COMPONENT)
    manifests._PARSED.clear()

    def must_not_read(item):
        raise AssertionError(f"{item.label} was read and hashed again")

    monkeypatch.setattr(Cache, "read", lambda self, item: must_not_read(item))
    assert manifests.objects(site, COMPONENT) == first  # from the parsed copy on disk
    assert manifests.objects(site, COMPONENT) == first  # from memory


def test_a_tampered_source_without_a_parsed_copy_is_refused(cache):
    site, source, parsed = source_and_parsed(cache)
    source.chmod(0o644)
    source.write_bytes(source.read_bytes() + b"\n# changed\n")
    assert parsed() == []
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        manifests.objects(site, COMPONENT)
