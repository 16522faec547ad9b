"""The paper's full reproduction on a real model: wall time, peak memory and where the time goes.

Runs ``lensarith reproduce --model <name>`` (full size unless ``--small``) in a child process, then
prints the child's wall time and peak resident memory, each step's time from ``summary.json``
(``timings_s``), and the goals (``--goal-min`` minutes, ``--goal-gb`` GB peak) met or missed.
With ``--profile`` it samples the run with py-spy (when installed) and prints each step's and each
kind of work's share (forwards, unembedding, the chunked readout).

    python benchmarks/reproduce_real.py --model gemma-3-270m            # about half an hour on 2 CPU cores
    python benchmarks/reproduce_real.py --model gemma-3-270m --small    # CI-sized
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the step functions of lensarith.paper.steps and the kinds of work a profile sample is counted as
KINDS = (("unembedding", "unembed ("), ("chunked readout", "scan ("), ("forwards", "HookedTransformer.forward"),
         ("figures", "savefig"))


def _profile_shares(raw: Path) -> tuple[dict[str, float], dict[str, float]]:
    steps: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        step = next((f.split(" ")[0] for f in frames if "/paper/steps/_" in f and "_outputs" not in f), "other")
        steps[step] += n
        kind = "other"
        for name, marker in KINDS:
            if any(marker in f for f in frames):
                kind = name
        kinds[kind] += n
    return ({k: v / total for k, v in steps.most_common()}, {k: v / total for k, v in kinds.most_common()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--small", action="store_true", help="CI-sized run (16 prompts per task)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one, removed)")
    ap.add_argument("--profile", action="store_true", help="sample the run with py-spy (if installed)")
    ap.add_argument("--goal-min", type=float, default=10.0)
    ap.add_argument("--goal-gb", type=float, default=3.0)
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="reproduce-real-")) / "out"
    cmd = [sys.executable, "-m", "lensarith.cli", "reproduce", "--model", args.model, "--out", str(out), "--quiet"]
    if args.small:
        cmd.append("--small")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    raw = out.parent / "profile.txt"
    beside = Path(sys.executable).parent / "py-spy"
    spy = (str(beside) if beside.is_file() else shutil.which("py-spy")) if args.profile else None
    if spy:
        cmd = [spy, "record", "--rate", "2", "--format", "raw", "-o", str(raw), "--subprocesses", "--", *cmd]
    elif args.profile:
        print("py-spy is not installed (pip install py-spy): running without a profile")
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env)
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB on Linux
    if done.returncode != 0:
        print(f"reproduce failed with exit status {done.returncode}")
        return done.returncode
    summary = json.loads((out / "summary.json").read_text())
    timings = summary.get("timings_s", {})
    print(f"reproduce --model {args.model}{' --small' if args.small else ''}: wall {wall:.0f} s ({wall / 60:.1f} min, "
          f"model load included), peak RSS {peak_gb:.2f} GB")
    print("steps (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"goal <= {args.goal_min:g} min: {'met' if wall <= args.goal_min * 60 else 'missed'}; "
          f"goal <= {args.goal_gb:g} GB: {'met' if peak_gb <= args.goal_gb else 'missed'}")
    if spy and raw.is_file():
        steps, kinds = _profile_shares(raw)
        print("profile, by step: " + ", ".join(f"{k} {v:.0%}" for k, v in steps.items()))
        print("profile, by work: " + ", ".join(f"{k} {v:.0%}" for k, v in kinds.items()))
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
