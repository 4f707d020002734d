"""The needs on the stage registry are complete: `all` may run two stages at once only if
neither refers to what the other creates.

Whatever a stage's objects refer to -- the namespace they live in, a custom kind, the
service account, pull secret, ConfigMap, Secret or claim of a pod, a webhook that
intercepts them -- must come from the stage itself or from one of its prerequisites
(site.stages.prerequisites), never from a stage that could run beside it.
"""

from __future__ import annotations

import copy

import pytest

from cubeinstall.render.walk import pod_specs
from cubeinstall.run.schedule import Unit, run_units
from cubeinstall.site import stages as registry
from cubeinstall.site.loader import parse_site
from cubeinstall.stages.rendered import each_stage
from tests.helpers import EXAMPLE_SITE, example_site_data

import yaml


def _site_with_everything():
    """The example with every optional stage on (kube-batch, GPU nodes already there)."""
    data = copy.deepcopy(example_site_data())
    data.setdefault("components", {})["kube-batch"] = {"enabled": True}
    return parse_site(yaml.safe_dump(data), EXAMPLE_SITE)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _provided(objects_by_stage: dict[str, list[dict]]) -> dict[tuple, set[str]]:
    """(kind, namespace, name) or ("kind", group, kind) -> the stages that create it."""
    provided: dict[tuple, set[str]] = {}
    for stage, objects in objects_by_stage.items():
        for obj in objects:
            meta = obj["metadata"]
            provided.setdefault((obj["kind"], meta.get("namespace"), meta["name"]), set()).add(stage)
            if obj["kind"] == "CustomResourceDefinition":
                spec = obj["spec"]
                provided.setdefault(("kind", spec["group"], spec["names"]["kind"]), set()).add(stage)
    return provided


def _plurals(objects_by_stage: dict[str, list[dict]]) -> dict[tuple[str, str], str]:
    return {(obj["spec"]["group"], obj["spec"]["names"]["kind"]): obj["spec"]["names"]["plural"]
            for objects in objects_by_stage.values() for obj in objects
            if obj["kind"] == "CustomResourceDefinition"}


def _references(obj: dict) -> list[tuple]:
    """What must exist before ``obj`` works: its namespace, its kind, what its pods mount."""
    namespace = obj["metadata"].get("namespace")
    refs: list[tuple] = [("kind", _group(obj["apiVersion"]), obj["kind"])]
    if namespace:
        refs.append(("Namespace", None, namespace))
    for spec in pod_specs(obj):
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if account:
            refs.append(("ServiceAccount", namespace, account))
        refs += [("Secret", namespace, s["name"]) for s in spec.get("imagePullSecrets") or []]
        for volume in spec.get("volumes") or []:
            if "configMap" in volume:
                refs.append(("ConfigMap", namespace, volume["configMap"]["name"]))
            if "secret" in volume:
                refs.append(("Secret", namespace, volume["secret"]["secretName"]))
            if "persistentVolumeClaim" in volume:
                refs.append(("PersistentVolumeClaim", namespace,
                             volume["persistentVolumeClaim"]["claimName"]))
    return refs


def _intercepted_by(webhook_config: dict, obj: dict, plurals: dict) -> bool:
    group, kind = _group(obj["apiVersion"]), obj["kind"]
    plural = plurals.get((group, kind), kind.lower() + "s")
    return any(
        any(g in ("*", group) for g in rule.get("apiGroups") or [])
        and any(r in ("*", "*/*", plural) for r in rule.get("resources") or [])
        for hook in webhook_config.get("webhooks") or [] for rule in hook.get("rules") or [])


@pytest.fixture(scope="module")
def objects_by_stage(session_upstream_cache):
    site = _site_with_everything()
    rendered = dict(each_stage(site, []))
    failed = {name: objects for name, objects in rendered.items() if not isinstance(objects, list)}
    assert not failed, failed
    return rendered


def test_every_reference_comes_from_the_stage_or_a_prerequisite(objects_by_stage):
    provided = _provided(objects_by_stage)
    problems = []
    for stage, objects in objects_by_stage.items():
        allowed = registry.prerequisites(registry.get(stage)) | {stage}
        for obj in objects:
            for ref in _references(obj):
                providers = provided.get(ref, set())
                if providers and not providers & allowed:
                    problems.append(f"{stage}: {obj['kind']} {obj['metadata']['name']} needs "
                                    f"{ref} from {sorted(providers)}")
    assert not problems, "\n".join(problems)


def test_every_webhook_runs_before_what_it_intercepts(objects_by_stage):
    plurals = _plurals(objects_by_stage)
    problems = []
    for owner, objects in objects_by_stage.items():
        for config in (o for o in objects if o["kind"].endswith("WebhookConfiguration")):
            for stage, others in objects_by_stage.items():
                if stage == owner or owner in registry.prerequisites(registry.get(stage)):
                    continue
                caught = [o["kind"] for o in others if _intercepted_by(config, o, plurals)]
                if caught:
                    problems.append(f"{config['metadata']['name']} ({owner}) intercepts "
                                    f"{sorted(set(caught))} of {stage}, which may run beside it")
    assert not problems, "\n".join(problems)


def test_the_reference_check_catches_a_missing_need(objects_by_stage):
    """The check is not vacuous: without namespaces among its prerequisites, dashboard fails."""
    provided = _provided(objects_by_stage)
    dashboard = objects_by_stage["dashboard"]
    needs = {p for obj in dashboard for ref in _references(obj)
             for p in provided.get(ref, set())}
    assert "namespaces" in needs


def test_units_of_a_whole_run_respect_the_order():
    """The prerequisites only point backwards: the scheduler accepts every selection."""
    units = [Unit(stage.name, registry.prerequisites(stage), stage.holds)
             for stage in registry.STAGES]
    ran: list[str] = []
    outcome = run_units(units, lambda unit: ran.append(unit.name), limit=1)
    assert ran == list(registry.STAGE_NAMES) and not outcome.failed
