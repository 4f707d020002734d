"""Upgrade back-fills: set the new default on old rows whose new column is NULL.

The list is declarative and ships with the package (data/backfills.yaml).
``run_backfills`` walks the entries that apply to the release being
installed and fills NULLs in bounded batches, each its own committed
transaction, so an interrupted run loses at most one batch and the next run
simply continues (the NULLs left are the state). With a single-column
integer primary key the batches walk the key (each statement touches at
most ``batch_size`` rows and never rescans filled ones); otherwise they use
``UPDATE ... WHERE c IS NULL LIMIT n``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cubeinstall.core.change import Change
from cubeinstall.core.errors import ConfigError
from cubeinstall.db import names

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext

SHIPPED_LIST = "backfills.yaml"
DEFAULT_BATCH_SIZE = 1000
_VERSION = re.compile(r"^\d{4}\.\d{2}\.\d{2}$")
_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}


class BackfillEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=_VERSION.pattern)
    database: str
    table: str
    column: str
    default: Union[bool, int, float, str]
    note: str = ""

    @field_validator("database", "table", "column")
    @classmethod
    def _safe_identifier(cls, value: str, info) -> str:
        try:
            return names.identifier(value, info.field_name)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @property
    def target(self) -> str:
        return f"{self.database}.{self.table}.{self.column}"

    @property
    def qualified_table(self) -> str:
        return f"{names.quoted(self.database, 'database')}.{names.quoted(self.table, 'table')}"


def load_backfills(path: Path | None = None) -> list[BackfillEntry]:
    """The shipped list (or ``path``), validated entry by entry."""
    import yaml

    if path is None:
        text = resources.files("cubeinstall").joinpath("data", SHIPPED_LIST).read_text("utf-8")
        where = f"cubeinstall/data/{SHIPPED_LIST}"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    raw = (yaml.safe_load(text) or {}).get("backfills") or []
    entries, problems = [], []
    for index, item in enumerate(raw):
        try:
            entries.append(BackfillEntry.model_validate(item))
        except ValidationError as exc:
            problems += [f"backfills[{index}].{'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in exc.errors()]
    if problems:
        raise ConfigError(f"{where}: invalid back-fill list", problems=problems,
                          hint="fix the entries; names are letters, digits and underscores")
    return entries


def _version_key(version: str) -> tuple[int, ...] | None:
    return tuple(int(part) for part in version.split(".")) if _VERSION.match(version) else None


def applies(entry: BackfillEntry, target_version: str | None) -> bool:
    """An entry applies when its release is not newer than the one installed.

    A target that is not a dated release (e.g. ``latest``) takes every entry.
    """
    target = _version_key(target_version or "")
    return target is None or _version_key(entry.version) <= target


# --- one entry against the server ----------------------------------------------------


def _inspect(cursor: Any, entry: BackfillEntry) -> tuple[str | None, str | None]:
    """(problem, integer key column): problem names a missing table or column."""
    cursor.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
                   "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                   (entry.database, entry.table))
    columns = {name.lower(): (name, dtype, key) for name, dtype, key in cursor.fetchall()}
    if not columns:
        return f"table {entry.database}.{entry.table} not found", None
    if entry.column.lower() not in columns:
        return f"column {entry.column} not found in {entry.database}.{entry.table}", None
    keys = [(name, dtype) for name, dtype, key in columns.values() if key == "PRI"]
    if len(keys) == 1 and keys[0][1].lower() in _INTEGER_TYPES:
        return None, keys[0][0]
    return None, None


def count_nulls(cursor: Any, entry: BackfillEntry) -> int:
    column = names.quoted(entry.column, "column")
    cursor.execute(f"SELECT COUNT(*) FROM {entry.qualified_table} WHERE {column} IS NULL")
    return int(cursor.fetchone()[0])


def fill_batches(cursor: Any, entry: BackfillEntry, key: str | None, batch_size: int,
                 on_batch: Callable[[int], None]) -> tuple[int, int]:
    """Fill NULLs batch by batch (autocommit: one transaction each); (rows, batches)."""
    table, column = entry.qualified_table, names.quoted(entry.column, "column")
    update = f"UPDATE {table} SET {column} = %s WHERE {column} IS NULL"
    rows = batches = 0
    if key is None:
        while True:
            done = cursor.execute(f"{update} LIMIT %s", (entry.default, batch_size))
            rows, batches = rows + done, batches + 1
            on_batch(done)
            if done < batch_size:
                return rows, batches
    key = names.quoted(key, "key column")
    last = None
    while True:
        after, after_args = ("", ()) if last is None else (f" AND {key} > %s", (last,))
        # The key of the batch_size-th NULL row from here bounds this batch.
        cursor.execute(f"SELECT {key} FROM {table} WHERE {column} IS NULL{after} "
                       f"ORDER BY {key} LIMIT 1 OFFSET %s", (*after_args, batch_size - 1))
        bound = cursor.fetchone()
        upto, upto_args = ("", ()) if bound is None else (f" AND {key} <= %s", (bound[0],))
        done = cursor.execute(f"{update}{after}{upto} ORDER BY {key} LIMIT %s",
                              (entry.default, *after_args, *upto_args, batch_size))
        rows, batches = rows + done, batches + 1
        on_batch(done)
        if bound is None:
            return rows, batches
        last = bound[0]


def _backfill_one(ctx: "RunContext", cursor: Any, entry: BackfillEntry, dry_run: bool,
                  batch_size: int) -> Change:
    problem, key = _inspect(cursor, entry)
    if problem:
        ctx.out.warn(f"back-fill {entry.target} (since {entry.version}): {problem}; skipped",
                     target=entry.target)
        return Change(entry.target, "skip", f"{problem}; nothing to back-fill")
    nulls = count_nulls(cursor, entry)
    value = f"{entry.default!r}"
    if nulls == 0:
        return Change(entry.target, "unchanged", "no NULL rows")
    if dry_run:
        return Change(entry.target, "update", f"{nulls} rows with NULL would be set to {value}")
    with ctx.out.progress(f"back-fill {entry.target}", nulls) as advance:
        rows, batches = fill_batches(cursor, entry, key, batch_size, advance)
    how = f"by {key} ranges" if key else "with LIMIT"
    return Change(entry.target, "update",
                  f"set {rows} NULL rows to {value} in {batches} batches of <= {batch_size} ({how})")


def run_backfills(ctx: "RunContext", dry_run: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                  *, target_version: str | None = None,
                  entries: Sequence[BackfillEntry] | None = None) -> list[Change]:
    """Fill the NULLs of every applicable back-fill entry; what ``cubeinstall upgrade-db`` runs.

    ``target_version`` defaults to the site's cube.image_tag; ``entries`` to the
    shipped list. Dry-run counts the rows per entry and changes nothing.
    Raises a CubeError (unreachable/denied MySQL, a statement refused).
    """
    import pymysql

    from cubeinstall.db.connection import connect, mysql_endpoint, sql_error

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    target_version = target_version or ctx.site.cube.image_tag
    entries = load_backfills() if entries is None else list(entries)
    wanted = [entry for entry in entries if applies(entry, target_version)]
    changes = [Change(entry.target, "skip", f"added in {entry.version}, newer than "
                      f"{target_version}") for entry in entries if entry not in wanted]
    with mysql_endpoint(ctx) as endpoint:
        conn = connect(endpoint, deadline_seconds=ctx.site.timeouts.object_seconds)
        try:
            with conn.cursor() as cursor:
                for entry in wanted:
                    try:
                        changes.append(_backfill_one(ctx, cursor, entry, dry_run, batch_size))
                    except pymysql.err.MySQLError as exc:
                        raise sql_error(exc, endpoint, f"back-fill of {entry.target}") from None
        finally:
            conn.close()
    return changes

