"""Journal, fingerprints and the local site lock."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from cubeinstall.run.fingerprint import fingerprint
from cubeinstall.run.journal import Journal
from cubeinstall.run.lock import SiteLocked, local_lock
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from tests.helpers import EXAMPLE_SITE, example_site_data, write_site


def test_journal_round_trip_and_resume_semantics(tmp_path):
    journal = Journal.load("s1", tmp_path)
    journal.started("namespaces", "sha256:a")
    assert not journal.is_current("namespaces", "sha256:a")  # running = interrupted
    journal.finished("namespaces", ok=True, changes=3)
    journal.started("mysql", "sha256:b")
    journal.finished("mysql", ok=False, message="timeout")

    again = Journal.load("s1", tmp_path)
    assert again.is_current("namespaces", "sha256:a")
    assert not again.is_current("namespaces", "sha256:other")
    assert not again.is_current("mysql", "sha256:b")
    assert again.stages["mysql"].message == "timeout"
    assert json.loads((tmp_path / "s1.journal.json").read_text())["schema"] == 1
    assert not list(tmp_path.glob(".s1.journal.json.*")), "temp files left behind"


def test_the_cluster_copy_gets_each_start_at_once_and_the_ends_with_the_next_write(tmp_path):
    """One write per stage: a start is copied before the stage changes anything (a copy
    must never say ok for a stage that is running); an end waits for the next start or
    for flush at the end of the run, and a lagging copy only says `running`."""
    copies: list[dict] = []
    journal = Journal.load("s1", tmp_path)
    journal.mirror = lambda text: copies.append(json.loads(text)["stages"])
    journal.started("namespaces", "sha256:a")
    assert [c["namespaces"]["status"] for c in copies] == ["running"]
    journal.finished("namespaces", ok=True)
    assert len(copies) == 1  # the file has it; the copy still says running
    assert Journal.load("s1", tmp_path).is_current("namespaces", "sha256:a")
    journal.started("mysql", "sha256:b")
    assert {name: record["status"] for name, record in copies[-1].items()} == {
        "namespaces": "ok", "mysql": "running"}
    journal.finished("mysql", ok=False, message="timeout")
    journal.flush()
    journal.flush()  # nothing new: not written again
    assert len(copies) == 3
    assert copies[-1] == json.loads(journal.to_json())["stages"]


def test_fingerprint_follows_inputs_and_secrets(tmp_path, monkeypatch):
    site = load_site(EXAMPLE_SITE)
    storage = registry.get("storage")
    base = fingerprint(storage, site, None)
    assert base == fingerprint(storage, load_site(EXAMPLE_SITE), None)

    data = example_site_data()
    data["storage"]["secret"] = "${env:CUBE_T_NEW_CEPH_KEY}"
    monkeypatch.setenv("CUBE_T_NEW_CEPH_KEY", "another-key-value")
    changed = load_site(write_site(tmp_path, data))
    assert fingerprint(storage, changed, None) != base
    # A section the node layer does not read leaves its fingerprint alone.
    data2 = example_site_data()
    data2["cube"]["image_tag"] = "2026.04.01"
    other = load_site(write_site(tmp_path, data2, "other.yaml"))
    assert fingerprint(storage, other, None) == base
    assert "another-key-value" not in fingerprint(storage, changed, None)


def test_fingerprint_of_objects():
    stage = registry.get("namespaces")
    site = load_site(EXAMPLE_SITE)
    one = fingerprint(stage, site, [{"kind": "Namespace", "metadata": {"name": "a"}}])
    two = fingerprint(stage, site, [{"kind": "Namespace", "metadata": {"name": "b"}}])
    assert one != two and one.startswith("sha256:")


def _hold(directory, ready, release):
    with local_lock("locked-site", directory):
        ready.set()
        release.wait(20)


def test_second_run_is_refused_naming_the_holder(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(SiteLocked) as refused:
            with local_lock("locked-site", tmp_path):
                pass
        assert f"pid {holder.pid}" in str(refused.value)
    finally:
        release.set()
        holder.join(20)
    with local_lock("locked-site", tmp_path):  # released with its holder
        pass


def test_lock_of_a_killed_holder_is_released(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(20)
    holder.kill()
    holder.join(20)
    deadline = time.monotonic() + 5
    with local_lock("locked-site", tmp_path):
        assert time.monotonic() < deadline
