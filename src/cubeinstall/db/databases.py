"""The platform's databases and its optional application user: plan, then apply.

Planning reads the server (which databases exist, with which charset and
collation; whether the app user exists, its password still works, which
grants it has) and turns the difference into ``Action``s: a Change for the
user plus the statements that make it true. Apply sends only the
statements of changing actions, so a second run sends no write at all.

An existing database whose charset or collation differs from the site is
reported, never altered: converting a live database is the operator's call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from cubeinstall.core.change import Change
from cubeinstall.db import names
from cubeinstall.db.connection import (
    Endpoint,
    MySQLAccessDenied,
    connect,
    mysql_endpoint,
    sql_error,
)
from cubeinstall.db.statement import Statement

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.site.model import AppUser, Database, Site

APP_USER_HOST = "%"  # platform pods connect from changing pod IPs
_GRANT_ALL = re.compile(r"^GRANT ALL PRIVILEGES ON `((?:[^`]|``)+)`\.\* TO ", re.IGNORECASE)
_USAGE_ONLY = re.compile(r"^GRANT USAGE ON \*\.\* TO ", re.IGNORECASE)


@dataclass(frozen=True)
class Action:
    change: Change
    statements: tuple[Statement, ...] = ()
    warning: str = ""  # shown as a warning: a difference we report but do not change


@dataclass(frozen=True)
class ExistingDatabase:
    charset: str
    collation: str


# --- statements ------------------------------------------------------------------


def create_database(db: "Database") -> Statement:
    return Statement(
        f"CREATE DATABASE IF NOT EXISTS {names.quoted(db.name, 'database name')} "
        "DEFAULT CHARACTER SET %s DEFAULT COLLATE %s",
        (names.charset_name(db.charset, f"charset of database {db.name}"),
         names.charset_name(db.collation, f"collation of database {db.name}")))


def _grant_pattern(database: str) -> str:
    """The database name as GRANT reads it: `_` is a wildcard there, so escape it."""
    return names.identifier(database, "database name").replace("_", r"\_")


def grant_all(database: str, user: str) -> Statement:
    return Statement(f"GRANT ALL PRIVILEGES ON `{_grant_pattern(database)}`.* TO %s@%s",
                     (names.account_name(user), APP_USER_HOST))


def create_user(user: "AppUser") -> Statement:
    return Statement("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                     (names.account_name(user.name), APP_USER_HOST, user.password))


def set_password(user: "AppUser") -> Statement:
    return Statement("ALTER USER %s@%s IDENTIFIED BY %s",
                     (names.account_name(user.name), APP_USER_HOST, user.password))


# --- reading the server ---------------------------------------------------------------


def existing_databases(cursor: Any, wanted: Iterable[str]) -> dict[str, ExistingDatabase]:
    wanted = list(wanted)
    if not wanted:
        return {}
    placeholders = ", ".join(["%s"] * len(wanted))
    cursor.execute(
        "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
        f"FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({placeholders})", wanted)
    return {name: ExistingDatabase(charset, collation)
            for name, charset, collation in cursor.fetchall()}


def _user_exists(cursor: Any, user: str) -> bool:
    cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s AND Host = %s",
                   (user, APP_USER_HOST))
    return cursor.fetchone()[0] > 0


def _grants(cursor: Any, user: str) -> tuple[set[str], list[str]]:
    """(databases granted ALL, other grant lines) of the app user."""
    cursor.execute("SHOW GRANTS FOR %s@%s", (user, APP_USER_HOST))
    granted: set[str] = set()
    others: list[str] = []
    for (line,) in cursor.fetchall():
        match = _GRANT_ALL.match(line)
        if match:
            granted.add(match.group(1).replace("``", "`").replace(r"\_", "_"))
        elif not _USAGE_ONLY.match(line):
            others.append(line.split(" TO ")[0])
    return granted, others


def _password_works(endpoint: Endpoint, user: "AppUser", deadline_seconds: float) -> bool:
    """Whether the app user logs in. The first connection of the stage: a server that has
    just started gets the stage's whole deadline to answer (a refusal answers at once)."""
    try:
        connect(endpoint.as_user(user.name, user.password),
                deadline_seconds=deadline_seconds).close()
    except MySQLAccessDenied:
        return False
    return True


# --- planning ----------------------------------------------------------------------------


def database_actions(site: "Site", existing: dict[str, ExistingDatabase]) -> list[Action]:
    actions = []
    for db in site.mysql.databases:
        target = f"database {db.name}"
        statement = create_database(db)
        found = existing.get(db.name)
        if found is None:
            actions.append(Action(Change(target, "create", statement.display()), (statement,)))
        elif (names.same_charset(found.charset, db.charset)
              and names.same_collation(found.collation, db.collation)):
            actions.append(Action(Change(
                target, "unchanged", f"exists ({found.charset}/{found.collation})")))
        else:
            detail = (f"exists with charset {found.charset}/{found.collation} but the site wants "
                      f"{db.charset}/{db.collation}; not altered (ALTER DATABASE it yourself, or "
                      "set mysql.databases[].charset/collation to match)")
            actions.append(Action(Change(target, "skip", detail), warning=detail))
    return actions


def app_user_actions(site: "Site", cursor: Any, password_works: bool) -> list[Action]:
    """``password_works``: whether the app user could log in with the site's password."""
    user = site.mysql.app_user
    if user is None:
        return []
    target = f"mysql user {user.name}@{APP_USER_HOST}"
    platform = [db.name for db in site.mysql.databases]
    if not _user_exists(cursor, user.name):
        return [_new_user(user, platform)]
    statements: list[Statement] = []
    reasons: list[str] = []
    if not password_works:
        statements.append(set_password(user))
        reasons.append("password no longer works")
    granted, others = _grants(cursor, user.name)
    missing = [db for db in platform if db not in granted]
    statements.extend(grant_all(db, user.name) for db in missing)
    if missing:
        reasons.append(f"missing grants on {', '.join(missing)}")
    extra = sorted(granted - set(platform)) + others
    warning = (f"has grants the site does not give, not revoked: {', '.join(extra)}"
               if extra else "")
    note = f"; {warning}" if warning else ""
    if not statements:
        return [Action(Change(target, "unchanged",
                              f"exists, password works, ALL on {', '.join(platform)}{note}"),
                       warning=warning)]
    return [Action(Change(target, "update", f"{'; '.join(reasons)}: {_joined(statements)}{note}"),
                   tuple(statements), warning)]


def _new_user(user: "AppUser", platform: list[str]) -> Action:
    statements = (create_user(user), *(grant_all(db, user.name) for db in platform))
    return Action(Change(f"mysql user {user.name}@{APP_USER_HOST}", "create",
                         _joined(statements)), statements)


def actions_from_scratch(site: "Site") -> list[Action]:
    """What a server with none of it would get (plan before in-cluster MySQL exists)."""
    user = site.mysql.app_user
    platform = [db.name for db in site.mysql.databases]
    return database_actions(site, {}) + ([_new_user(user, platform)] if user else [])


def _joined(statements: Iterable[Statement]) -> str:
    return "; ".join(s.display() for s in statements)


def plan_actions(cursor: Any, site: "Site", password_works: bool) -> list[Action]:
    existing = existing_databases(cursor, [db.name for db in site.mysql.databases])
    return database_actions(site, existing) + app_user_actions(site, cursor, password_works)


def execute(cursor: Any, endpoint: Endpoint, actions: Iterable[Action], out) -> None:
    import pymysql

    for action in actions:
        if not action.change.changes_something:
            continue
        for statement in action.statements:
            out.debug(f"mysql: {statement.display()}")
            try:
                statement.execute(cursor)
            except pymysql.err.MySQLError as exc:
                raise sql_error(exc, endpoint, statement.display()) from None


def warn_differences(ctx: "RunContext", actions: Iterable[Action]) -> None:
    for action in actions:
        if action.warning:
            target = action.change.target
            ctx.out.warn(f"{target}: {action.warning}", target=target)


def reconcile(ctx: "RunContext", *, write: bool, deadline_seconds: float) -> list[Change]:
    """Plan (``write=False``) or apply the databases and app user of the site."""
    import pymysql

    with mysql_endpoint(ctx) as endpoint:
        # The app user's login is tried first, on its own: one connection at a time (two at
        # once through the port-forward bridge can stall; see db/portforward.py).
        user = ctx.site.mysql.app_user
        password_works = user is not None and _password_works(endpoint, user, deadline_seconds)
        conn = connect(endpoint, deadline_seconds=deadline_seconds)
        try:
            with conn.cursor() as cursor:
                try:
                    actions = plan_actions(cursor, ctx.site, password_works)
                except pymysql.err.MySQLError as exc:
                    raise sql_error(exc, endpoint, "reading databases, users and grants") from None
                if write:
                    execute(cursor, endpoint, actions, ctx.out)
        finally:
            conn.close()
    warn_differences(ctx, actions)
    return [action.change for action in actions]


def purge(ctx: "RunContext", *, write: bool, deadline_seconds: float) -> list[Change]:
    """``uninstall --purge``: drop the site's databases and its app user (their data goes)."""
    import pymysql

    site = ctx.site
    statements: list[tuple[str, Statement]] = [
        (f"database {db.name}", Statement(f"DROP DATABASE IF EXISTS {names.quoted(db.name, 'database')}"))
        for db in site.mysql.databases
    ]
    if site.mysql.app_user:
        user = names.account_name(site.mysql.app_user.name)
        statements.append((f"user {user}", Statement("DROP USER IF EXISTS %s@%s", (user, APP_USER_HOST))))
    changes: list[Change] = []
    with mysql_endpoint(ctx) as endpoint:
        conn = connect(endpoint, deadline_seconds=deadline_seconds)
        try:
            with conn.cursor() as cursor:
                try:
                    present = existing_databases(cursor, [db.name for db in site.mysql.databases])
                    user_present = (bool(site.mysql.app_user)
                                    and _user_exists(cursor, site.mysql.app_user.name))
                except pymysql.err.MySQLError as exc:
                    raise sql_error(exc, endpoint, "reading the databases and users to drop") from None
                for target, statement in statements:
                    exists = (target.removeprefix("database ") in present
                              if target.startswith("database ") else user_present)
                    if not exists:
                        changes.append(Change(target, "unchanged", "not present"))
                        continue
                    if write:
                        try:
                            statement.execute(cursor)
                        except pymysql.err.MySQLError as exc:
                            raise sql_error(exc, endpoint, f"dropping {target}") from None
                    changes.append(Change(target, "delete", statement.display()))
            conn.commit()
        finally:
            conn.close()
    return changes
