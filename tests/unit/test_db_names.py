"""Identifiers are validated before any SQL exists; values only ever travel as parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.db import names
from cubeinstall.db.databases import (
    create_database,
    create_user,
    grant_all,
    set_password,
)
from cubeinstall.db.statement import Statement
from cubeinstall.site.model import AppUser, Database
from cubeinstall.site.secrets import Secret

INJECTIONS = [
    "kubeflow`; DROP DATABASE mysql; --",
    "kubeflow; DROP TABLE x",
    "x' OR '1'='1",
    'x" --',
    "a b",
    "db.name",
    "kubeflow\n",
    "kubeflow\x00",
    "k\u00fcbeflow",
    "",
    "a" * 65,
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_identifier_rejects_injection(name):
    with pytest.raises(ConfigError) as rejected:
        names.quoted(name, "table name")
    assert "invalid table name" in str(rejected.value)
    assert "nothing was sent to the server" in str(rejected.value)


@pytest.mark.parametrize("name", ["kubeflow", "mlpipeline", "job_template", "A1_b2", "x" * 64])
def test_identifier_accepts_plain_names(name):
    assert names.quoted(name, "table") == f"`{name}`"


@pytest.mark.parametrize("name", ["cube'@'%", "cube`", "root --", "a" * 33, ""])
def test_account_name_rejects_injection(name):
    with pytest.raises(ConfigError):
        names.account_name(name)


@pytest.mark.parametrize("value", ["utf8 COLLATE x", "utf8'; DROP", "UTF8", "utf-8"])
def test_charset_name_rejects_anything_but_plain_names(value):
    with pytest.raises(ConfigError):
        names.charset_name(value, "charset")


def test_engine_validates_even_when_the_model_was_bypassed():
    bad = Database.model_construct(name="kubeflow`; DROP DATABASE mysql; --",
                                   charset="utf8", collation="utf8_general_ci")
    with pytest.raises(ConfigError):
        create_database(bad)
    with pytest.raises(ConfigError):
        grant_all("kubeflow", "cube'@'%")
    with pytest.raises(ConfigError):
        create_database(Database.model_construct(name="ok", charset="utf8; DROP",
                                                 collation="utf8_general_ci"))


@pytest.mark.parametrize("field,value", [
    ("databases", [{"name": "kubeflow`; DROP DATABASE mysql; --"}]),
    ("databases", [{"name": "kubeflow", "charset": "utf8 COLLATE x"}]),
    ("app_user", {"name": "cube'@'%", "password": "pw-123"}),
])
def test_site_file_rejects_injected_names_with_position(field, value, tmp_path):
    import yaml

    from cubeinstall.site.loader import parse_site

    site = {"site": "t", "domain": "cube.example.com", "storage": {"type": "local"},
            "nodes": [{"name": "n1", "address": "10.0.0.1",
                       "roles": ["cpu", "redis", "mysql", "istio", "kubeflow", "monitoring",
                                 "logging", "kubeflow-dashboard"]}],
            "gateway": {"expose": "NodePort"}, "redis": {"password": "redis-pw-123"},
            "mysql": {"password": "mysql-pw-123", field: value}}
    with pytest.raises(ConfigError) as rejected:
        parse_site(yaml.safe_dump(site, sort_keys=False), Path("site.yaml"))
    assert f"mysql.{field}" in str(rejected.value)


def test_grant_escapes_the_underscore_wildcard():
    assert grant_all("meta_db", "cube").sql == r"GRANT ALL PRIVILEGES ON `meta\_db`.* TO %s@%s"


def test_statements_put_values_in_parameters_and_mask_passwords():
    password = Secret("s3cret'); DROP USER root; --", "test")
    user = AppUser(name="cube", password=password)
    for statement in (create_user(user), set_password(user)):
        assert "s3cret" not in statement.sql and "%s" in statement.sql
        assert statement.args()[-1] == password.reveal()
        assert statement.display().endswith("IDENTIFIED BY '****'")
        assert "s3cret" not in statement.display()
    create = create_database(Database(name="kubeflow"))
    assert create.sql == ("CREATE DATABASE IF NOT EXISTS `kubeflow` "
                          "DEFAULT CHARACTER SET %s DEFAULT COLLATE %s")
    assert create.args() == ("utf8", "utf8_general_ci")


def test_display_escapes_quotes_in_values():
    shown = Statement("SELECT %s", ("it's",)).display()
    assert shown == "SELECT 'it\\'s'"


@pytest.mark.parametrize("a,b,same", [
    ("utf8", "utf8mb3", True), ("UTF8MB3", "utf8", True), ("utf8mb4", "utf8", False),
    ("latin1", "latin1", True)])
def test_charsets_compare_by_meaning(a, b, same):
    assert names.same_charset(a, b) is same


@pytest.mark.parametrize("a,b,same", [
    ("utf8_general_ci", "utf8mb3_general_ci", True),
    ("utf8_general_ci", "utf8mb4_general_ci", False),
    ("utf8mb4_unicode_ci", "utf8mb4_unicode_ci", True),
    ("utf8_general_ci", "utf8_bin", False)])
def test_collations_compare_by_meaning(a, b, same):
    assert names.same_collation(a, b) is same
