#!/usr/bin/env python3
"""Mirror throughput: first run vs re-run, and parallel copies 1 vs 8.

    python bench/bench_images.py [--images 40] [--repeat 3]

Starts two real registries as the tests do (source: anonymous HTTP; target: htpasswd +
TLS with a test CA), seeds ``--images`` tiny distinct images into the source, then on a
fresh target each time measures:
- the first mirror with --parallel 1 and with --parallel 8 (skopeo copies);
- the re-run (every image present: one manifest HEAD per image and per source, no copy).
Prints medians and the ratios. Target (issue 9): re-run <= 0.05 x first run.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cubeinstall.core.output import Output  # noqa: E402
from cubeinstall.images.inventory import build_inventory  # noqa: E402
from cubeinstall.images.mirror import MirrorSettings, mirror  # noqa: E402
from tests.servers.registry import (  # noqa: E402
    TARGET_PASSWORD,
    TARGET_USER,
    make_site,
    seed_images,
    start_registry,
    write_tls,
)


def timed_mirror(site, uses, parallel: int) -> tuple[float, int]:
    out = Output(json_mode=True, stream=io.StringIO())
    started = time.perf_counter()
    report = mirror(site, uses, out, MirrorSettings(parallel=parallel))
    elapsed = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"mirror failed: {report.failed[0].error}")
    return elapsed, len(report.by_action("copied"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    tls = write_tls(work / "tls")
    source = start_registry(work / "source")
    targets = []
    try:
        paths = [f"bench/image-{i:03d}:v{i}" for i in range(args.images)]
        seed_images(source, work / "layouts", paths)
        uses = None
        results: dict[str, list[float]] = {"first p=1": [], "first p=8": [], "re-run p=8": []}
        for run in range(args.repeat):
            for parallel in (1, 8):
                target = start_registry(work / f"target-{run}-{parallel}",
                                        auth=(TARGET_USER, TARGET_PASSWORD), tls=tls)
                targets.append(target)
                site = make_site(target)
                uses = build_inventory({"bench": [f"{source.host}/{p}" for p in paths]},
                                       site.registry)
                seconds, copied = timed_mirror(site, uses, parallel)
                assert copied == args.images, copied
                results[f"first p={parallel}"].append(seconds)
                if parallel == 8:
                    seconds, copied = timed_mirror(site, uses, parallel)
                    assert copied == 0, copied
                    results["re-run p=8"].append(seconds)
                target.stop()
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"{args.images} images, median of {args.repeat} runs")
        for name, value in medians.items():
            print(f"  {name:12} {value:7.3f} s   ({args.images / value:7.1f} images/s)")
        print(f"  re-run / first (p=8):   {medians['re-run p=8'] / medians['first p=8']:.3f}"
              "   (target <= 0.05)")
        print(f"  first p=8 / first p=1:  {medians['first p=8'] / medians['first p=1']:.3f}")
    finally:
        for target in targets:
            target.stop()
        source.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
