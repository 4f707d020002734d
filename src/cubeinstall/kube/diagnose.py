"""Why is an object not ready? Events and pod states -> a message that says what to do.

Pure: the engine gathers the object, its pods, the namespace's events and
the last log lines of crashing containers, and this module turns them into
one ``Diagnosis`` naming the object, the cause and the fix, e.g.

    Deployment infra/mysql: 0/3 nodes match node selector mysql=true
      hint: label a node with role mysql in site.yaml (nodes[].roles)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cubeinstall.kube.objects import target
from cubeinstall.site.model import ROLE_KINDS, ROLE_PLACEMENTS, ROLE_WORKLOADS

ROLE_LABELS = frozenset((*ROLE_KINDS, *ROLE_WORKLOADS, *ROLE_PLACEMENTS))
PULL_FAILURES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
LOG_LINES = 10  # of a crashed container, quoted in the stage's error
BUNDLE_LOG_LINES = 50  # of every container, fetched (kube/support.py) into the support bundle


@dataclass(frozen=True)
class Diagnosis:
    message: str
    hint: str | None = None


def image_registry(image: str) -> str:
    """The registry host of an image reference (docker.io when none is written)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def selector_fix(selector: dict[str, str]) -> str:
    fixes = []
    for key, value in sorted(selector.items()):
        if key in ROLE_LABELS and value == "true":
            fixes.append(f"label a node with role {key} in site.yaml (nodes[].roles)")
        elif key == "org":
            fixes.append(f"set org: {value} on a node in site.yaml")
        else:
            fixes.append(f"add label {key}={value} to a node (nodes[].labels in site.yaml)")
    return "; ".join(fixes) or "check the pods' node affinity against the nodes' labels"


def _scheduling(pod: dict) -> Diagnosis | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return scheduling_problem(cond.get("message") or cond.get("reason") or "", pod)
    return None


def scheduling_problem(message: str, pod: dict) -> Diagnosis:
    """Turn the scheduler's "0/3 nodes are available: ..." into cause and fix."""
    spec = pod.get("spec") or {}
    counts = re.match(r"\s*(\d+)/(\d+) nodes are available", message)
    total = counts.group(2) if counts else "?"
    if "didn't match Pod's node affinity/selector" in message:
        selector = spec.get("nodeSelector") or {}
        if selector:
            text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            return Diagnosis(f"0/{total} nodes match node selector {text}", selector_fix(selector))
        return Diagnosis(f"0/{total} nodes match the pods' node affinity",
                         "check spec.affinity.nodeAffinity against the nodes' labels")
    insufficient = sorted(set(re.findall(r"Insufficient ([\w./-]+)", message)))
    if insufficient:
        return Diagnosis(f"not enough {', '.join(insufficient)} free on any of {total} nodes",
                         "lower the resource requests or add nodes with more capacity")
    if "Too many pods" in message:
        return Diagnosis(f"all {total} nodes hold their maximum number of pods",
                         "add nodes, or raise the kubelet's maxPods")
    taints = re.findall(r"untolerated taint\(?s?\)? ?(\{[^}]*\})", message)
    if taints or "untolerated taint" in message:
        return Diagnosis(f"nodes have taints the pods do not tolerate {' '.join(sorted(set(taints)))}"
                         .rstrip(), "remove the taint from the nodes or add a toleration")
    claim = re.search(r'persistentvolumeclaim "([^"]+)" not found', message)
    if claim or "unbound immediate PersistentVolumeClaims" in message:
        name = f" {claim.group(1)}" if claim else ""
        return Diagnosis(f"volume claim{name} is missing or not bound",
                         "check the PersistentVolume/PersistentVolumeClaim (stage pv-pvc)")
    if "were unschedulable" in message:
        return Diagnosis(f"nodes are cordoned: {message}", "uncordon the nodes (kubectl uncordon)")
    return Diagnosis(f"pods cannot be scheduled: {message}")


def _container_image(pod: dict, container: str) -> str:
    spec = pod.get("spec") or {}
    for item in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if item.get("name") == container:
            return item.get("image", "")
    return ""


def container_statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def _crashed(state: dict) -> dict | None:
    terminated = state.get("terminated") or {}
    return terminated if terminated and terminated.get("exitCode", 0) != 0 else None


def containers_needing_logs(pods: list[dict]) -> list[tuple[str, str, bool]]:
    """(pod, container, previous) whose last log lines explain a crash."""
    wanted = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        for status in container_statuses(pod):
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                wanted.append((name, status.get("name", ""), True))
            elif _crashed(status.get("state") or {}):
                wanted.append((name, status.get("name", ""), False))
    return wanted


def tail(text: str, count: int = LOG_LINES) -> str:
    """The last ``count`` non-blank lines of a log, indented and marked as quoted."""
    lines = [line for line in text.splitlines() if line.strip()][-count:]
    return "\n".join(f"    | {line}" for line in lines) if lines else "    (no log output)"


def _container_problem(pod: dict, logs: dict[tuple[str, str], str]) -> Diagnosis | None:
    pod_name = (pod.get("metadata") or {}).get("name", "")
    for status in container_statuses(pod):
        container = status.get("name", "")
        state = status.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in PULL_FAILURES:
            image = _container_image(pod, container) or status.get("image", "")
            registry = image_registry(image)
            why = f"{reason}: {waiting['message']}" if waiting.get("message") else reason
            return Diagnosis(
                f"pod {pod_name} cannot pull image {image} from registry {registry} ({why})",
                f"mirror the image into the site registry (stage images) or check that "
                f"{registry} is reachable from the nodes and the pull secret is right")
        crash = _crashed(status.get("lastState") or {}) if reason == "CrashLoopBackOff" \
            else _crashed(state)
        if crash is not None:
            log = logs.get((pod_name, container), "")
            return Diagnosis(
                f"container {container} of pod {pod_name} "
                f"{'keeps crashing' if reason == 'CrashLoopBackOff' else 'failed'} "
                f"(exit code {crash.get('exitCode')}, {crash.get('reason', 'Error')}, "
                f"{status.get('restartCount', 0)} restarts); last log lines:\n{tail(log)}",
                f"fix the cause in the log; kubectl logs -n {pod.get('metadata', {}).get('namespace')}"
                f" {pod_name} -c {container} --previous shows more")
        if reason and reason not in ("ContainerCreating", "PodInitializing"):
            return Diagnosis(f"container {container} of pod {pod_name} is waiting: {reason}: "
                             f"{waiting.get('message', '')}".rstrip(": "),
                             "create the missing ConfigMap or Secret (rendered by an earlier "
                             "stage)" if reason == "CreateContainerConfigError" else None)
    return None


def _warning_events(events: list[dict], names: set[str]) -> list[str]:
    seen: dict[str, None] = {}
    ordered = sorted(events, key=event_order)
    for event in ordered:
        involved = (event.get("involvedObject") or {}).get("name")
        if event.get("type") == "Warning" and involved in names:
            seen[f"{event.get('reason', '')}: {event.get('message', '')}"] = None
    return list(seen)[-3:]


def diagnose(obj: dict, readiness_message: str, pods: list[dict], events: list[dict],
             logs: dict[tuple[str, str], str] | None = None,
             owned_names: set[str] | None = None) -> Diagnosis:
    """The best explanation for ``obj`` not being ready, naming it first.

    ``owned_names`` are the names of its ReplicaSets/Jobs, whose events
    (FailedCreate: quota, admission) explain a workload with no pods at all.
    """
    name = target(obj)
    logs = logs or {}
    unhealthy = [pod for pod in pods if not pod_ready(pod)]
    for finder in (_container_problem_any, _scheduling_any):
        found = finder(unhealthy, logs)
        if found:
            return Diagnosis(f"{name}: {found.message}", found.hint)
    names = {(obj.get("metadata") or {}).get("name", ""), *(owned_names or set()),
             *((p.get("metadata") or {}).get("name", "") for p in pods)}
    warnings = _warning_events(events, names)
    detail = f"; events: {' | '.join(warnings)}" if warnings else ""
    return Diagnosis(f"{name}: {readiness_message or 'not ready'}{detail}")


def event_time(event: dict) -> str:
    """When an event last happened (RFC 3339; core v1 events fill different fields
    depending on the API that recorded them)."""
    series = event.get("series") or {}
    return (event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
            or event.get("firstTimestamp") or (event.get("metadata") or {}).get("creationTimestamp")
            or "")


def event_order(event: dict) -> str:
    """Sort key of events: their time to the second (the fields differ in precision;
    a stable sort keeps the server's order within a second)."""
    return event_time(event)[:19]


def pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _container_problem_any(pods: list[dict], logs) -> Diagnosis | None:
    return next(filter(None, (_container_problem(pod, logs) for pod in pods)), None)


def _scheduling_any(pods: list[dict], logs) -> Diagnosis | None:
    return next(filter(None, (_scheduling(pod) for pod in pods)), None)
