"""Mirror, plan, verify against two real registries (source: anonymous HTTP; target: htpasswd
+ TLS with a test CA). skopeo runs through a recording shim on PATH: the real binary does
the work, the shim only writes down each command line and the mode of the auth file."""

from __future__ import annotations

import io
import json
import os
from collections import Counter

import pytest

from cubeinstall.core.context import RunContext, RunOptions
from cubeinstall.core.errors import CubeError, StageFailed
from cubeinstall.core.output import Output
from cubeinstall.images.inventory import build_inventory
from cubeinstall.images.mirror import MirrorSettings, mirror
from cubeinstall.images.registry_client import (
    RegistryAuthError,
    RegistryClient,
    RegistryTLSError,
)
from cubeinstall.images.status import missing_in_registry, target_endpoint
from cubeinstall.render import naming
from cubeinstall.stages import images as images_stage
from tests.servers.registry import (
    MULTI_ARCH,
    TARGET_PASSWORD,
    TARGET_USER,
    build_image,
    make_site,
    push_image,
)

pytestmark = pytest.mark.registry

FAST = MirrorSettings(parallel=4, attempts=3, backoff=0.05)


@pytest.fixture
def skopeo_calls(tmp_path, monkeypatch):
    """Put a recording skopeo first on PATH; return a function reading the calls."""
    real = "/usr/bin/skopeo"
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "skopeo-calls.jsonl"
    (shim_dir / "skopeo").write_text(f"""#!/usr/bin/env python3
import json, os, sys
mode = None
for arg in sys.argv[1:]:
    if arg.startswith(("--dest-authfile=", "--authfile=")):
        mode = oct(os.stat(arg.split("=", 1)[1]).st_mode & 0o777)
with open({str(log)!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "authfile_mode": mode}}) + "\\n")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
""")
    (shim_dir / "skopeo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")

    def calls(verb: str = "copy") -> list[dict]:
        if not log.exists():
            return []
        records = [json.loads(line) for line in log.read_text().splitlines()]
        return [r for r in records if verb in r["argv"]]

    return calls


def _output() -> Output:
    return Output(json_mode=True, stream=io.StringIO())


def _uses(source_registry, site):
    return build_inventory({"test": list(source_registry.images)}, site.registry)


def _target_client(site) -> RegistryClient:
    return RegistryClient(target_endpoint(site.registry))


def test_mirror_copies_everything_with_identical_digests(source_registry, target_registry,
                                                         skopeo_calls):
    site = make_site(target_registry)
    out = _output()
    report = mirror(site, _uses(source_registry, site), out, FAST)
    assert report.failed == []
    assert len(report.by_action("copied")) == len(source_registry.images)
    client = _target_client(site)
    for source, digest in source_registry.images.items():
        ref = naming.target_ref(source, site.registry)
        assert client.manifest_digest(ref.repository, ref.tag) == digest, source
    # the multi-arch image arrived whole: its arm64 manifest is in the target too
    index_source = f"{source_registry.host}/{MULTI_ARCH[0]}"
    layouts = source_registry.root.parent / "layouts"
    arm64 = [p for p in layouts.rglob("*") if p.is_file() and b'"arm64"' in p.read_bytes()
             and b"manifests" in p.read_bytes()]
    assert arm64, "test image index not found"
    index = json.loads(arm64[0].read_bytes())
    target_repo = naming.target_ref(index_source, site.registry).repository
    for child in index["manifests"]:
        assert client.manifest_digest(target_repo, child["digest"]) == child["digest"]
    # credentials: only ever in a 0600 file that is gone afterwards, never on a command line
    copies = skopeo_calls()
    assert len(copies) == len(source_registry.images)
    for call in copies:
        assert call["authfile_mode"] == "0o600"
        assert not any(TARGET_PASSWORD in arg for arg in call["argv"])
        authfile = next(a for a in call["argv"] if a.startswith("--dest-authfile="))
        assert not os.path.exists(authfile.split("=", 1)[1])
        assert "--multi-arch=all" in call["argv"]
    assert TARGET_PASSWORD not in out.stream.getvalue()


def test_second_run_copies_nothing(source_registry, target_registry, skopeo_calls):
    site = make_site(target_registry)
    uses = _uses(source_registry, site)
    mirror(site, uses, _output(), FAST)
    first = len(skopeo_calls())
    out = _output()
    report = mirror(site, uses, out, FAST)
    assert len(skopeo_calls()) == first, "skopeo copy ran on the second run"
    assert {r.action for r in report.results} == {"present"}
    assert not [e for e in out.events if e["event"] == "image"]
    summary = next(e for e in out.events if e["event"] == "images-summary")
    assert (summary["copied"], summary["present"]) == (0, len(uses))


def test_wrong_password_names_registry_and_user(source_registry, target_registry, skopeo_calls):
    site = make_site(target_registry, password="not-the-password")
    with pytest.raises(RegistryAuthError) as info:
        mirror(site, _uses(source_registry, site), _output(), FAST)
    message = str(info.value)
    assert target_registry.host in message and TARGET_USER in message
    assert "not-the-password" not in message and TARGET_PASSWORD not in message
    assert "registry.password" in info.value.hint
    assert skopeo_calls() == []


def test_without_ca_file_tls_fails_clearly_and_insecure_works(source_registry, target_registry):
    untrusted = make_site(target_registry, ca_file=None)
    with pytest.raises(RegistryTLSError) as info:
        mirror(untrusted, _uses(source_registry, untrusted), _output(), FAST)
    assert target_registry.host in str(info.value) and "not trusted" in str(info.value)
    assert "ca_file" in info.value.hint
    insecure = make_site(target_registry, ca_file=None, insecure=True)
    report = mirror(insecure, _uses(source_registry, insecure), _output(), FAST)
    assert report.failed == [] and report.by_action("copied")


def test_outdated_image_is_replaced_and_missing_source_fails_without_retry(
        source_registry, target_registry, tmp_path, skopeo_calls, monkeypatch):
    site = make_site(target_registry)
    source = next(iter(source_registry.images))
    target = naming.target_ref(source, site.registry)
    stale = tmp_path / "stale"
    build_image(stale, "an older build")
    push_image(stale, target_registry, f"{target.repository}:{target.tag}")
    missing = f"{source_registry.host}/nobody/nothing:1"
    uses = build_inventory({"t": [source, missing]}, site.registry)
    monkeypatch.setattr(images_stage, "site_inventory", lambda s: uses)
    changes = {c.target: c.action
               for c in images_stage.plan(RunContext(site, _output(), RunOptions()))}
    assert changes[f"image {target}"] == "update"
    assert changes[f"image {naming.target_name(missing, site.registry)}"] == "create"
    report = mirror(site, uses, _output(), FAST)
    assert report.by_action("copied")[0].digest == source_registry.images[source]
    assert report.by_action("copied")[0].replaced
    failed = report.failed[0]
    assert failed.source == naming.parse(missing).__str__() and failed.attempts == 1
    assert "nobody/nothing" in failed.error


def test_unreachable_source_is_retried_then_reported(target_registry, skopeo_calls):
    site = make_site(target_registry)
    from tests.cluster.processes import free_port

    gone = f"127.0.0.1:{free_port()}/x/y:1"
    report = mirror(site, build_inventory({"t": [gone]}, site.registry), _output(), FAST)
    assert report.failed[0].attempts == FAST.attempts
    assert len(skopeo_calls()) == FAST.attempts


def test_missing_skopeo_is_a_clear_error(source_registry, target_registry, monkeypatch, tmp_path):
    site = make_site(target_registry)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no skopeo
    with pytest.raises(CubeError, match="skopeo is not installed") as info:
        mirror(site, _uses(source_registry, site), _output(), FAST)
    assert "apt-get install skopeo" in info.value.hint


def test_verify_lists_missing_then_nothing(source_registry, target_registry):
    site = make_site(target_registry)
    uses = _uses(source_registry, site)
    assert {u.source for u in missing_in_registry(site, uses)} == {u.source for u in uses}
    mirror(site, uses, _output(), FAST)
    assert missing_in_registry(site, uses) == []


def test_stage_plan_apply_then_unchanged(source_registry, target_registry, monkeypatch):
    site = make_site(target_registry)
    uses = _uses(source_registry, site)
    # the site's real inventory names internet images; here the stage mirrors the test's
    monkeypatch.setattr(images_stage, "site_inventory", lambda s: uses)
    ctx = RunContext(site, _output(), RunOptions())
    assert {c.action for c in images_stage.plan(ctx)} == {"create"}
    assert {c.action for c in images_stage.mirror_images(ctx, FAST)} == {"create"}
    assert {c.action for c in images_stage.mirror_images(ctx, FAST)} == {"unchanged"}
    assert {c.action for c in images_stage.plan(ctx)} == {"unchanged"}


def test_stage_failure_names_the_images(source_registry, target_registry, monkeypatch):
    site = make_site(target_registry)
    missing = f"{source_registry.host}/none/such:1"
    uses = build_inventory({"t": [missing, *source_registry.images]}, site.registry)
    monkeypatch.setattr(images_stage, "site_inventory", lambda s: uses)
    with pytest.raises(StageFailed) as info:
        images_stage.mirror_images(RunContext(site, _output(), RunOptions()), FAST)
    assert info.value.stage == "images" and "1 of 5 images" in str(info.value)
    assert "none/such" in str(info.value)
    # the others were copied and stay: the next run only retries the failed one
    assert len(missing_in_registry(site, uses)) == 1


def test_stage_reports_a_wrong_password_as_its_failure(source_registry, target_registry,
                                                       monkeypatch):
    site = make_site(target_registry, password="wrong-one")
    uses = _uses(source_registry, site)
    monkeypatch.setattr(images_stage, "site_inventory", lambda s: uses)
    with pytest.raises(StageFailed) as info:
        images_stage.plan(RunContext(site, _output(), RunOptions()))
    assert info.value.stage == "images" and TARGET_USER in str(info.value)
    assert target_registry.host in str(info.value) and "wrong-one" not in str(info.value)


def test_digest_pinned_images_keep_their_digest(source_registry, target_registry, skopeo_calls):
    site = make_site(target_registry)
    (path, digest), (tagged_path, tagged_digest) = list(source_registry.images.items())[:2]
    pinned = f"{path.rsplit(':', 1)[0]}@{digest}"
    both = f"{tagged_path}@{tagged_digest}"  # tag and digest: pulled by digest, pushed by tag
    uses = build_inventory({"t": [pinned, both]}, site.registry)
    report = mirror(site, uses, _output(), FAST)
    assert report.failed == [] and len(report.by_action("copied")) == 2
    client = _target_client(site)
    target = naming.target_ref(pinned, site.registry)
    assert client.manifest_digest(target.repository, digest) == digest
    tagged = naming.target_ref(both, site.registry)
    assert client.manifest_digest(tagged.repository, tagged.tag) == tagged_digest
    assert all("--preserve-digests" in call["argv"] for call in skopeo_calls())
    again = mirror(site, uses, _output(), FAST)
    assert {r.action for r in again.results} == {"present"}


def test_a_source_registry_that_does_not_answer_is_asked_once_per_run(
        target_registry, tmp_path, monkeypatch):
    """An air-gapped re-run: the target has every image; their sources are a name the
    resolver does not know and a closed port. However many images each registry has and
    however many checks run at once, each registry is asked once (its first question
    answers for the others), and a name that does not resolve is not asked again."""
    from cubeinstall.images.status import SourceClients, check
    from tests.cluster.processes import free_port

    site = make_site(target_registry)
    closed = f"127.0.0.1:{free_port()}"
    sources = [f"{host}/team/app{index}:1" for host in ("registry.invalid", closed)
               for index in range(6)]
    uses = build_inventory({"t": sources}, site.registry)
    layout = tmp_path / "layout"
    build_image(layout, "present")
    for use in uses:
        ref = naming.target_ref(use.source, site.registry)
        push_image(layout, target_registry, f"{ref.repository}:{ref.tag}")
    asked: list[str] = []
    send_once = RegistryClient._send_once

    def counted(client, method, path, headers):
        asked.append(client.endpoint.host)
        return send_once(client, method, path, headers)

    monkeypatch.setattr(RegistryClient, "_send_once", counted)
    statuses = check(uses, _target_client(site), SourceClients(), parallel=8)
    assert {s.state for s in statuses} == {"present-unchecked"}
    assert all(f"cannot reach registry {naming.parse(s.use.source).registry}" in s.note
               for s in statuses), [s.note for s in statuses]
    # the closed port is a network error worth one retry (attempts=2); the unknown name is not
    assert Counter(host for host in asked if host != target_registry.host) == {
        "registry.invalid": 1, closed: 2}, asked
