"""Logit lens over 200 prompts: lensarith's batched path vs a one-prompt-at-a-time
``run_with_cache`` loop (how the paper's code worked), on a random GPT-2-small-shape model.

Both compute, for every prompt and every layer's output, the full-vocabulary logits at the
last real token (final LayerNorm, then unembedding) and the rank of the answer token.
Each method runs in its own process so its peak memory (max RSS) can be measured.

    python benchmarks/logit_lens.py [--prompts 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
    return model, tokens, lengths, answers


def run_lensarith(model, tokens, lengths, answers):
    import lensarith as la

    batch = la.Batch(tokens, lengths, answer_ids=answers)
    lens = la.logit_lens(model, batch, batch_size=50, progress=False)
    return lens.rank("answer")  # [layer, batch]


def run_loop(model, tokens, lengths, answers):
    import torch

    ranks = []
    with torch.no_grad():
        for i in range(len(tokens)):
            _, cache = model.run_with_cache(tokens[i : i + 1, : int(lengths[i])])
            resid = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0, -1] for layer in range(model.cfg.n_layers)])
            logits = model.unembed(model.ln_final(resid[:, None]))[:, 0]  # [layer, vocab]
            ranks.append((logits > logits[:, answers[i], None]).sum(-1))
    return torch.stack(ranks, dim=1)


def child(method: str, n_prompts: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    model, tokens, lengths, answers = build(n_prompts)
    fn = run_lensarith if method == "lensarith" else run_loop
    fn(model, tokens[:4], lengths[:4], answers[:4])  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ranks = fn(model, tokens, lengths, answers)
    seconds = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save(ranks, f"/tmp/lensarith-bench-{method}.pt")
    print(json.dumps({"seconds": seconds, "peak_extra_mb": (rss1 - rss0) / 1024, "peak_mb": rss1 / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["lensarith", "loop"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompts, args.threads)
        return
    import torch

    stats = {}
    for method in ("loop", "lensarith"):
        out = subprocess.run([sys.executable, __file__, "--child", method, "--prompts", str(args.prompts),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        stats[method] = json.loads(out.stdout.strip().splitlines()[-1])
    same = torch.equal(torch.load("/tmp/lensarith-bench-loop.pt"), torch.load("/tmp/lensarith-bench-lensarith.pt"))
    loop, ours = stats["loop"], stats["lensarith"]
    print(f"logit lens, {args.prompts} prompts of 14-25 tokens, GPT-2-small shape, {args.threads} thread(s)")
    print(f"  run_with_cache loop : {loop['seconds']:8.2f} s   peak +{loop['peak_extra_mb']:7.0f} MB (max RSS {loop['peak_mb']:.0f} MB)")
    print(f"  lensarith batched   : {ours['seconds']:8.2f} s   peak +{ours['peak_extra_mb']:7.0f} MB (max RSS {ours['peak_mb']:.0f} MB)")
    print(f"  speed-up            : {loop['seconds'] / ours['seconds']:8.2f} x   identical answer ranks: {same}")


if __name__ == "__main__":
    main()
