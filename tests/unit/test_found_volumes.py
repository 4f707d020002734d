"""A claim keeps the volume it is bound to (site.found, stages/bound_volumes.py)."""

from __future__ import annotations

import pytest

from cubeinstall.core.errors import ConfigError
from cubeinstall.site.loader import load_site
from cubeinstall.site.model import Found, FoundVolume
from cubeinstall.stages import pv_pvc
from tests.helpers import EXAMPLE_SITE, example_site_data, other_cluster, write_site


def by_key(objects):
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}


def test_a_claim_bound_to_an_earlier_volume_keeps_it_and_its_source(seeded_cache):
    site = load_site(EXAMPLE_SITE)
    found = {
        # an earlier cubeinstall's name, its hostPath typed, the same directory
        "infra/kubeflow-global-pvc": FoundVolume(
            name="infra-kubeflow-global-pvc",
            host_path={"path": "/data/k8s/kubeflow/global", "type": "DirectoryOrCreate"}),
        # the same directory written without upstream's trailing slash
        "infra/infra-kubeflow": FoundVolume(
            name="infra-infra-kubeflow", host_path={"path": "/data/k8s/kubeflow"}),
        # as rendered, the server's default type "" read back: no difference
        "pipeline/kubeflow-archives": FoundVolume(
            name="pipeline-kubeflow-archives",
            host_path={"path": "/data/k8s/kubeflow/pipeline/archives", "type": ""}),
        # another directory: the source is ours, so the apply refuses (data stays where it is)
        "jupyter/kubeflow-archives": FoundVolume(
            name="jupyter-kubeflow-archives", host_path={"path": "/elsewhere"}),
    }
    plain = by_key(pv_pvc.render(site))
    kept = by_key(pv_pvc.render(site.model_copy(update={"found": Found(volumes={"main": found})})))
    assert ("PersistentVolume", None, "infra-kubeflow-global-pv") in plain
    assert ("PersistentVolume", None, "infra-kubeflow-global-pv") not in kept
    old = kept[("PersistentVolume", None, "infra-kubeflow-global-pvc")]
    assert old["spec"]["hostPath"] == {"path": "/data/k8s/kubeflow/global",
                                       "type": "DirectoryOrCreate"}
    assert old["metadata"]["labels"] == {"infra-pvname": "infra-kubeflow-global-pvc"}
    assert kept[("PersistentVolumeClaim", "infra", "kubeflow-global-pvc")]["spec"][
        "volumeName"] == "infra-kubeflow-global-pvc"
    assert kept[("PersistentVolume", None, "infra-infra-kubeflow")]["spec"]["hostPath"] == {
        "path": "/data/k8s/kubeflow"}
    assert kept[("PersistentVolume", None, "jupyter-kubeflow-archives")]["spec"]["hostPath"] == \
        plain[("PersistentVolume", None, "jupyter-kubeflow-archives")]["spec"]["hostPath"]
    untouched = set(plain) - {k for k in plain if k[2] in ("infra-kubeflow-global-pv",
                                                             "infra-kubeflow")}
    assert all(kept[k] == plain[k] for k in untouched
               if k[:2] != ("PersistentVolumeClaim", "infra")
               and k[2] != "jupyter-kubeflow-archives")


def test_each_clusters_view_has_its_own_clusters_volumes(tmp_path, seeded_cache):
    """pv-pvc runs on every cluster: each cluster's claims keep the volumes found in it."""
    data = example_site_data()
    data["clusters"] = [{"name": "main"}, other_cluster("east")]
    site = load_site(write_site(tmp_path, data))
    earlier = FoundVolume(name="infra-kubeflow-global-pvc",
                          host_path={"path": "/data/k8s/kubeflow/global"})
    found = site.model_copy(update={"found": Found(volumes={
        "east": {"infra/kubeflow-global-pvc": earlier}})})
    assert found.found_volumes == {} and found.for_cluster("main").found_volumes == {}
    assert found.for_cluster("east").found_volumes == {"infra/kubeflow-global-pvc": earlier}
    claim = ("PersistentVolumeClaim", "infra", "kubeflow-global-pvc")
    assert by_key(pv_pvc.render(found.for_cluster("main")))[claim]["spec"]["volumeName"] == \
        "infra-kubeflow-global-pv"
    assert by_key(pv_pvc.render(found.for_cluster("east")))[claim]["spec"]["volumeName"] == \
        "infra-kubeflow-global-pvc"


def test_found_is_not_a_setting(tmp_path):
    data = example_site_data()
    data["found"] = {"volumes": {}}
    with pytest.raises(ConfigError) as error:
        load_site(write_site(tmp_path, data))
    assert "found is what a run finds in the cluster, not a setting" in str(error.value)


def test_a_stages_own_volume_keeps_its_earlier_source_too(seeded_cache):
    """mysql, prometheus and efk render their volumes through workloads.host_volume: an
    earlier cubeinstall gave them hostPath type DirectoryOrCreate, which cannot change."""
    from cubeinstall.stages import mysql

    site = load_site(EXAMPLE_SITE)
    earlier = {"infra/infra-mysql-pvc": FoundVolume(
        name="infra-mysql-pv", host_path={"path": "/data/k8s/infra/mysql",
                                          "type": "DirectoryOrCreate"})}
    plain = by_key(mysql.render(site))[("PersistentVolume", None, "infra-mysql-pv")]
    kept = by_key(mysql.render(site.model_copy(update={"found": Found(volumes={"main": earlier})})))
    assert plain["spec"]["hostPath"] == {"path": "/data/k8s/infra/mysql"}
    assert kept[("PersistentVolume", None, "infra-mysql-pv")]["spec"]["hostPath"] == {
        "path": "/data/k8s/infra/mysql", "type": "DirectoryOrCreate"}


def test_a_volume_bound_as_rendered_renders_exactly_as_without_found(seeded_cache):
    """A fresh site's second run finds its own volumes: what it renders (and so each stage's
    fingerprint) must not change, or every later run re-runs those stages."""
    from cubeinstall.stages import efk

    site = load_site(EXAMPLE_SITE)
    [volume] = [o for o in efk.render(site) if o["kind"] == "PersistentVolume"]
    ref = volume["spec"]["claimRef"]
    own = {f"{ref['namespace']}/{ref['name']}": FoundVolume(
        name=volume["metadata"]["name"], host_path={**volume["spec"]["hostPath"], "type": ""})}
    assert efk.render(site.model_copy(update={"found": Found(volumes={"main": own})})) == \
        efk.render(site)


def test_what_a_run_found_is_kept_in_the_journal_for_plain_status(tmp_path):
    """`all` keeps what it found per cluster (a later run of other clusters' or stages'
    keeps the rest); plain `status`, asking no cluster, renders with it."""
    import io

    from cubeinstall.core.context import RunContext
    from cubeinstall.core.output import Output
    from cubeinstall.run.found import remember, with_remembered
    from cubeinstall.run.journal import Journal
    from cubeinstall.run.targets import expand
    from cubeinstall.site import stages as registry

    site = load_site(EXAMPLE_SITE)
    east = {"infra/kubeflow-global-pvc": FoundVolume(
        name="infra-kubeflow-global-pvc", host_path={"path": "/data/k8s/kubeflow/global"})}
    found = site.model_copy(update={"found": Found(volumes={"east": east})})
    journal = Journal.load(site.site, tmp_path)
    remember(journal, found, expand(site, [registry.get("pv-pvc")]))
    journal.save()
    # a run without a volume stage leaves the volumes as they were
    remember(journal, site, expand(site, [registry.get("namespaces")]))
    journal.save()

    ctx = RunContext(site, Output(json_mode=True, stream=io.StringIO()))
    remembered = with_remembered(ctx, Journal.load(site.site, tmp_path)).site
    assert remembered.found.volumes == {"east": east}
    assert with_remembered(ctx, Journal.load(site.site, tmp_path / "none")) is ctx
