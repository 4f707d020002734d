#!/usr/bin/env python3
"""Back-fill throughput: batches of 1k / 10k rows vs one single UPDATE, same table.

    python bench/bench_backfill.py [--rows 200000] [--repeat 3]

Starts a throw-away MariaDB (Debian's mariadb-server, as the tests do),
builds kubeflow.project with ``--rows`` rows whose ``expand`` is NULL (every
10th row already set), and times, on a fresh copy of the table each run:
- one ``UPDATE ... WHERE expand IS NULL`` (one transaction: the baseline,
  fastest but holding every row lock until the end and not resumable);
- ``run_backfills`` with batches of 1,000 and 10,000 rows, walking the
  primary key (the path taken when the table has an integer key);
- the same batch sizes with ``UPDATE ... LIMIT n`` on a table with no key
  (the fallback path), which rescans filled rows on every batch.
Prints the median of ``--repeat`` runs as rows/s and the ratio to the single UPDATE.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubeinstall.db.backfill import BackfillEntry, run_backfills  # noqa: E402
from tests.servers.mariadb import context_for, site_for, start_mariadb  # noqa: E402

ENTRY = BackfillEntry(version="2022.03.01", database="kubeflow", table="project",
                      column="expand", default="{}")


def make_table(server, rows: int, primary_key: bool) -> int:
    server.query("CREATE DATABASE IF NOT EXISTS kubeflow")
    server.query("DROP TABLE IF EXISTS kubeflow.project")
    key = "id INT NOT NULL PRIMARY KEY" if primary_key else "id INT NOT NULL"
    server.query(f"CREATE TABLE kubeflow.project ({key}, name VARCHAR(50) NOT NULL, "
                 "expand TEXT NULL)")
    server.query("INSERT INTO kubeflow.project (id, name, expand) SELECT seq, "
                 f"CONCAT('project-', seq), IF(seq % 10 = 0, '{{}}', NULL) "
                 f"FROM kubeflow.seq_1_to_{rows}")
    return server.query("SELECT COUNT(*) FROM kubeflow.project WHERE expand IS NULL")[0][0]


def single_update(server) -> None:
    server.query("UPDATE kubeflow.project SET expand = %s WHERE expand IS NULL", ("{}",))


def batched(server, batch_size: int):
    def run(_server) -> None:
        ctx = context_for(site_for(server.host, server.port, server.root_password))
        [change] = run_backfills(ctx, batch_size=batch_size, entries=[ENTRY])
        assert change.action == "update", change

    return run


def measure(server, rows: int, primary_key: bool, method, repeat: int) -> tuple[float, int]:
    seconds = []
    for _ in range(repeat):
        nulls = make_table(server, rows, primary_key)
        started = time.perf_counter()
        method(server)
        seconds.append(time.perf_counter() - started)
        left = server.query("SELECT COUNT(*) FROM kubeflow.project WHERE expand IS NULL")[0][0]
        assert left == 0, f"{left} NULL rows left"
    return statistics.median(seconds), nulls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as workdir:
        server = start_mariadb(Path(workdir))
        try:
            cases = [
                ("single UPDATE (1 statement)", True, single_update),
                ("batches of 1,000 by key", True, batched(server, 1_000)),
                ("batches of 10,000 by key", True, batched(server, 10_000)),
                ("batches of 1,000 with LIMIT (no key)", False, batched(server, 1_000)),
                ("batches of 10,000 with LIMIT (no key)", False, batched(server, 10_000)),
            ]
            results = [(name, *measure(server, args.rows, key, method, args.repeat))
                       for name, key, method in cases]
        finally:
            server.process.stop()

    baseline = results[0][1]
    print(f"back-fill of kubeflow.project.expand, {args.rows} rows "
          f"({results[0][2]} NULL), MariaDB, median of {args.repeat}")
    print(f"{'method':40} {'seconds':>8} {'rows/s':>10} {'vs single':>10}")
    for name, seconds, nulls in results:
        print(f"{name:40} {seconds:8.2f} {nulls / seconds:10.0f} {baseline / seconds:9.2f}x")


if __name__ == "__main__":
    main()
