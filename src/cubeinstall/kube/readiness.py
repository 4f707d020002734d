"""Is an object ready? Pure per-kind functions: live object -> Readiness.

``done`` means stop waiting; ``ok`` says whether it ended well. A function
returns done-and-not-ok as soon as the object says it failed (a Job past its
backoff limit, a Deployment past its progress deadline, a CRD whose names
clash), so the engine fails fast instead of sleeping out the timeout. The
rules follow ``kubectl rollout status``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cubeinstall.kube.objects import api_group


@dataclass(frozen=True)
class Readiness:
    done: bool
    ok: bool
    message: str = ""


READY = Readiness(True, True)


def waiting(message: str) -> Readiness:
    return Readiness(False, False, message)


def failed(message: str) -> Readiness:
    return Readiness(True, False, message)


def condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _is_true(obj: dict, kind: str) -> bool:
    cond = condition(obj, kind)
    return cond is not None and cond.get("status") == "True"


def _generation_observed(obj: dict) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return generation is None or (observed is not None and observed >= generation)


def _replicas(obj: dict) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def deployment(obj: dict) -> Readiness:
    if not _generation_observed(obj):
        return waiting("waiting for the deployment controller to see the new spec")
    progressing = condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return failed(f"rollout exceeded its progress deadline: {progressing.get('message', '')}")
    status = obj.get("status") or {}
    want = _replicas(obj)
    updated = status.get("updatedReplicas") or 0
    current = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < want:
        return waiting(f"{updated}/{want} replicas updated")
    if current > updated:
        return waiting(f"{current - updated} old replicas pending termination")
    if available < updated:
        return waiting(f"{available}/{want} replicas available")
    return READY


def statefulset(obj: dict) -> Readiness:
    if not _generation_observed(obj):
        return waiting("waiting for the statefulset controller to see the new spec")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type") == "OnDelete":
        return READY
    want = _replicas(obj)
    ready = status.get("readyReplicas") or 0
    if ready < want:
        return waiting(f"{ready}/{want} replicas ready")
    partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition")
    if partition:
        updated = status.get("updatedReplicas") or 0
        if updated < want - partition:
            return waiting(f"{updated}/{want - partition} replicas updated")
        return READY
    if status.get("updateRevision") != status.get("currentRevision"):
        return waiting(f"{status.get('updatedReplicas') or 0}/{want} replicas updated")
    return READY


def daemonset(obj: dict) -> Readiness:
    if not _generation_observed(obj):
        return waiting("waiting for the daemonset controller to see the new spec")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type") == "OnDelete":
        return READY
    want = status.get("desiredNumberScheduled") or 0
    updated = status.get("updatedNumberScheduled") or 0
    available = status.get("numberAvailable") or 0
    if updated < want:
        return waiting(f"{updated}/{want} pods updated")
    if available < want:
        return waiting(f"{available}/{want} pods available")
    return READY


def replicaset(obj: dict) -> Readiness:
    if not _generation_observed(obj):
        return waiting("waiting for the controller to see the new spec")
    want = _replicas(obj)
    available = (obj.get("status") or {}).get("availableReplicas") or 0
    return READY if available >= want else waiting(f"{available}/{want} replicas available")


def job(obj: dict) -> Readiness:
    if _is_true(obj, "Complete"):
        return READY
    failure = condition(obj, "Failed")
    if failure and failure.get("status") == "True":
        return failed(f"job failed: {failure.get('reason', '')}: {failure.get('message', '')}")
    if (obj.get("spec") or {}).get("suspend"):
        return Readiness(True, True, "suspended")
    status = obj.get("status") or {}
    return waiting(f"{status.get('active') or 0} running, {status.get('succeeded') or 0} "
                   f"succeeded, {status.get('failed') or 0} failed")


def pod(obj: dict) -> Readiness:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Succeeded" or (phase == "Running" and _is_true(obj, "Ready")):
        return READY
    if phase == "Failed":
        return failed(f"pod failed: {(obj.get('status') or {}).get('message', '')}")
    return waiting(f"pod is {phase or 'Pending'}")


def pvc(obj: dict) -> Readiness:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Bound":
        return READY
    if phase == "Lost":
        return failed("claim lost its volume")
    return waiting(f"claim is {phase or 'Pending'}")


def crd(obj: dict) -> Readiness:
    names = condition(obj, "NamesAccepted")
    if names and names.get("status") == "False":
        return failed(f"names not accepted: {names.get('message', '')}")
    if _is_true(obj, "Established") and _is_true(obj, "NamesAccepted"):
        return READY
    return waiting("waiting for Established and NamesAccepted")


def apiservice(obj: dict) -> Readiness:
    if _is_true(obj, "Available"):
        return READY
    available = condition(obj, "Available") or {}
    return waiting(f"not available: {available.get('reason', '')} {available.get('message', '')}"
                   .rstrip())


def namespace(obj: dict) -> Readiness:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Terminating":
        return waiting("namespace is still terminating")
    return READY


CHECKS: dict[tuple[str, str], Callable[[dict], Readiness]] = {
    ("apps", "Deployment"): deployment,
    ("apps", "StatefulSet"): statefulset,
    ("apps", "DaemonSet"): daemonset,
    ("apps", "ReplicaSet"): replicaset,
    ("batch", "Job"): job,
    ("", "Pod"): pod,
    ("", "PersistentVolumeClaim"): pvc,
    ("", "Namespace"): namespace,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd,
    ("apiregistration.k8s.io", "APIService"): apiservice,
}


def has_gate(obj: dict) -> bool:
    return (api_group(obj.get("apiVersion", "")), obj.get("kind", "")) in CHECKS


def readiness(obj: dict) -> Readiness:
    check = CHECKS.get((api_group(obj.get("apiVersion", "")), obj.get("kind", "")))
    return check(obj) if check else READY
