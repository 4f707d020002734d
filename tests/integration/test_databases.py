"""The databases stage against a real MariaDB (fixture: tests.servers.mariadb)."""

from __future__ import annotations

import pymysql
import pytest

from cubeinstall.core.errors import StageFailed
from cubeinstall.stages import databases as stage

pytestmark = pytest.mark.mysql

PLATFORM_DATABASES = ("kubeflow", "mlpipeline", "katib", "metadb", "cachedb")
APP_PASSWORD = "app-Pw'); DROP USER root; --"  # a value, never SQL


def schemata(mariadb) -> dict[str, tuple[str, str]]:
    rows = mariadb.query("SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                         "FROM information_schema.SCHEMATA")
    return {name: (charset, collation) for name, charset, collation in rows}


def by_target(changes) -> dict[str, object]:
    return {change.target: change for change in changes}


def app_user(password: str = APP_PASSWORD) -> dict:
    from cubeinstall.site.secrets import Secret

    return {"name": "cube", "password": Secret(password, "test value")}


def test_creates_platform_databases_with_utf8_general_ci(mariadb, mysql_context):
    changes = stage.apply(mysql_context())

    assert [c.action for c in changes] == ["create"] * 5
    found = schemata(mariadb)
    for name in PLATFORM_DATABASES:
        # utf8 reads back as utf8mb3 on MariaDB >= 10.6 (TEST-SERVERS.md): same charset.
        assert found[name] == ("utf8mb3", "utf8mb3_general_ci"), name


def test_second_apply_sends_no_write(mariadb, mysql_context):
    ctx = mysql_context(app_user=app_user())
    first = stage.apply(ctx)
    assert {c.action for c in first} == {"create"}
    before = mariadb.write_counters()

    second = stage.apply(mysql_context(app_user=app_user()))

    assert {c.target: c.action for c in second} == {
        **{f"database {name}": "unchanged" for name in PLATFORM_DATABASES},
        "mysql user cube@%": "unchanged"}
    after = mariadb.write_counters()
    assert after == before, {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert before["Com_create_db"] >= 5 and before["Com_grant"] >= 5  # the counters do count


def test_custom_charset_and_collation(mariadb, mysql_context):
    ctx = mysql_context(databases=[{"name": "kubeflow", "charset": "utf8mb4",
                                    "collation": "utf8mb4_unicode_ci"}])
    stage.apply(ctx)
    assert schemata(mariadb)["kubeflow"] == ("utf8mb4", "utf8mb4_unicode_ci")


def test_existing_database_with_other_charset_is_reported_not_altered(mariadb, mysql_context):
    mariadb.query("CREATE DATABASE katib CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    ctx = mysql_context()

    changes = by_target(stage.apply(ctx))

    katib = changes["database katib"]
    assert katib.action == "skip"
    assert "latin1/latin1_swedish_ci" in katib.detail and "not altered" in katib.detail
    assert schemata(mariadb)["katib"] == ("latin1", "latin1_swedish_ci")
    warnings = [e["message"] for e in ctx.out.events if e["event"] == "warning"]
    assert any("database katib" in w and "utf8/utf8_general_ci" in w for w in warnings)
    assert changes["database kubeflow"].action == "create"


def test_plan_shows_statements_masks_password_and_changes_nothing(mariadb, mysql_context):
    mariadb.query("CREATE DATABASE metadb CHARACTER SET utf8 COLLATE utf8_general_ci")
    before = mariadb.write_counters()

    changes = by_target(stage.plan(mysql_context(app_user=app_user())))

    assert mariadb.write_counters() == before
    assert changes["database metadb"].action == "unchanged"
    assert changes["database kubeflow"].detail == (
        "CREATE DATABASE IF NOT EXISTS `kubeflow` DEFAULT CHARACTER SET 'utf8' "
        "DEFAULT COLLATE 'utf8_general_ci'")
    user = changes["mysql user cube@%"]
    assert user.action == "create"
    assert "CREATE USER IF NOT EXISTS 'cube'@'%' IDENTIFIED BY '****'" in user.detail
    assert "GRANT ALL PRIVILEGES ON `kubeflow`.* TO 'cube'@'%'" in user.detail
    assert APP_PASSWORD not in str(changes)
    assert "kubeflow" not in schemata(mariadb)


def test_app_user_reaches_only_the_platform_databases(mariadb, mysql_context):
    mariadb.query("CREATE DATABASE other")
    mariadb.query("CREATE DATABASE metaXdb")  # `_` would be a GRANT wildcard if unescaped
    ctx = mysql_context(app_user=app_user(), databases=[{"name": "kubeflow"},
                                                        {"name": "meta_db"}])
    stage.apply(ctx)

    with mariadb.connect("cube", APP_PASSWORD, "kubeflow") as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT)")  # ALL on its own database
        cursor.execute("SHOW DATABASES")
        visible = {name for (name,) in cursor.fetchall()}
    assert visible == {"information_schema", "kubeflow", "meta_db"}
    for forbidden in ("other", "metaXdb", "mysql"):
        with pytest.raises(pymysql.err.OperationalError) as denied:
            mariadb.connect("cube", APP_PASSWORD, forbidden)
        assert denied.value.args[0] == 1044, forbidden


def test_app_user_password_is_reset_only_when_it_no_longer_works(mariadb, mysql_context):
    stage.apply(mysql_context(app_user=app_user("first-password")))
    before = mariadb.write_counters()

    changes = by_target(stage.apply(mysql_context(app_user=app_user("second-password"))))

    user = changes["mysql user cube@%"]
    assert user.action == "update" and "password no longer works" in user.detail
    assert "second-password" not in user.detail and "****" in user.detail
    after = mariadb.write_counters()
    assert after["Com_alter_user"] == before["Com_alter_user"] + 1
    assert after["Com_grant"] == before["Com_grant"]  # grants were already right
    mariadb.connect("cube", "second-password", "kubeflow").close()


def test_missing_grant_is_added_and_extra_grant_reported(mariadb, mysql_context):
    stage.apply(mysql_context(app_user=app_user()))
    mariadb.query("REVOKE ALL PRIVILEGES ON `katib`.* FROM 'cube'@'%'")
    mariadb.query("CREATE DATABASE legacy")
    mariadb.query("GRANT SELECT ON `legacy`.* TO 'cube'@'%'")
    ctx = mysql_context(app_user=app_user())

    user = by_target(stage.apply(ctx))["mysql user cube@%"]

    assert user.action == "update"
    assert "missing grants on katib" in user.detail
    assert "not revoked" in user.detail and "legacy" in user.detail
    mariadb.connect("cube", APP_PASSWORD, "katib").close()
    assert any(e["event"] == "warning" and "not revoked" in e["message"] for e in ctx.out.events)


def test_access_denied_names_host_port_and_user_not_password(mariadb):
    from tests.servers.mariadb import context_for, site_for

    ctx = context_for(site_for(mariadb.host, mariadb.port, "wrong-Secret-123"))
    with pytest.raises(StageFailed) as failed:
        stage.apply(ctx)
    text = str(failed.value)
    assert f"MySQL at 127.0.0.1:{mariadb.port} denied access to user 'root'" in text
    assert "mysql.user and the password" in text  # what to do
    assert "wrong-Secret-123" not in text


def test_unreachable_after_deadline(mariadb):
    from tests.cluster.processes import free_port
    from tests.servers.mariadb import context_for, site_for

    port = free_port()  # nobody listens there
    ctx = context_for(site_for("127.0.0.1", port, "pw-never-shown", object_seconds=1.5))
    with pytest.raises(StageFailed) as failed:
        stage.apply(ctx)
    text = str(failed.value)
    assert f"MySQL at 127.0.0.1:{port} is unreachable for user 'root'" in text
    assert "Connection refused" in text and "timeouts.object_seconds" in text
    assert "pw-never-shown" not in text


def test_unknown_host_fails_at_once(mariadb):
    import time

    from tests.servers.mariadb import context_for, site_for

    ctx = context_for(site_for("no-such-host.invalid", 3306, "pw-never-shown", object_seconds=60))
    started = time.monotonic()
    with pytest.raises(StageFailed) as failed:
        stage.apply(ctx)
    assert time.monotonic() - started < 15  # not retried until the 60 s deadline
    text = str(failed.value)
    assert "MySQL host 'no-such-host.invalid' (port 3306, user 'root') cannot be resolved" in text
    assert "mysql.host" in text


def test_server_that_starts_late_is_waited_for(tmp_path):
    """Readiness: the stage retries with backoff until the server accepts connections."""
    import threading
    import time

    from tests.servers.mariadb import context_for, site_for, start_mariadb

    server = start_mariadb(tmp_path)  # set up its data dir and port, then stop it
    server.process.stop()
    ctx = context_for(site_for(server.host, server.port, server.root_password, object_seconds=60))
    outcome: dict = {}

    def run_stage() -> None:
        try:
            outcome["changes"] = stage.apply(ctx)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    # The stage waits in a thread; the server starts from this (main) thread, since
    # the fixture's processes die with the thread that started them.
    worker = threading.Thread(target=run_stage)
    worker.start()
    try:
        time.sleep(2)
        assert worker.is_alive(), outcome  # still waiting for the server, not failed
        server.process.start()
        worker.join(60)
    finally:
        server.process.stop()
    assert "error" not in outcome, outcome["error"]
    assert [c.action for c in outcome["changes"]] == ["create"] * 5
