"""Logit lens over 200 prompts: lensarith's batched path vs a one-prompt-at-a-time
``run_with_cache`` loop (how the paper's code worked), on a random GPT-2-small-shape model.

Both compute, for every prompt and every layer's output, the full-vocabulary logits at the
last real token (final LayerNorm, then unembedding) and the rank of the answer token.
Each method runs in its own process so its peak memory (max RSS) can be measured; the two
processes alternate ``--repeats`` times and the fastest run of each is compared, so a burst
of load on a shared machine does not land on one side only.

Agreement is checked with a tie tolerance: two float32 computations of the same logits
differ by rounding (~1e-6), so where another token's logit lies within ``--tol`` of the
answer's, the two ranks may differ by the number of such near-ties without either being
wrong. The script prints exact rank equality, equality up to near-ties (the criterion), and
the largest logit difference over the answer column and a fixed sample of vocabulary columns.

    python benchmarks/logit_lens.py [--prompts 200] [--threads 1] [--repeats 2] [--tol 1e-4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

N_SAMPLE_COLUMNS = 4096


def build(n_prompts: int, seed: int = 0):
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                                  n_ctx=64, act_fn="gelu_new", normalization_type="LN", seed=seed, device="cpu")
    model = HookedTransformer(cfg)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(14, 26, (n_prompts,), generator=gen)
    tokens = torch.randint(0, cfg.d_vocab, (n_prompts, int(lengths.max())), generator=gen)
    answers = torch.randint(0, cfg.d_vocab, (n_prompts,), generator=gen)
    columns = torch.randperm(cfg.d_vocab, generator=gen)[:N_SAMPLE_COLUMNS]
    return model, tokens, lengths, answers, columns


def run_lensarith(model, tokens, lengths, answers):
    """Timed: the recipe and the ranks. Returns ranks and a function giving per-layer logits."""
    import lensarith as la

    batch = la.Batch(tokens, lengths, answer_ids=answers)
    lens = la.logit_lens(model, batch, batch_size=50, progress=False)
    ranks = lens.rank("answer")  # [layer, batch]
    return ranks, lambda: lens.logits()  # [layer, batch, vocab], computed after the clock stops


def run_loop(model, tokens, lengths, answers):
    import torch

    ranks, logits_all = [], []
    with torch.no_grad():
        for i in range(len(tokens)):
            _, cache = model.run_with_cache(tokens[i : i + 1, : int(lengths[i])])
            resid = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(model.cfg.n_layers)])
            logits = model.unembed(model.ln_final(resid[:, None]))[:, 0]  # [layer, vocab]
            ranks.append((logits > logits[:, answers[i], None]).sum(-1))
            logits_all.append(logits)
    return torch.stack(ranks, dim=1), lambda: torch.stack(logits_all, dim=1)


def child(method: str, n_prompts: int, threads: int, tol: float, out: str) -> None:
    import torch

    torch.set_num_threads(threads)
    model, tokens, lengths, answers, columns = build(n_prompts)
    fn = run_lensarith if method == "lensarith" else run_loop
    fn(model, tokens[:4], lengths[:4], answers[:4])  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ranks, logits_fn = fn(model, tokens, lengths, answers)
    seconds = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        logits = logits_fn()  # [layer, batch, vocab]
        answer_logit = logits.gather(-1, answers[None, :, None].expand(logits.shape[0], -1, 1))
        near_ties = ((logits - answer_logit).abs() <= tol).sum(-1) - 1  # other tokens within tol
        torch.save({"ranks": ranks, "near_ties": near_ties, "answer_logit": answer_logit[..., 0],
                    "sample": logits[..., columns]}, out)
    print(json.dumps({"seconds": seconds, "peak_extra_mb": (rss1 - rss0) / 1024, "peak_mb": rss1 / 1024}))


def compare(loop: dict, ours: dict) -> dict:
    import torch

    ties = torch.maximum(loop["near_ties"], ours["near_ties"])
    gap = (loop["ranks"] - ours["ranks"]).abs()
    return {
        "n": gap.numel(),
        "exact": int((gap == 0).sum()),
        "within_ties": int((gap <= ties).sum()),
        "max_gap": int(gap.max()),
        "max_logit_diff": max(float((loop["answer_logit"] - ours["answer_logit"]).abs().max()),
                              float((loop["sample"] - ours["sample"]).abs().max())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each method; the fastest counts")
    parser.add_argument("--tol", type=float, default=1e-4, help="logits this close to the answer's count as near-ties")
    parser.add_argument("--child", choices=["lensarith", "loop"])
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompts, args.threads, args.tol, args.out)
        return
    import torch

    stats: dict[str, list[dict]] = {"loop": [], "lensarith": []}
    with tempfile.TemporaryDirectory(prefix="lensarith-bench-") as tmp:
        for _ in range(args.repeats):
            for method in ("loop", "lensarith"):
                out = subprocess.run([sys.executable, __file__, "--child", method, "--prompts", str(args.prompts),
                                      "--threads", str(args.threads), "--tol", str(args.tol),
                                      "--out", os.path.join(tmp, f"{method}.pt")],
                                     capture_output=True, text=True, check=True)
                stats[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
        agree = compare(torch.load(os.path.join(tmp, "loop.pt")), torch.load(os.path.join(tmp, "lensarith.pt")))
    loop = min(stats["loop"], key=lambda s: s["seconds"])
    ours = min(stats["lensarith"], key=lambda s: s["seconds"])
    times = {m: ", ".join(f"{s['seconds']:.2f}" for s in runs) for m, runs in stats.items()}
    print(f"logit lens, {args.prompts} prompts of 14-25 tokens, GPT-2-small shape, {args.threads} thread(s), "
          f"fastest of {args.repeats} alternating runs")
    print(f"  run_with_cache loop : {loop['seconds']:8.2f} s   peak +{loop['peak_extra_mb']:7.0f} MB "
          f"(max RSS {loop['peak_mb']:.0f} MB)   runs: {times['loop']}")
    print(f"  lensarith batched   : {ours['seconds']:8.2f} s   peak +{ours['peak_extra_mb']:7.0f} MB "
          f"(max RSS {ours['peak_mb']:.0f} MB)   runs: {times['lensarith']}")
    print(f"  speed-up            : {loop['seconds'] / ours['seconds']:8.2f} x")
    print(f"  answer ranks        : {agree['exact']}/{agree['n']} identical, {agree['within_ties']}/{agree['n']} "
          f"identical up to near-ties within {args.tol:g} (largest gap {agree['max_gap']})")
    print(f"  max |logit diff|    : {agree['max_logit_diff']:.2e} (answer column and {N_SAMPLE_COLUMNS} sampled columns)")
    ok = agree["within_ties"] == agree["n"]
    print(f"  agreement           : {'yes' if ok else 'NO'} (criterion: every rank identical up to near-ties)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
