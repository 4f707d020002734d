"""Start-up time of the CLI against a bare interpreter.

    python bench/bench_startup.py [--runs 15]

Prints the median wall time of each command and its ratio to `python -c pass`
on this machine. Target (issue 2): `cubeinstall --help` under 0.3 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "cubeinstall --help": [sys.executable, "-m", "cubeinstall", "--help"],
    "cubeinstall stages": [sys.executable, "-m", "cubeinstall", "stages", "-c", str(EXAMPLE)],
    "cubeinstall render (all stages)": [sys.executable, "-m", "cubeinstall", "render",
                                        "-c", str(EXAMPLE), "--out", "/tmp/cubeinstall-bench-render"],
}


def median_seconds(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = {name: median_seconds(command, args.runs) for name, command in COMMANDS.items()}
    base = results["python -c pass"]
    print(f"{'command':34} {'median s':>9} {'x python':>9}")
    for name, seconds in results.items():
        print(f"{name:34} {seconds:9.3f} {seconds / base:9.1f}")
    verdict = "OK" if results["cubeinstall --help"] < 0.3 else "OVER TARGET"
    print(f"--help target < 0.300 s: {verdict}")


if __name__ == "__main__":
    main()
