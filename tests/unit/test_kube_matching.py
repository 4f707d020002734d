"""Label selectors and which objects an admission webhook intercepts (the probe's choice)."""

from cubeinstall.kube.client import ApiResource
from cubeinstall.kube.selectors import matches, selector_string
from cubeinstall.kube.webhooks import Candidate, intercepted, rule_matches

SELECTOR = {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]}


def test_selector_string_is_a_label_selector_query():
    assert selector_string(SELECTOR) == "app=web,tier in (a,b),!legacy"
    assert selector_string(None) == ""


def test_matches():
    assert matches(SELECTOR, {"app": "web", "tier": "a"})
    assert not matches(SELECTOR, {"app": "web", "tier": "c"})
    assert not matches(SELECTOR, {"app": "web", "tier": "a", "legacy": "1"})
    assert matches({}, {"anything": "x"}) and matches(None, None)
    assert not matches({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, {})
    assert not matches({"matchExpressions": [{"key": "k", "operator": "NotIn",
                                              "values": ["x"]}]}, {"k": "x"})


CONFIGMAPS = ApiResource("v1", "ConfigMap", "configmaps", namespaced=True)
WIDGETS = ApiResource("example.com/v2", "Widget", "widgets", namespaced=False)


def test_rule_matching_by_group_version_resource_operation_and_scope():
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
            "operations": ["CREATE"], "scope": "Namespaced"}
    assert rule_matches(rule, CONFIGMAPS, "CREATE")
    assert not rule_matches(rule, CONFIGMAPS, "UPDATE")
    assert not rule_matches(rule, WIDGETS, "CREATE")
    wildcard = {"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"],
                "operations": ["*"], "scope": "Cluster"}
    assert rule_matches(wildcard, WIDGETS, "UPDATE")
    assert not rule_matches(wildcard, CONFIGMAPS, "UPDATE")  # namespaced: out of scope


def test_intercepted_honours_object_and_namespace_selectors():
    webhook = {"rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                          "operations": ["CREATE", "UPDATE"]}],
               "namespaceSelector": {"matchLabels": {"team": "ml"}},
               "objectSelector": {"matchLabels": {"checked": "yes"}}}
    labels = {"ml-ns": {"team": "ml"}, "other": {}}.get
    obj = {"metadata": {"name": "c", "namespace": "ml-ns", "labels": {"checked": "yes"}}}
    assert intercepted(webhook, Candidate(obj, CONFIGMAPS), "UPDATE", labels)
    moved = {"metadata": {**obj["metadata"], "namespace": "other"}}
    assert not intercepted(webhook, Candidate(moved, CONFIGMAPS), "UPDATE", labels)
    unlabelled = {"metadata": {"name": "c", "namespace": "ml-ns"}}
    assert not intercepted(webhook, Candidate(unlabelled, CONFIGMAPS), "UPDATE", labels)
