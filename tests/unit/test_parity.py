"""Parity with cube-studio v2026.03.01's own install (start.sh), read from ../shared/upstream.

Every object start.sh creates is rendered by cubeinstall for the example site under the
same kind, namespace and name, or docs/parity.md says why not (a row for the object, or for
the whole upstream file). For every workload both create, what the platform's containers
run and read (command, args, ports, mounts and their sources, service account, the node
labels it needs) is equal, or docs/parity.md lists the field with its reason. A row that no
longer describes a difference fails too, so the document stays true.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cubeinstall.site.loader import load_site
from cubeinstall.stages.rendered import all_objects
from cubeinstall.upstream.kinds import (
    cluster_scoped_kinds,
    containers,
    group_kind,
    pod_spec,
)
from tests.helpers import EXAMPLE_SITE, REPO
from tests.upstream_install import Created, start_sh_objects

PARITY_DOC = REPO / "docs" / "parity.md"
ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


@pytest.fixture(scope="module")
def upstream() -> dict[str, Created]:
    return {item.key: item for item in start_sh_objects()}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    result = {}
    for objects in all_objects(load_site(EXAMPLE_SITE)).values():
        scoped = cluster_scoped_kinds(objects)
        for obj in objects:
            meta = obj["metadata"]
            namespace = None if group_kind(obj) in scoped else meta.get("namespace", "default")
            result[Created(obj["kind"], namespace, meta["name"], "").key] = obj
    return result


@pytest.fixture(scope="module")
def documented() -> set[str]:
    return set(ROW_KEY.findall(PARITY_DOC.read_text()))


def missing_objects(upstream: dict[str, Created], rendered: dict[str, dict]) -> dict[str, Created]:
    return {key: item for key, item in upstream.items() if key not in rendered}


def test_every_start_sh_object_is_rendered_or_documented(upstream, rendered, documented):
    undocumented = sorted(f"{key}  (from {item.source})"
                          for key, item in missing_objects(upstream, rendered).items()
                          if key not in documented and item.source not in documented)
    assert not undocumented, ("start.sh creates these, cubeinstall does not render them, and "
                              "docs/parity.md does not say why:\n" + "\n".join(undocumented))


def test_every_object_row_of_the_parity_document_is_still_a_difference(upstream, rendered,
                                                                       documented):
    missing = missing_objects(upstream, rendered)
    sources = {item.source for item in missing.values()}
    stale = sorted(key for key in documented
                   if ":" not in key and key not in missing and key not in sources)
    assert not stale, "docs/parity.md lists objects that are no longer missing:\n" + "\n".join(stale)


def workload_facts(obj: dict) -> dict[str, object]:
    """What the platform's images run and read, by field name."""
    spec = pod_spec(obj) or {}
    facts: dict[str, object] = {
        "serviceAccountName": spec.get("serviceAccountName") or spec.get("serviceAccount")
        or "default",
        "node labels": sorted(required_node_labels(spec)),
    }
    volumes = {volume["name"]: volume_source(volume) for volume in spec.get("volumes") or []}
    for container in containers(spec):
        name = container["name"]
        facts[f"container {name} command"] = container.get("command")
        facts[f"container {name} args"] = container.get("args")
        facts[f"container {name} ports"] = sorted(
            port["containerPort"] for port in container.get("ports") or [])
        facts[f"container {name} mounts"] = sorted(
            (mount["mountPath"], volumes.get(mount["name"], "?"), mount.get("subPath", ""))
            for mount in container.get("volumeMounts") or [])
    return facts


def volume_source(volume: dict) -> str:
    for kind, field_name in (("configMap", "name"), ("secret", "secretName"),
                             ("persistentVolumeClaim", "claimName"), ("hostPath", "path")):
        if kind in volume:
            items = sorted(item["key"] for item in volume[kind].get("items") or [])
            keys = f" keys {','.join(items)}" if items else ""
            return f"{kind} {volume[kind].get(field_name)}{keys}"
    return next((kind for kind in volume if kind != "name"), "?")


def required_node_labels(spec: dict) -> set[str]:
    labels = set(spec.get("nodeSelector") or {})
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        labels.update(expression["key"] for expression in term.get("matchExpressions") or [])
    return labels


def field_differences(upstream: dict[str, Created], rendered: dict[str, dict]) -> dict[str, str]:
    """'<object key>: <field>' -> 'upstream X, cubeinstall Y' for workloads both create."""
    differences = {}
    for key, item in upstream.items():
        if key not in rendered or pod_spec(item.obj) is None:
            continue
        theirs, ours = workload_facts(item.obj), workload_facts(rendered[key])
        for name in sorted(set(theirs) | set(ours)):
            if theirs.get(name) != ours.get(name):
                differences[f"{key}: {name}"] = (f"upstream {theirs.get(name)!r}, "
                                                 f"cubeinstall {ours.get(name)!r}")
    return differences


def test_the_platforms_workloads_run_and_read_what_upstream_gives_them(upstream, rendered,
                                                                       documented):
    differences = field_differences(upstream, rendered)
    undocumented = sorted(f"{key}: {what}" for key, what in differences.items()
                          if key not in documented)
    assert not undocumented, ("these workload fields differ from start.sh's and docs/parity.md "
                              "does not say why:\n" + "\n".join(undocumented))


def test_every_field_row_of_the_parity_document_is_still_a_difference(upstream, rendered,
                                                                      documented):
    differences = field_differences(upstream, rendered)
    stale = sorted(key for key in documented if ": " in key and key not in differences)
    assert not stale, "docs/parity.md lists fields that no longer differ:\n" + "\n".join(stale)


def test_the_interpreter_sees_what_start_sh_creates():
    """The test's own reading of start.sh: a few objects every site of it has."""
    keys = {item.key for item in start_sh_objects()}
    assert {"Namespace aihub", "Secret infra/hubsecret", "ConfigMap infra/kubeflow-dashboard-config",
            "Deployment infra/kubeflow-dashboard", "ConfigMap monitoring/all-grafana-dashboards",
            "ConfigMap automl/kubernetes-config", "PersistentVolume infra-kubeflow"} <= keys
    assert Path(PARITY_DOC).is_file()
