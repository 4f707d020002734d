"""The stage contract: every stage loads, defaults are filled once, a wrong shape fails at load."""

from __future__ import annotations

import sys
import types

import pytest

from cubeinstall.core.change import Change
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import load_site
from cubeinstall.site.stages import Layer, Stage
from cubeinstall.stages import contract, load
from tests.helpers import EXAMPLE_SITE


@pytest.mark.parametrize("stage", registry.STAGES, ids=registry.STAGE_NAMES)
def test_every_stage_loads_with_every_contract_function(stage):
    code = load(stage)
    assert code.stage is stage and code.module == f"cubeinstall.stages.{stage.module}"
    for name in ("describe", "check", "verify", "remove"):
        assert callable(getattr(code, name))
    # an object stage is planned by the engine; a code stage brings both halves
    assert code.renders_objects != (code.plan_code is not None and code.apply_code is not None)


def test_object_stages_render_once_per_call_and_code_stages_have_no_objects():
    site = load_site(EXAMPLE_SITE)
    assert load(registry.get("redis")).objects(site)
    assert load(registry.get("databases")).objects(site) is None
    assert load(registry.get("node-prep")).objects(site) is None


def fake_stage(monkeypatch, name: str, **functions) -> Stage:
    module = types.ModuleType(f"cubeinstall.stages.{name}")
    for function_name, function in functions.items():
        function.__module__ = module.__name__
        setattr(module, function_name, function)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return Stage(name, "a test stage", Layer.CLUSTER, name)


def render(site):
    return []


def plan(ctx):
    return []


def apply(ctx):
    return []


@pytest.mark.parametrize("functions, problem", [
    ({"render": render, "plan": plan, "apply": apply}, "declares render and plan/apply"),
    ({"plan": plan}, "declares neither render nor both plan and apply"),
    ({"render": render, "veryfy": lambda ctx: []}, "did you mean 'verify'?"),
    ({"plan": plan, "aply": apply}, "did you mean 'apply'?"),
    ({"render": lambda site, extra: []}, "render(site, extra) should be render(site)"),
    ({"render": render, "remove": lambda ctx, purge: []},
     "remove(ctx, purge) should be remove(ctx, purge, restore_node_files)"),
], ids=["both", "neither", "misspelled-verify", "misspelled-apply", "render-params", "remove-params"])
def test_a_wrong_shape_fails_at_load_naming_the_module(monkeypatch, functions, problem):
    name = f"shape_{abs(hash(problem))}"
    with pytest.raises(contract.StageShapeError) as failure:
        load(fake_stage(monkeypatch, name, **functions))
    assert failure.value.message.startswith(f"stage module cubeinstall.stages.{name}: ")
    assert problem in failure.value.message


def test_defaults_are_filled_from_the_layer(monkeypatch):
    stage = fake_stage(monkeypatch, "defaults_only", render=lambda site: [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "infra"}}])
    code = load(stage)
    site = load_site(EXAMPLE_SITE)
    assert code.describe(site) == [Change("ConfigMap infra/c", "create",
                                          "offline plan: not compared with a cluster")]
    assert code.check(None) == [] and code.verify(None) == []
    node = Stage("node_default", "a node stage", Layer.NODE, "node_default")
    fake_stage(monkeypatch, "node_default", plan=plan, apply=apply)
    [kept] = load(node).remove(None, True, False)
    assert kept.action == "skip" and "node changes kept" in kept.detail
