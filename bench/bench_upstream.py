#!/usr/bin/env python3
"""Upstream files: fetch vs cached re-fetch, bundle create/load, and render cold vs warm.

    python bench/bench_upstream.py [--repeat 3]

Serves ../shared/upstream from a loopback HTTP server (as the tests do) and, into a
fresh cache each time, measures:
- `bundle fetch` of every catalog file (downloads + sha256), then the re-run (all cached:
  every file re-verified, no request);
- `bundle create` and `bundle load` into an empty cache;
- rendering the six upstream stages in a fresh process state (YAML parsed) and again
  (parsed documents reused).
Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cubeinstall.core.output import Output  # noqa: E402
from cubeinstall.site.loader import load_site  # noqa: E402
from cubeinstall.upstream import bundle, catalog, manifests  # noqa: E402
from cubeinstall.upstream.cache import Cache  # noqa: E402
from cubeinstall.upstream.fetch import fetch_all  # noqa: E402
from tests.servers.http_upstream import SHARED_UPSTREAM, HttpServer  # noqa: E402

STAGES = ("istio", "kubeflow", "prometheus", "volcano", "frameworkcontroller", "kube_batch")


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def render_all(site) -> None:
    import importlib

    for name in STAGES:
        importlib.import_module(f"cubeinstall.stages.{name}").render(site)


def once(server: HttpServer, work: Path) -> dict[str, float]:
    out = Output(json_mode=True, stream=io.StringIO())
    files = [item for name in catalog.components() for item in catalog.resolve(None, name).files]
    cache = Cache(work / "cache" / "upstream")
    result = {"fetch": timed(lambda: fetch_all(files, cache, out)),
              "refetch": timed(lambda: fetch_all(files, cache, out))}
    archive = work / "bundle.tar.gz"
    result["create"] = timed(lambda: bundle.create(archive, files, cache, out))
    result["load"] = timed(lambda: bundle.load(archive, Cache(work / "loaded"), out))
    os.environ["CUBEINSTALL_CACHE"] = str(work / "cache")
    site = load_site(REPO / "examples" / "site.yaml")
    manifests._PARSED.clear()  # a new process: nothing parsed yet
    result["render cold"] = timed(lambda: render_all(site))
    result["render warm"] = timed(lambda: render_all(site))
    result["megabytes"] = sum(cache.path(item.sha256).stat().st_size for item in files) / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = HttpServer(SHARED_UPSTREAM).start()
    os.environ[catalog.MIRROR_ENV] = server.url
    runs = []
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as work:
                runs.append(once(server, Path(work)))
    finally:
        server.stop()
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"{len(catalog.components())} components, {median['megabytes']:.1f} MB, "
          f"median of {args.repeat} runs")
    for key in ("fetch", "refetch", "create", "load", "render cold", "render warm"):
        print(f"  {key:12} {median[key]:7.2f} s")
    print(f"  fetch throughput      {median['megabytes'] / median['fetch']:7.1f} MB/s (loopback)")
    print(f"  re-fetch / fetch      {median['refetch'] / median['fetch']:7.3f}")
    print(f"  render warm / cold    {median['render warm'] / median['render cold']:7.3f}")


if __name__ == "__main__":
    main()
