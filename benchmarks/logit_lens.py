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
    python benchmarks/logit_lens.py --model gemma-3-270m --repeats 1   # the 262k-vocabulary readout

Both sides compute four readouts per layer and prompt: the answer's rank, its reciprocal rank,
top-1 accuracy and the top-5 tokens (the loop from the one logits tensor it made per prompt).
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


def build(n_prompts: int, seed: int = 0, name: str = "gpt2-shape"):
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if name == "gpt2-shape":
        cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                                      n_ctx=64, act_fn="gelu_new", normalization_type="LN", seed=seed, device="cpu")
        model = HookedTransformer(cfg)
    else:  # a real pretrained model by lensarith's name (the ``real`` extra)
        import lensarith as la

        model = la.load_model(name, device="cpu")
        cfg = model.cfg
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(14, 26, (n_prompts,), generator=gen)
    tokens = torch.randint(0, cfg.d_vocab, (n_prompts, int(lengths.max())), generator=gen)
    answers = torch.randint(0, cfg.d_vocab, (n_prompts,), generator=gen)
    columns = torch.randperm(cfg.d_vocab, generator=gen)[:N_SAMPLE_COLUMNS]
    return model, tokens, lengths, answers, columns


TOP_K = 5


def run_lensarith(model, tokens, lengths, answers):
    """Timed: the recipe and four readouts (rank, reciprocal rank, top-1 accuracy, top-5 tokens).
    Returns ranks, top ids and the per-layer normed residuals (logits are recomputed after the clock)."""
    import lensarith as la

    batch = la.Batch(tokens, lengths, answer_ids=answers)
    lens = la.logit_lens(model, batch, batch_size=50, progress=False)
    ranks = lens.rank("answer")  # [layer, batch]
    lens.reciprocal_rank("answer")
    lens.accuracy("answer")
    top = lens.top_ids(TOP_K)  # top_tokens(k) adds the strings
    return ranks, top, lens.normed


def run_loop(model, tokens, lengths, answers):
    """The per-prompt loop a researcher writes: run_with_cache, stack resid_post at the last token,
    final norm, unembed, then the same four readouts from those logits."""
    import torch

    ranks, tops, normed = [], [], []
    with torch.no_grad():
        for i in range(len(tokens)):
            _, cache = model.run_with_cache(tokens[i : i + 1, : int(lengths[i])])
            resid = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(model.cfg.n_layers)])
            x = model.ln_final(resid[:, None])
            logits = model.unembed(x)[:, 0]  # [layer, vocab]
            rank = (logits > logits[:, answers[i], None]).sum(-1)
            ranks.append(rank)
            1.0 / (rank.float() + 1)  # reciprocal rank
            rank == 0  # top-1
            tops.append(logits.topk(TOP_K, dim=-1).indices)
            normed.append(x[:, 0])
    return torch.stack(ranks, dim=1), torch.stack(tops, dim=1), torch.stack(normed, dim=1)


def child(method: str, n_prompts: int, threads: int, tol: float, out: str, name: str) -> None:
    import torch

    from lensarith.core import readout

    torch.set_num_threads(threads)
    model, tokens, lengths, answers, columns = build(n_prompts, name=name)
    fn = run_lensarith if method == "lensarith" else run_loop
    fn(model, tokens[:4], lengths[:4], answers[:4])  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ranks, top, normed = fn(model, tokens, lengths, answers)
    seconds = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    near, ans, sample, top_ok = [], [], [], True
    with torch.no_grad():
        for x in normed:  # one layer's logits at a time (a 262k vocabulary does not fit all layers)
            logits = readout.unembed(model, x).float()  # [batch, vocab]
            answer_logit = logits.gather(-1, answers[:, None])
            near.append(((logits - answer_logit).abs() <= tol).sum(-1) - 1)  # other tokens within tol
            ans.append(answer_logit[:, 0])
            sample.append(logits[:, columns])
        for layer, x in enumerate(normed):  # the top tokens' logits are the top logits (up to near-ties)
            logits = readout.unembed(model, x).float()
            top_ok &= bool(((logits.gather(-1, top[layer]) - logits.topk(TOP_K).values).abs() <= tol).all())
    torch.save({"ranks": ranks, "near_ties": torch.stack(near), "answer_logit": torch.stack(ans),
                "sample": torch.stack(sample), "top_ok": top_ok}, out)
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
        "top_ok": bool(loop["top_ok"] and ours["top_ok"]),
        "max_logit_diff": max(float((loop["answer_logit"] - ours["answer_logit"]).abs().max()),
                              float((loop["sample"] - ours["sample"]).abs().max())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each method; the fastest counts")
    parser.add_argument("--tol", type=float, default=1e-4, help="logits this close to the answer's count as near-ties")
    parser.add_argument("--model", default="gpt2-shape",
                        help="gpt2-shape (random, GPT-2 small) or a real model lensarith loads by name, e.g. gemma-3-270m")
    parser.add_argument("--child", choices=["lensarith", "loop"])
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompts, args.threads, args.tol, args.out, args.model)
        return
    import torch

    stats: dict[str, list[dict]] = {"loop": [], "lensarith": []}
    with tempfile.TemporaryDirectory(prefix="lensarith-bench-") as tmp:
        for _ in range(args.repeats):
            for method in ("loop", "lensarith"):
                out = subprocess.run([sys.executable, __file__, "--child", method, "--prompts", str(args.prompts),
                                      "--threads", str(args.threads), "--tol", str(args.tol), "--model", args.model,
                                      "--out", os.path.join(tmp, f"{method}.pt")],
                                     capture_output=True, text=True, check=True)
                stats[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
        agree = compare(torch.load(os.path.join(tmp, "loop.pt")), torch.load(os.path.join(tmp, "lensarith.pt")))
    loop = min(stats["loop"], key=lambda s: s["seconds"])
    ours = min(stats["lensarith"], key=lambda s: s["seconds"])
    times = {m: ", ".join(f"{s['seconds']:.2f}" for s in runs) for m, runs in stats.items()}
    print(f"logit lens, {args.prompts} prompts of 14-25 tokens, {args.model}, all layers, four readouts (rank, "
          f"reciprocal rank, top-1 accuracy, top-{TOP_K} tokens), {args.threads} thread(s), fastest of {args.repeats} "
          f"alternating runs; load average {os.getloadavg()[0]:.2f}")
    print(f"  run_with_cache loop : {loop['seconds']:8.2f} s   peak +{loop['peak_extra_mb']:7.0f} MB "
          f"(max RSS {loop['peak_mb']:.0f} MB)   runs: {times['loop']}")
    print(f"  lensarith batched   : {ours['seconds']:8.2f} s   peak +{ours['peak_extra_mb']:7.0f} MB "
          f"(max RSS {ours['peak_mb']:.0f} MB)   runs: {times['lensarith']}")
    print(f"  speed-up            : {loop['seconds'] / ours['seconds']:8.2f} x")
    print(f"  answer ranks        : {agree['exact']}/{agree['n']} identical, {agree['within_ties']}/{agree['n']} "
          f"identical up to near-ties within {args.tol:g} (largest gap {agree['max_gap']})")
    print(f"  max |logit diff|    : {agree['max_logit_diff']:.2e} (answer column and {N_SAMPLE_COLUMNS} sampled columns)")
    print(f"  top-{TOP_K} tokens        : {'the top logits' if agree['top_ok'] else 'NOT the top logits'} on both sides")
    ok = agree["within_ties"] == agree["n"] and agree["top_ok"]
    print(f"  agreement           : {'yes' if ok else 'NO'} (criterion: every rank identical up to near-ties, top "
          "tokens the top logits)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
