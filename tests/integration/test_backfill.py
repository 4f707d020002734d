"""Upgrade back-fills against a real MariaDB: batches, kill and resume, dry-run, missing names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cubeinstall.db.backfill import BackfillEntry, run_backfills

pytestmark = pytest.mark.mysql

ROWS = 200_000
PREFILLED_EVERY = 10  # every 10th row already has a value the back-fill must keep
NULL_ROWS = ROWS - ROWS // PREFILLED_EVERY
BATCH = 1000
PROJECT_EXPAND = BackfillEntry(version="2022.03.01", database="kubeflow", table="project",
                               column="expand", default="{}")


def make_project_table(mariadb, rows: int = ROWS, primary_key: bool = True) -> None:
    """kubeflow.project as an old release left it: `expand` added later, NULL in old rows."""
    mariadb.query("CREATE DATABASE IF NOT EXISTS kubeflow")
    key = "id INT NOT NULL PRIMARY KEY" if primary_key else "id INT NOT NULL"
    mariadb.query(f"CREATE TABLE kubeflow.project ({key}, name VARCHAR(50) NOT NULL, "
                  "expand TEXT NULL)")
    # MariaDB's sequence engine makes the rows server-side in well under a second.
    mariadb.query("INSERT INTO kubeflow.project (id, name, expand) "
                  f"SELECT seq, CONCAT('project-', seq), IF(seq % {PREFILLED_EVERY} = 0, "
                  f"'{{\"kept\": 1}}', NULL) FROM kubeflow.seq_1_to_{rows}")


def nulls(mariadb) -> int:
    return mariadb.query("SELECT COUNT(*) FROM kubeflow.project WHERE expand IS NULL")[0][0]


def values(mariadb) -> dict[str, int]:
    rows = mariadb.query("SELECT expand, COUNT(*) FROM kubeflow.project GROUP BY expand")
    return {value: count for value, count in rows}


def test_fills_in_batches_by_primary_key(mariadb, mysql_context):
    make_project_table(mariadb)
    ctx = mysql_context()
    before = mariadb.write_counters()["Com_update"]

    [change] = run_backfills(ctx, batch_size=10_000, entries=[PROJECT_EXPAND])

    assert change.action == "update"
    assert f"set {NULL_ROWS} NULL rows to '{{}}' in 19 batches of <= 10000 (by id ranges)" \
        in change.detail  # 18 full batches and the empty-bound last one
    assert values(mariadb) == {"{}": NULL_ROWS, '{"kept": 1}': ROWS // PREFILLED_EVERY}
    assert mariadb.write_counters()["Com_update"] - before == 19
    progress = [e for e in ctx.out.events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == NULL_ROWS
    assert all(b["done"] - a["done"] <= 10_000 for a, b in zip(progress, progress[1:]))


def test_fills_in_batches_with_limit_when_there_is_no_integer_key(mariadb, mysql_context):
    make_project_table(mariadb, rows=2_500, primary_key=False)

    [change] = run_backfills(mysql_context(), batch_size=1000, entries=[PROJECT_EXPAND])

    assert "set 2250 NULL rows to '{}' in 3 batches of <= 1000 (with LIMIT)" in change.detail
    assert nulls(mariadb) == 0


def test_dry_run_counts_rows_and_changes_nothing(mariadb, mysql_context):
    make_project_table(mariadb, rows=5_000)
    mariadb.query("CREATE TABLE kubeflow.docker (id INT PRIMARY KEY, need_gpu TINYINT(1) NULL)")
    entries = [PROJECT_EXPAND,
               BackfillEntry(version="2022.08.01", database="kubeflow", table="docker",
                             column="need_gpu", default=False),
               BackfillEntry(version="2022.08.01", database="kubeflow", table="docker",
                             column="expand", default="{}"),
               BackfillEntry(version="2023.03.01", database="kubeflow", table="service",
                             column="expand", default="{}")]
    ctx = mysql_context()
    before = mariadb.write_counters()

    changes = {c.target: c for c in run_backfills(ctx, dry_run=True, entries=entries)}

    assert mariadb.write_counters() == before
    assert changes["kubeflow.project.expand"].detail == "4500 rows with NULL would be set to '{}'"
    assert changes["kubeflow.docker.need_gpu"].action == "unchanged"  # empty table
    missing_column = changes["kubeflow.docker.expand"]
    assert missing_column.action == "skip"
    assert "column expand not found in kubeflow.docker" in missing_column.detail
    assert "table kubeflow.service not found" in changes["kubeflow.service.expand"].detail
    warnings = [e["message"] for e in ctx.out.events if e["event"] == "warning"]
    assert len(warnings) == 2 and all("skipped" in w for w in warnings)


def test_entries_newer_than_the_installed_release_are_skipped(mariadb, mysql_context):
    make_project_table(mariadb, rows=100)
    newer = PROJECT_EXPAND.model_copy(update={"version": "2030.01.01"})

    [change] = run_backfills(mysql_context(), entries=[newer], target_version="2026.03.01")

    assert change.action == "skip" and "newer than 2026.03.01" in change.detail
    assert nulls(mariadb) == 90


def test_shipped_list_runs_on_a_partial_schema(mariadb, mysql_context):
    """The real list: present tables are filled (typed defaults), absent ones reported."""
    make_project_table(mariadb, rows=1_000)
    mariadb.query("CREATE TABLE kubeflow.docker (id INT PRIMARY KEY, expand TEXT NULL, "
                  "need_gpu TINYINT(1) NULL, consecutive_build TINYINT(1) NULL)")
    mariadb.query("INSERT INTO kubeflow.docker (id) SELECT seq FROM kubeflow.seq_1_to_50")
    ctx = mysql_context()

    changes = {c.target: c.action for c in run_backfills(ctx)}

    assert changes["kubeflow.project.expand"] == "update"
    assert changes["kubeflow.docker.need_gpu"] == "update"
    assert changes["kubeflow.inferenceservice.expand"] == "skip"
    assert mariadb.query("SELECT COUNT(*) FROM kubeflow.docker WHERE expand = '{}' "
                         "AND need_gpu = 0 AND consecutive_build = 1")[0][0] == 50
    assert {c.action for c in run_backfills(mysql_context())} <= {"unchanged", "skip"}


# --- killed midway, then resumed --------------------------------------------------------

_RUNNER = """
import sys
from pathlib import Path
from cubeinstall.db.backfill import load_backfills, run_backfills
from cubeinstall.core.output import Output
from cubeinstall.site.loader import load_site
from cubeinstall.core.context import RunContext

ctx = RunContext(site=load_site(sys.argv[1]), out=Output(json_mode=True))
run_backfills(ctx, batch_size=int(sys.argv[3]), entries=load_backfills(Path(sys.argv[2])))
"""


def write_site_file(tmp_path: Path, mariadb) -> Path:
    (tmp_path / "mysql-password").write_text(mariadb.root_password, encoding="utf-8")
    site = {
        "site": "test", "domain": "cube.test.example",
        "nodes": [{"name": "node1", "address": "127.0.0.1",
                   "roles": ["cpu", "redis", "istio", "kubeflow", "monitoring", "logging",
                             "kubeflow-dashboard"]}],
        "storage": {"type": "local"},
        "mysql": {"mode": "external", "host": mariadb.host, "port": mariadb.port,
                  "password": {"file": "mysql-password"}},
        "redis": {"password": "unused-redis"},
        "gateway": {"expose": "NodePort"},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    return path


def test_killed_midway_then_resumed_to_completion(mariadb, mysql_context, tmp_path):
    make_project_table(mariadb)
    site_file = write_site_file(tmp_path, mariadb)
    list_file = tmp_path / "backfills.yaml"
    list_file.write_text(yaml.safe_dump({"backfills": [PROJECT_EXPAND.model_dump()]}))
    child = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(site_file), str(list_file), str(BATCH)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    batches_seen = 0
    for line in child.stdout:
        if json.loads(line).get("event") == "progress":
            batches_seen += 1
            if batches_seen == 5:
                child.send_signal(signal.SIGKILL)
                break
    child.wait(30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert batches_seen == 5

    filled = NULL_ROWS - nulls(mariadb)
    # Each batch is its own committed transaction: the kill leaves whole batches only.
    assert 5 * BATCH <= filled < NULL_ROWS, filled
    assert filled % BATCH == 0, filled

    [change] = run_backfills(mysql_context(), batch_size=BATCH, entries=[PROJECT_EXPAND])

    assert f"set {NULL_ROWS - filled} NULL rows" in change.detail
    assert values(mariadb) == {"{}": NULL_ROWS, '{"kept": 1}': ROWS // PREFILLED_EVERY}
    [again] = run_backfills(mysql_context(), batch_size=BATCH, entries=[PROJECT_EXPAND])
    assert again.action == "unchanged" and again.detail == "no NULL rows"



def test_a_default_the_column_refuses_is_a_clear_error(mariadb, mysql_context):
    from cubeinstall.core.errors import CubeError

    mariadb.query("CREATE DATABASE kubeflow")
    mariadb.query("CREATE TABLE kubeflow.task (id INT PRIMARY KEY, retry INT NULL)")
    mariadb.query("INSERT INTO kubeflow.task (id) VALUES (1), (2)")
    wrong = BackfillEntry(version="2022.03.01", database="kubeflow", table="task",
                          column="retry", default="{}")

    with pytest.raises(CubeError) as failed:
        run_backfills(mysql_context(), entries=[wrong])
    text = str(failed.value)
    assert f"MySQL at 127.0.0.1:{mariadb.port} (user 'root'): back-fill of " \
           "kubeflow.task.retry failed: Incorrect integer value" in text
