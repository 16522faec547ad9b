"""Activation patching: lensarith against TransformerLens's ``patching`` module on the same work.

A random GPT-2-small-shape model (12 layers, d_model 768, 12 heads, d_mlp 3072, vocabulary
50257, no tokenizer) — a ``HookedTransformer`` on TransformerLens 3.x, a ``TransformerBridge``
over TransformerLens's native model on 4.x (both TransformerLens's own sweep and lensarith run
on the installed backend) —, 8 prompt pairs of 20 random tokens that differ at two positions,
resid_pre patched over all 12 x 20 = 240 (layer, position) sites, logit-difference metric
read at the last position. Prints:

- TransformerLens time (``get_act_patch_resid_pre`` under ``torch.no_grad()``), lensarith
  time, their ratio, and the largest absolute difference of the two [layer, pos] grids;
- the FLOP floor of exact single-site patching (each site needs only the layers from its
  own on, the positions from it onward, and the unembedding of the read position),
  converted to seconds with a matmul-throughput probe, and lensarith's time against it;
- attribution patching's time and its correlation with the exact result.

Usage::

    python benchmarks/patching.py               # TransformerLens's whole sweep (minutes)
    python benchmarks/patching.py --tl-sites 24 # time TransformerLens on 24 sites, extrapolate
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import transformer_lens.patching as tlp  # noqa: E402

from lensarith.core.backends import backend_of  # noqa: E402
from lensarith.models import cfg_from_json, new_hooked_transformer  # noqa: E402
from lensarith.patching import PatchConfig, activation_patch, attribution_patch, make_pairs  # noqa: E402

N_PAIRS, N_TOKENS = 8, 20


def build():
    cfg = cfg_from_json(dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=64,
                             act_fn="gelu_new", normalization_type="LN", seed=0, device="cpu"))
    model = new_hooked_transformer(cfg)  # HookedTransformer on 3.x, a native TransformerBridge on 4.x
    model.eval()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, cfg.d_vocab, (N_PAIRS, N_TOKENS), generator=gen)
    corrupted = clean.clone()
    for pos in (4, 11):
        corrupted[:, pos] = torch.randint(0, cfg.d_vocab, (N_PAIRS,), generator=gen)
    answers = torch.randint(0, cfg.d_vocab, (N_PAIRS,), generator=gen)
    wrong = torch.randint(0, cfg.d_vocab, (N_PAIRS,), generator=gen)
    return model, clean, corrupted, answers, wrong


def flops(cfg, width: int) -> dict[str, float]:
    """Forward FLOPs (2 per multiply-add) per example: TransformerLens's sweep, the floor, lensarith's."""
    d, n, vocab = cfg.d_model, cfg.n_layers, cfg.d_vocab
    qkv, out, mlp = 2 * 3 * d * d, 2 * d * d, 2 * 2 * d * cfg.d_mlp
    kv = 2 * 2 * d * d

    def attn(t: int) -> int:  # scores and weighted values of the query at position t
        return 2 * 2 * (t + 1) * d

    def token(t: int) -> int:
        return qkv + out + mlp + attn(t)

    read = width - 1
    unembed_all, unembed_read, unembed_cols = 2 * d * vocab * width, 2 * d * vocab, 2 * d * 2
    tl = floor = ours = 0.0
    for layer in range(n):
        for p in range(width):
            tl += n * sum(token(t) for t in range(width)) + unembed_all
            floor += (n - layer) * sum(token(t) for t in range(p, width)) + unembed_read
            ours += (n - layer - 1) * sum(token(t) for t in range(p, width))  # full blocks before the last
            ours += kv * (width - p) + token(read) - kv + unembed_cols  # last block: K/V, then the read token
    return {"tl": tl, "floor": floor, "ours": ours}


def throughput(seconds: float = 3.0) -> float:
    """Sustained single-thread matmul FLOP/s on MLP-shaped products (best of a few runs)."""
    a, b = torch.randn(1024, 768), torch.randn(768, 3072)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 1024 * 768 * 3072 / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tl-sites", type=int, default=0,
                        help="time TransformerLens on this many evenly spread sites and extrapolate (0: all)")
    parser.add_argument("--max-tokens", type=int, default=PatchConfig().max_tokens, help="lensarith memory budget")
    args = parser.parse_args()

    model, clean, corrupted, answers, wrong = build()
    cfg = model.cfg
    n_sites = cfg.n_layers * N_TOKENS
    rows = torch.arange(N_PAIRS)
    pairs = make_pairs(model, clean, corrupted, answers=answers.tolist(), corrupted_answers=wrong.tolist())
    config = PatchConfig(max_tokens=args.max_tokens)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, load average {os.getloadavg()[0]:.2f}; "
          f"backend {backend_of(model).name} ({type(model).__name__})")
    print(f"model: 12 layers, d_model 768, vocab 50257; {N_PAIRS} pairs x {N_TOKENS} tokens; "
          f"resid_pre x {n_sites} sites; logit difference at the last position")

    def ours() -> tuple[float, torch.Tensor, torch.Tensor]:
        t0 = time.perf_counter()
        res = activation_patch(model, pairs, site="resid_pre", metric="logit_diff", progress=False, config=config)
        return time.perf_counter() - t0, res.values, res.per_example

    ours_first, values, per_example = ours()

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        read = logits[:, -1]
        return (read[rows, answers] - read[rows, wrong]).mean()

    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
        t0 = time.perf_counter()
        if args.tl_sites and args.tl_sites < n_sites:
            import pandas as pd

            picks = torch.linspace(0, n_sites - 1, args.tl_sites).round().long().unique().tolist()
            index = pd.DataFrame([divmod(i, N_TOKENS) for i in picks], columns=["layer", "pos"])
            got = tlp.generic_activation_patch(model, corrupted, cache, tl_metric, tlp.layer_pos_patch_setter,
                                               "resid_pre", index_df=index)
            tl_measured = time.perf_counter() - t0
            tl_time = tl_measured * n_sites / len(picks)
            diff = float((values.flatten()[picks] - got.cpu()).abs().max())
            tl_note = f"measured {tl_measured:.1f} s on {len(picks)} sites, extrapolated per site to {n_sites}"
        else:
            ref = tlp.get_act_patch_resid_pre(model, corrupted, cache, tl_metric)
            tl_time = time.perf_counter() - t0
            diff = float((values - ref.cpu()).abs().max())
            tl_note = f"whole sweep, {n_sites} sites"
    del cache

    ours_second, values2, _ = ours()
    ours_time = min(ours_first, ours_second)
    print(f"TransformerLens     {tl_time:8.1f} s   ({tl_note})")
    print(f"lensarith           {ours_time:8.1f} s   (best of {ours_first:.1f} s before and {ours_second:.1f} s "
          f"after TransformerLens; engine {PatchConfig().engine}, max_tokens {args.max_tokens})")
    print(f"ratio               {tl_time / ours_time:8.2f} x")
    print(f"max abs difference  {diff:8.2e}   (lensarith runs agree to {float((values - values2).abs().max()):.1e})")

    f = flops(cfg, N_TOKENS)
    rate = throughput()
    floor_s = f["floor"] * N_PAIRS / rate
    print(f"FLOPs per sweep     TransformerLens {f['tl'] * N_PAIRS / 1e12:.2f} T, floor {f['floor'] * N_PAIRS / 1e12:.2f} T, "
          f"lensarith's algorithm {f['ours'] * N_PAIRS / 1e12:.2f} T (last block for the read position only, "
          "two logit columns)")
    print(f"FLOP floor          {floor_s:8.1f} s   at {rate / 1e9:.1f} GFLOP/s (matmul probe); TransformerLens does "
          f"{f['tl'] / f['floor']:.2f}x the floor's FLOPs")
    print(f"lensarith / floor   {ours_time / floor_s:8.2f} x   (lensarith's own FLOPs are "
          f"{f['ours'] / f['floor']:.2f}x the floor's)")

    t0 = time.perf_counter()
    att = attribution_patch(model, pairs, site="resid_pre", metric="logit_diff")
    att_time = time.perf_counter() - t0
    exact = values.flatten()
    corr = float(torch.corrcoef(torch.stack([exact, att.values.flatten()]))[0, 1])
    moved = torch.stack([(per_example - att.corrupted).flatten(), (att.per_example - att.corrupted).flatten()])
    corr_ex = float(torch.corrcoef(moved)[0, 1])  # each example's change from its corrupted run
    print(f"attribution patch   {att_time:8.2f} s   correlation with exact: {corr:.3f} on values, {corr_ex:.3f} per "
          f"example; {ours_time / att_time:.0f}x faster than exact")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
