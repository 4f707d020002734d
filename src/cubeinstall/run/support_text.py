"""The text of a support bundle: a failed stage's cluster state, readable with less.

Pure: the collected state (kube/support.py) in, plain text out. Objects lose
managedFields and the last-applied annotation (a whole copy of the object,
Secret data included); a Secret shows its name and keys, never its values; a
spec longer than a screenful is summarised. The writer redacts the whole text
on top of that (support_bundle.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cubeinstall.core.yamlio import dump_documents
from cubeinstall.kube.diagnose import (
    BUNDLE_LOG_LINES,
    container_statuses,
    event_order,
    event_time,
    tail,
)
from cubeinstall.kube.objects import api_group, target

if TYPE_CHECKING:
    from cubeinstall.kube.support import ClusterState, ContainerLog

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_SPEC_LINES = 400  # a workload's spec is whole; a CRD's schema is not


def section(title: str, lines: list[str] | str) -> str:
    body = lines if isinstance(lines, str) else "\n".join(lines)
    return f"== {title}\n{body.rstrip()}\n"


def describe(obj: dict) -> dict:
    """What the bundle shows of an object: no managedFields, no Secret values."""
    meta = {key: value for key, value in (obj.get("metadata") or {}).items()
            if key != "managedFields"}
    if LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
        if not meta["annotations"]:
            del meta["annotations"]
    shown = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}
    if (api_group(obj.get("apiVersion", "")), obj.get("kind")) == ("", "Secret"):
        shown["type"] = obj.get("type")
        shown["keys (values left out)"] = sorted({*(obj.get("data") or {}),
                                                  *(obj.get("stringData") or {})})
        return shown
    for key, value in obj.items():
        shown.setdefault(key, value)
    spec = shown.get("spec")
    if isinstance(spec, dict):
        length = dump_documents([spec]).count("\n")
        if length > MAX_SPEC_LINES:
            fields = ", ".join(sorted(spec))
            shown["spec"] = {"(summary)": f"{length} lines left out; fields: {fields}"}
    return shown


def object_entry(obj: dict, why: str) -> str:
    return f"--- {target(obj)}: {why}\n{dump_documents([describe(obj)]).rstrip()}"


def pod_entry(pod: dict) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    owners = ", ".join(f"{o.get('kind')} {o.get('name')}"
                       for o in meta.get("ownerReferences") or [])
    lines = [f"--- Pod {meta.get('namespace')}/{meta.get('name')}: phase {status.get('phase', '?')}"
             f", node {spec.get('nodeName') or '(none)'}"
             + (f", owned by {owners}" if owners else "")]
    if status.get("reason") or status.get("message"):
        lines.append(f"  {status.get('reason', '')}: {status.get('message', '')}")
    lines.append("  conditions:")
    for cond in status.get("conditions") or []:
        why = ": ".join(filter(None, (cond.get("reason"), cond.get("message"))))
        lines.append(f"    {cond.get('type')}={cond.get('status')}" + (f"  {why}" if why else ""))
    lines.append("  containers:")
    statuses = {s.get("name"): s for s in container_statuses(pod)}
    for kind, items in (("init ", spec.get("initContainers") or []),
                        ("", spec.get("containers") or [])):
        for container in items:
            lines.append(f"    {kind}{container.get('name')} ({container.get('image')}): "
                         + container_state(statuses.get(container.get("name"))))
    return "\n".join(lines)


def container_state(status: dict | None) -> str:
    if not status:
        return "no status yet"
    ready = "true" if status.get("ready") else "false"
    text = (f"{_state(status.get('state') or {})}, ready={ready}, "
            f"restarts={status.get('restartCount', 0)}")
    last = status.get("lastState") or {}
    return text + (f"; last: {_state(last)}" if last else "")


def _state(state: dict) -> str:
    for name, detail in state.items():
        detail = detail or {}
        if name == "running":
            return f"running since {detail.get('startedAt', '?')}"
        if name == "terminated":
            at = f", at {detail['finishedAt']}" if detail.get("finishedAt") else ""
            return (f"terminated ({detail.get('reason', '')}, exit code {detail.get('exitCode')}"
                    f"{at})" + _message(detail))
        return f"{name} ({detail.get('reason', '')})" + _message(detail)
    return "unknown state"


def _message(detail: dict) -> str:
    return f": {detail['message']}" if detail.get("message") else ""


def log_entry(log: ContainerLog) -> str:
    which = "previous" if log.previous else "current"
    where = f"pod {log.pod}" + (f" container {log.container} ({which})" if log.container else "")
    if log.text is None:
        return f"--- {where}: no log: {log.missing}"
    return f"--- {where}, last {BUNDLE_LOG_LINES} lines:\n{tail(log.text, BUNDLE_LOG_LINES)}"


def events_table(events: list[dict]) -> list[str]:
    rows = [("LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE")]
    for event in sorted(events, key=event_order):
        involved = event.get("involvedObject") or event.get("regarding") or {}
        where = "/".join(filter(None, (involved.get("namespace"), involved.get("name"))))
        count = event.get("count") or (event.get("series") or {}).get("count") or 1
        message = " ".join(str(event.get("message") or event.get("note") or "").split())
        rows.append((event_time(event), event.get("type", ""), event.get("reason", ""),
                     f"{involved.get('kind', '')} {where}", str(count), message))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
            for row in rows]


def cluster_sections(state: ClusterState) -> list[str]:
    """The bundle's cluster part, most telling first."""
    sections = [section("cluster", f"API server: {state.server}")]
    if state.missing:
        sections.append(section("could not be collected", [f"- {line}" for line in state.missing]))
    sections.append(section(f"objects of the stage that are not ready ({len(state.not_ready)})",
                            [object_entry(obj, why) for obj, why in state.not_ready] or ["(none)"]))
    if state.absent:
        sections.append(section("rendered but not in the cluster",
                                [f"- {t}" for t in state.absent]))
    if state.ready:
        sections.append(section("ready objects of the stage", [f"- {t}" for t in state.ready]))
    sections.append(section(f"pods ({len(state.pods)}: of the objects above, and every pod not "
                            "Ready in the stage's namespaces)",
                            [pod_entry(pod) for pod in state.pods] or ["(none)"]))
    sections.append(section("container logs", [log_entry(log) for log in state.logs] or ["(none)"]))
    sections.append(section(f"events of the stage's namespaces and objects ({len(state.events)}, "
                            "oldest first)",
                            events_table(state.events) if state.events else ["(none)"]))
    return sections
