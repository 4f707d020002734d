"""Error classes: what is retried, what fails fast, and what an unserved API says."""

import time

import pytest

from cubeinstall.kube.errors import Conflict, Unreachable, from_status
from cubeinstall.kube.retry import call_with_retry, is_transient, unserved_message


def status(code, reason, message, details=None):
    import json
    return from_status(code, json.dumps({"kind": "Status", "reason": reason, "message": message,
                                         "details": details or {}}), "ConfigMap n/c")


@pytest.mark.parametrize("error, transient", [
    (Unreachable("connection refused"), True),
    (status(429, "TooManyRequests", "slow down"), True),
    (status(503, "ServiceUnavailable", "the server is currently unable to handle the request"), True),
    (status(500, "InternalError", 'Internal error occurred: failed calling webhook "v.example.com":'
                                  ' dial tcp 127.0.0.1:9443: connect: connection refused'), True),
    (status(409, "Conflict", "Operation cannot be fulfilled: the object has been modified"), True),
    (status(409, "Conflict", 'Apply failed with 1 conflict: conflict with "helm" using v1: .data.a',
            {"causes": [{"type": "FieldManagerConflict"}]}), False),
    (status(403, "Forbidden", "unable to create new content in namespace x because it is being "
                              "terminated"), True),
    (status(403, "Forbidden", 'user "bob" cannot patch resource "configmaps"'), False),
    (status(404, "NotFound", 'namespaces "x" not found', {"name": "x", "kind": "namespaces"}), False),
    (status(404, "NotFound", "the server could not find the requested resource"), False),
    (status(422, "Invalid", "spec.replicas: Invalid value: -1"), False),
    (status(400, "BadRequest", "admission webhook \"v\" denied the request: no"), False),
])
def test_classification(error, transient):
    assert is_transient(error) is transient


def test_a_fresh_namespace_is_worth_waiting_for_only_when_writing_into_it():
    from cubeinstall.kube.retry import namespace_not_yet
    assert namespace_not_yet(status(404, "NotFound", 'namespaces "x" not found',
                                    {"name": "x", "kind": "namespaces"}))
    assert not namespace_not_yet(status(404, "NotFound", 'configmaps "c" not found',
                                        {"name": "c", "kind": "configmaps"}))


def test_conflict_names_the_other_managers():
    error = status(409, "Conflict", 'Apply failed with 2 conflicts: conflicts with "kubectl-edit"'
                                    ' using v1:\n- .data.a\nconflicts with "helm" using v1: .data.b')
    assert isinstance(error, Conflict)
    assert error.managers == ["helm", "kubectl-edit"]
    assert str(error).startswith("ConfigMap n/c: Apply failed")


def test_retry_until_success_then_fail_fast_on_others():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Unreachable("refused")
        return "ok"
    assert call_with_retry(flaky, time.monotonic() + 10) == "ok" and len(calls) == 3

    def wrong():
        calls.append(1)
        raise status(422, "Invalid", "bad")
    calls.clear()
    with pytest.raises(Exception, match="bad"):
        call_with_retry(wrong, time.monotonic() + 10)
    assert len(calls) == 1


def test_retry_gives_up_at_the_deadline():
    started = time.monotonic()
    with pytest.raises(Unreachable):
        call_with_retry(lambda: (_ for _ in ()).throw(Unreachable("down")), started + 0.5)
    assert time.monotonic() - started < 2


def test_an_outage_is_one_budget_for_all_calls():
    from cubeinstall.kube.retry import Outage
    outage = Outage(budget=0.3)
    outage.answered()  # the server answered once in this run: an outage gets the budget
    assert outage.allows_retry(unreachable=True)
    assert outage.allows_retry(unreachable=True)
    time.sleep(0.35)
    assert not outage.allows_retry(unreachable=True)  # a later call gets no fresh budget
    assert outage.allows_retry(unreachable=False)  # it answered
    assert outage.allows_retry(unreachable=True)


def test_a_server_never_reached_gets_few_quick_retries_whatever_the_budget():
    from cubeinstall.kube.retry import Outage
    outage = Outage(budget=300, first_contact_retries=2)
    assert [outage.allows_retry(unreachable=True) for _ in range(3)] == [True, True, False]
    assert outage.retrying() == "retrying (2/2) ..."


def test_unserved_api_says_when_it_was_removed_and_what_to_use():
    message, hint = unserved_message("rbac.authorization.k8s.io/v1beta1", "ClusterRole",
                                     "v1.36.3", ["v1"])
    assert "not served by this cluster (Kubernetes v1.36.3)" in message
    assert "removed in Kubernetes 1.22; use rbac.authorization.k8s.io/v1" in message
    message, _ = unserved_message("policy/v1beta1", "PodSecurityPolicy", "v1.36.3", ["v1"])
    assert "1.25" in message and "Pod Security Admission" in message
    message, _ = unserved_message("autoscaling/v2beta2", "HorizontalPodAutoscaler", "v1.36", [])
    assert "1.26" in message
    message, hint = unserved_message("example.com/v1", "Widget", "v1.36.3", [])
    assert "no API group example.com" in message and "CRD" in hint
    message, _ = unserved_message("example.com/v1", "Widget", "v1.36.3", ["v2"])
    assert "served in v2" in message
