"""The shipped back-fill list and the rules that pick its entries."""

from __future__ import annotations

import pytest
import yaml

from cubeinstall.core.errors import ConfigError
from cubeinstall.db.backfill import BackfillEntry, applies, load_backfills


def test_shipped_list_is_valid_ordered_and_has_project_expand():
    entries = load_backfills()
    assert len(entries) >= 5
    assert [e.version for e in entries] == sorted(e.version for e in entries)
    assert len({e.target for e in entries}) == len(entries), "an entry is listed twice"
    project = [e for e in entries if e.target == "kubeflow.project.expand"]
    assert project and project[0].default == "{}"
    assert all(e.note for e in entries), "every shipped entry says why"


def test_shipped_list_is_package_data():
    from importlib import resources

    assert resources.files("cubeinstall").joinpath("data", "backfills.yaml").is_file()


@pytest.mark.parametrize("field,value", [
    ("table", "project; DROP TABLE user"),
    ("column", "expand` = 1, `name"),
    ("database", "kubeflow`.`x"),
    ("version", "next"),
])
def test_list_with_injected_or_bad_fields_is_rejected(field, value, tmp_path):
    entry = {"version": "2022.03.01", "database": "kubeflow", "table": "project",
             "column": "expand", "default": "{}", field: value}
    path = tmp_path / "backfills.yaml"
    path.write_text(yaml.safe_dump({"backfills": [entry]}))
    with pytest.raises(ConfigError) as rejected:
        load_backfills(path)
    assert f"backfills[0].{field}" in str(rejected.value)


def test_typed_defaults_are_kept():
    path_text = yaml.safe_dump({"backfills": [
        {"version": "2022.08.01", "database": "kubeflow", "table": "docker",
         "column": "need_gpu", "default": False},
        {"version": "2022.08.01", "database": "kubeflow", "table": "docker",
         "column": "expand", "default": "{}"}]})
    entries = [BackfillEntry.model_validate(item) for item in yaml.safe_load(path_text)["backfills"]]
    assert entries[0].default is False and entries[1].default == "{}"


ENTRY = BackfillEntry(version="2023.03.01", database="kubeflow", table="service",
                      column="expand", default="{}")


@pytest.mark.parametrize("target,expected", [
    ("2023.03.01", True), ("2026.03.01", True), ("2022.10.01", False),
    ("latest", True), (None, True)])
def test_entries_apply_up_to_the_installed_release(target, expected):
    assert applies(ENTRY, target) is expected
