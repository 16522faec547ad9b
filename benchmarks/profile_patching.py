"""Where exact resid_pre patching spends its time on one model: cProfile of lensarith's sweep.

    python benchmarks/profile_patching.py --model smollm2-135m --pairs 2 --tokens 20 [--top 15]

Prints the sweep's wall time, the share of the time in matrix multiplies (addmm/mm/bmm/matmul/
einsum/linear) and the functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lensarith as la  # noqa: E402
from lensarith.patching import PatchConfig, activation_patch, make_pairs  # noqa: E402

MATMUL = ("addmm", "'mm'", "bmm", "matmul", "einsum", "linear", "baddbmm")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = la.load_model(args.model)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(100, model.cfg.d_vocab, (args.pairs, args.tokens), generator=g)
    corrupted = clean.clone()
    corrupted[:, 3] = torch.randint(100, model.cfg.d_vocab, (args.pairs,), generator=g)
    answers = torch.randint(100, model.cfg.d_vocab, (args.pairs,), generator=g)
    wrong = torch.randint(100, model.cfg.d_vocab, (args.pairs,), generator=g)
    pairs = make_pairs(model, clean, corrupted, answers=answers.tolist(), corrupted_answers=wrong.tolist())
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = activation_patch(model, pairs, site="resid_pre", metric="logit_diff", progress=False, config=PatchConfig())
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    mm = sum(v[2] for k, v in stats.stats.items() if any(m in str(k) for m in MATMUL))
    print(f"{args.model}: {model.cfg.n_layers} x {args.tokens} sites, {args.pairs} pairs, engine "
          f"{res.meta.get('engine')}: {wall:.1f} s; matrix multiplies {mm / total:.0%} of the profiled time")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    for (file, line, fn), v in rows:
        print(f"  {v[2] / total:6.1%}  {v[2]:7.2f} s  {fn}  ({os.path.basename(file)}:{line})")


if __name__ == "__main__":
    main()
