"""`bundle fetch/create/load` against a real loopback HTTP server serving ../shared/upstream.

Proves: every file is verified by sha256 and stored by digest; a tampered file is refused
and never stored; an interrupted download resumes with HTTP Range; proxy variables are
honoured; a bundle carries files and lock; loading it fills an empty cache with no HTTP
server at all; a damaged bundle is refused with nothing loaded.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

import pytest
import yaml

from cubeinstall.core.output import Output
from cubeinstall.run import bundle
from cubeinstall.site.loader import load_site
from cubeinstall.upstream import catalog
from cubeinstall.upstream.cache import Cache, ChecksumMismatch
from cubeinstall.upstream.fetch import DownloadFailed, fetch_all, fetch_one
from tests.helpers import example_site_data, json_events, write_site

FRAMEWORK_CONFIG = "example/config/default/frameworkcontroller.yaml"


@pytest.fixture
def site_file(tmp_path):
    return write_site(tmp_path, example_site_data())


def quiet() -> Output:
    return Output(json_mode=True, stream=io.StringIO())


def test_fetch_verifies_and_stores_by_digest_then_is_cached(cubeinstall_cli, site_file,
                                                             upstream_cache, upstream_server):
    code, out, _ = cubeinstall_cli("bundle", "fetch", "-c", str(site_file))
    assert code == 0, out
    events = [e for e in json_events(out) if e["event"] == "upstream-file"]
    wanted = catalog.site_files(load_site(site_file))
    assert {e["sha256"] for e in events} == {item.sha256 for item in wanted}
    assert {e["action"] for e in events} == {"downloaded"}
    for item in wanted:  # named by the sha256 of its bytes
        stored = upstream_cache / "upstream" / "sha256" / item.sha256
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == item.sha256

    before = len(upstream_server.requests)
    code, out, _ = cubeinstall_cli("bundle", "fetch", "-c", str(site_file))
    assert code == 0
    assert {e["action"] for e in json_events(out) if e["event"] == "upstream-file"} == {"cached"}
    assert len(upstream_server.requests) == before  # nothing asked again


def tampered_copy(upstream_dir, tmp_path, component, version, path):
    """A mirror of every upstream file, one of them changed by one byte."""
    root = tmp_path / "tampered"
    shutil.copytree(upstream_dir, root)
    target = root / component / version / path
    target.write_bytes(target.read_bytes().replace(b"podFailureSpec", b"podFailureSpeC", 1))
    return root


def test_render_and_offline_plan_say_to_fetch_first(cubeinstall_cli, site_file, upstream_cache):
    """Before a fetch, offline commands still work and say, per stage, what to run."""
    code, out, _ = cubeinstall_cli("plan", "--offline", "--only", "volcano", "-c", str(site_file))
    assert code == 0
    [change] = [e for e in json_events(out) if e["event"] == "change"]
    assert change["stage"] == "volcano" and change["action"] == "run"
    assert "not in the local cache" in change["detail"]
    assert "cubeinstall bundle fetch" in change["detail"]

    code, out, _ = cubeinstall_cli("render", "--only", "kubeflow", "-c", str(site_file))
    assert code == 0
    warnings = [e for e in json_events(out) if e["event"] == "warning"]
    [skipped] = [w for w in warnings if w.get("stage") == "kubeflow"]
    assert "not in the local cache" in skipped["message"]
    assert "cubeinstall bundle fetch" in skipped["hint"]
    assert not [e for e in json_events(out) if e["event"] == "rendered"]


def test_a_tampered_file_is_refused_and_never_stored(cubeinstall_cli, upstream_cache, upstream_dir,
                                                     http_server, tmp_path, monkeypatch):
    mirror = http_server(tampered_copy(upstream_dir, tmp_path, "frameworkcontroller", "v1.0.1",
                                       FRAMEWORK_CONFIG))
    monkeypatch.setenv(catalog.MIRROR_ENV, mirror.url)
    code, out, _ = cubeinstall_cli("bundle", "fetch", "--all")
    assert code == 1
    [error] = [e for e in json_events(out) if e["event"] == "error"]
    assert "sha256 mismatch" in error["message"] and FRAMEWORK_CONFIG in error["message"]
    assert "nothing was applied" in error["message"]
    expected = catalog.components()["frameworkcontroller"].files[FRAMEWORK_CONFIG]
    assert not Cache().has(expected)
    assert not any(p.is_file() for p in (upstream_cache / "upstream" / "partial").iterdir())


def test_an_interrupted_download_resumes_with_range(upstream_dir, http_server, upstream_cache,
                                                    monkeypatch):
    item = catalog.resolve(None, "volcano").files[0]  # 1 MB
    url_path = f"/volcano/{item.version}/{item.path}"
    server = http_server(upstream_dir, cut_once={url_path})
    monkeypatch.setenv(catalog.MIRROR_ENV, server.url)
    item = catalog.resolve(None, "volcano").files[0]
    result = fetch_one(item, Cache(), quiet(), attempts=2)
    first, second = server.file_requests()
    assert (first.range, first.status) == (None, 200)
    size = (upstream_dir / "volcano" / item.version / item.path).stat().st_size
    offset = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < offset < size and second.status == 206
    assert result.action == "resumed" and result.size == size
    assert hashlib.sha256(Cache().read(item)).hexdigest() == item.sha256


def test_a_partial_file_from_an_earlier_run_is_continued(upstream_dir, upstream_server,
                                                          upstream_cache):
    item = catalog.resolve(None, "istio").files[0]
    data = (upstream_dir / "istio" / item.version / item.path).read_bytes()
    partial = Cache().partial(item.sha256)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:300_000])
    before = len(upstream_server.requests)
    result = fetch_one(item, Cache(), quiet())
    [request] = upstream_server.requests[before:]
    assert request.range == "bytes=300000-" and request.status == 206
    assert result.action == "resumed"
    assert Cache().read(item) == data and not partial.exists()


def test_a_server_without_range_sends_the_whole_file_again(upstream_dir, http_server,
                                                           upstream_cache, monkeypatch):
    server = http_server(upstream_dir, ranges=False)
    monkeypatch.setenv(catalog.MIRROR_ENV, server.url)
    item = catalog.resolve(None, "istio").files[0]
    Cache().scratch()
    Cache().partial(item.sha256).write_bytes(b"half of something")
    result = fetch_one(item, Cache(), quiet())
    assert [r.status for r in server.file_requests()] == [200]
    assert result.action == "downloaded" and Cache().has(item.sha256)


def test_proxy_variables_are_honoured(upstream_server, forward_proxy, upstream_cache, monkeypatch):
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", forward_proxy.url)
    [result] = fetch_all(catalog.resolve(None, "frameworkcontroller").files, Cache(), quiet())
    assert result.action == "downloaded"
    assert forward_proxy.seen == [result.item.url]  # the request went through the proxy

    monkeypatch.setenv("no_proxy", "127.0.0.1")  # and no_proxy bypasses it
    other = catalog.resolve(None, "istio").files
    fetch_all(other, Cache(), quiet())
    assert forward_proxy.seen == [result.item.url]


def test_a_missing_file_names_the_url(http_server, tmp_path, upstream_cache, monkeypatch):
    server = http_server(tmp_path)  # an empty mirror
    monkeypatch.setenv(catalog.MIRROR_ENV, server.url)
    with pytest.raises(DownloadFailed) as error:
        fetch_all(catalog.resolve(None, "istio").files, Cache(), quiet())
    assert "HTTP 404" in error.value.message and server.url in error.value.message


def test_create_then_load_into_an_empty_cache_without_any_server(
        cubeinstall_cli, site_file, tmp_path, upstream_cache, http_server, upstream_dir, monkeypatch):
    server = http_server(upstream_dir)
    monkeypatch.setenv(catalog.MIRROR_ENV, server.url)
    assert cubeinstall_cli("bundle", "fetch", "-c", str(site_file))[0] == 0
    archive = tmp_path / "site-bundle.tar.gz"
    code, out, _ = cubeinstall_cli("bundle", "create", str(archive), "-c", str(site_file))
    assert code == 0, out
    server.stop()

    with tarfile.open(archive) as tar:
        lock = yaml.safe_load(tar.extractfile(bundle.LOCK).read())
        names = set(tar.getnames())
    files = lock["files"]
    assert lock["format"] == bundle.FORMAT and files
    assert set(files[0]) == {"component", "version", "file", "url", "sha256"}
    assert {f"upstream/{f['component']}/{f['version']}/{f['file']}" for f in files} <= names

    monkeypatch.setenv("CUBEINSTALL_CACHE", str(tmp_path / "air-gapped"))
    monkeypatch.setenv(catalog.MIRROR_ENV, server_url := "http://127.0.0.1:9")  # nothing there
    code, out, _ = cubeinstall_cli("bundle", "load", str(archive), "-c", str(site_file))
    assert code == 0, out
    assert not [e for e in json_events(out) if e["event"] == "warning"]  # the site lacks nothing
    site = load_site(site_file)
    needed = catalog.site_files(site)
    assert Cache().missing(needed) == []
    assert all(item.url.startswith(server_url) for item in needed)


def test_a_damaged_bundle_is_refused_with_nothing_loaded(tmp_path, upstream_cache, upstream_server):
    files = catalog.resolve(None, "frameworkcontroller").files + catalog.resolve(None, "istio").files
    fetch_all(files, Cache(), quiet())
    archive = tmp_path / "b.tar.gz"
    bundle.create(archive, files, Cache(), quiet())

    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(damaged, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name.endswith("crd-all.gen.yaml"):
                data = data.replace(b"istio.io", b"istio.oi", 1)
            target.addfile(member, io.BytesIO(data))

    empty = Cache(tmp_path / "empty")
    with pytest.raises(ChecksumMismatch) as error:
        bundle.load(damaged, empty, quiet())
    assert "crd-all.gen.yaml" in error.value.message
    assert not any(empty.has(item.sha256) for item in files)  # not even the intact one
    assert [item.sha256 for item in bundle.load(archive, empty, quiet())] == \
        [item.sha256 for item in files]


def saved_images_directory(root):
    """A directory in the layout `cubeinstall images save` writes (one image, a linked blob)."""
    import json
    import os

    from cubeinstall.images import offline

    image = root / "images" / "busybox-1"
    image.mkdir(parents=True)
    (root / "blobs").mkdir()
    (image / "manifest.json").write_text('{"schemaVersion": 2}')
    blob = b"layer bytes"
    name = hashlib.sha256(blob).hexdigest()
    (root / "blobs" / name).write_bytes(blob)
    os.link(root / "blobs" / name, image / name)
    files = {n: offline.sha256_file(image / n) for n in ("manifest.json", name)}
    (root / offline.INDEX).write_text(json.dumps({"format": offline.FORMAT, "images": [
        {"source": "docker.io/library/busybox:1.36", "path": "images/busybox-1",
         "digest": "sha256:" + "0" * 64, "files": files}]}))
    return root


def test_a_bundle_carries_saved_images_too(tmp_path, upstream_cache, upstream_server):
    from cubeinstall.images.offline import verify_directory

    files = catalog.resolve(None, "frameworkcontroller").files
    fetch_all(files, Cache(), quiet())
    archive = tmp_path / "with-images.tar.gz"
    bundle.create(archive, files, Cache(), quiet(),
                  images=saved_images_directory(tmp_path / "saved"))

    target = tmp_path / "unpacked"
    bundle.load(archive, Cache(tmp_path / "other"), quiet(), images_to=target)
    assert list(verify_directory(target)) == ["docker.io/library/busybox:1.36"]
    assert all(p.stat().st_nlink == 2 for p in (target / "blobs").iterdir())  # links kept

    without = tmp_path / "without.tar.gz"
    bundle.create(without, files, Cache(), quiet())
    third = Cache(tmp_path / "third")
    with pytest.raises(bundle.BadBundle) as error:
        bundle.load(without, third, quiet(), images_to=tmp_path / "none")
    assert "no images" in error.value.message and "nothing was loaded" in error.value.message
    assert third.missing(files) == list(files)


def test_a_damaged_cache_entry_is_downloaded_again(upstream_cache, upstream_server, tmp_path):
    [item] = catalog.resolve(None, "frameworkcontroller").files
    fetch_all([item], Cache(), quiet())
    Cache().path(item.sha256).write_bytes(b"bit rot")
    with pytest.raises(ChecksumMismatch) as error:  # never rendered from
        Cache().read(item)
    assert "bundle fetch" in error.value.hint
    out = quiet()
    [result] = fetch_all([item], Cache(), out)
    assert result.action == "downloaded" and Cache().read(item)
    assert any("downloading it again" in e.get("message", "") for e in out.events)
