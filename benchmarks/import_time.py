"""Import cost: ``import lensarith``, touching a recipe, and the command line's ``--help``, against ``import torch``.

Each line runs in fresh interpreters (median of ``--repeat`` runs, all in one invocation of
this script); ratios are to ``import torch`` measured in the same run.

    python benchmarks/import_time.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import lensarith": [sys.executable, "-c", "import lensarith"],
    "lensarith + a recipe (la.logit_lens)": [sys.executable, "-c", "import lensarith as la; la.logit_lens"],
    "lensarith + a model (la.tiny_model())": [sys.executable, "-c", "import lensarith as la; la.tiny_model()"],
    "lensarith --help": [sys.executable, "-m", "lensarith.cli", "--help"],
    "lensarith (argparse error)": [sys.executable, "-m", "lensarith.cli", "lens", "--task", "nope"],
}


def _time(cmd: list[str]) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, env=env, check=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for cmd in CASES.values():  # warm the file cache
        _time(cmd)
    med = {name: statistics.median(_time(cmd) for _ in range(args.repeat)) for name, cmd in CASES.items()}
    base = med["import torch"]
    print(f"{'case':<40} {'median s':>9} {'x import torch':>15}")
    for name, t in med.items():
        print(f"{name:<40} {t:9.3f} {t / base:15.2f}")


if __name__ == "__main__":
    main()
