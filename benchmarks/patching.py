"""Activation patching: lensarith against TransformerLens's ``patching`` module, one row per family.

For each architecture family a random model of GPT-2-small size (12 layers, d_model 768, 12
heads of 64, vocabulary 50257, no tokenizer) with that family's shape:

- GPT-2: LayerNorm, learned positions, GELU MLP (3072);
- GPT-J: rotary on 32 of 64 head dimensions (adjacent pairs), parallel attention and MLP;
- NeoX: rotary on 16 of 64 dimensions (split halves), parallel attention and MLP;
- BLOOM: ALiBi, LayerNorm, GELU MLP;
- Llama: RMSNorm, full rotary (split halves), gated SiLU MLP (2048), grouped-query attention
  (4 key/value heads for 12 query heads), no biases;

8 prompt pairs of 20 random tokens that differ at two positions, resid_pre patched over all
12 x 20 = 240 (layer, position) sites, logit-difference metric read at the last position.
TransformerLens's sweep (``generic_activation_patch`` with ``layer_pos_patch_setter`` under
``torch.no_grad()``, on the installed backend) and lensarith's (``activation_patch``, engine
``auto``) run in the same process on the same model.

Columns: TransformerLens time (with ``--tl-sites N``: measured on N evenly spread sites and
scaled per site to all 240, which the note says), lensarith time (best of a run before and one
after TransformerLens's), their ratio, lensarith's time against the FLOP floor of exact
single-site patching (each site needs only the layers from its own on, the positions from it
onward, and one read position's unembedding; converted to seconds with a matmul-throughput
probe on the same device), the largest absolute difference of the two grids, the engine that
ran, and on CUDA the peak memory of each side. On CUDA the table is printed for fp32 and bf16.

Usage::

    python benchmarks/patching.py                 # TransformerLens's whole sweep (minutes per family)
    python benchmarks/patching.py --tl-sites 24   # time TransformerLens on 24 sites, scaled per site
    python benchmarks/patching.py --quick         # a smoke test: 2 layers, 2 pairs, 6 tokens
    python benchmarks/patching.py --real --tl-sites 12 --dtypes float32,bfloat16   # gemma-3-270m, smollm2-135m

With ``--real``, the rows are the real pretrained models (the ``real`` extra), on random prompts
of 20 tokens from their vocabularies; with a reduced precision the line also gives the largest
difference from the float32 grid (the parity the precision costs). On ``--device cuda`` without
CUDA the script says so and exits 0.
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
warnings.filterwarnings("ignore")

import transformer_lens.patching as tlp  # noqa: E402

from lensarith.core.backends import backend_of  # noqa: E402
from lensarith.models import cfg_from_json, new_hooked_transformer  # noqa: E402
from lensarith.patching import PatchConfig, activation_patch, make_pairs  # noqa: E402

SIZE = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_vocab=50257, n_ctx=64)
QUICK = dict(n_layers=2, d_model=64, n_heads=4, d_head=16, d_vocab=500, n_ctx=16)
FAMILIES: dict[str, dict] = {
    "GPT-2": dict(d_mlp=3072, act_fn="gelu_new", normalization_type="LN"),
    "GPT-J": dict(d_mlp=3072, act_fn="gelu_new", normalization_type="LN", positional_embedding_type="rotary",
                  rotary_dim=32, rotary_adjacent_pairs=True, parallel_attn_mlp=True),
    "NeoX": dict(d_mlp=3072, act_fn="gelu", normalization_type="LN", positional_embedding_type="rotary",
                 rotary_dim=16, parallel_attn_mlp=True),
    "BLOOM": dict(d_mlp=3072, act_fn="gelu_fast", normalization_type="LN", positional_embedding_type="alibi"),
    "Llama": dict(d_mlp=2048, act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
                  rotary_dim=64, gated_mlp=True, n_key_value_heads=4, final_rms=True),
}


#: real pretrained models (``la.load_model`` names; the ``real`` extra), run with ``--real``
REAL = ("gemma-3-270m", "smollm2-135m")


def build(family: str, size: dict, n_pairs: int, n_tokens: int, device: str, dtype: torch.dtype):
    if family in REAL:
        import lensarith as la

        model = la.load_model(family, device=device, dtype=dtype)
    else:
        spec = dict(size, **FAMILIES[family], seed=0, device=device, dtype=dtype)
        if spec.get("rotary_dim"):
            spec["rotary_dim"] = min(spec["rotary_dim"], spec["d_head"])
        if spec.get("n_key_value_heads"):
            spec["n_key_value_heads"] = min(spec["n_key_value_heads"], spec["n_heads"])
        spec["d_mlp"] = spec["d_mlp"] * size["d_model"] // 768
        model = new_hooked_transformer(cfg_from_json(spec))  # HookedTransformer on 3.x, a native bridge on 4.x
    model.eval()
    gen = torch.Generator().manual_seed(0)
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (n_pairs, n_tokens), generator=gen)
    corrupted = clean.clone()
    for pos in (n_tokens // 5, n_tokens // 2 + 1):
        corrupted[:, pos] = torch.randint(0, vocab, (n_pairs,), generator=gen)
    answers = torch.randint(0, vocab, (n_pairs,), generator=gen)
    wrong = torch.randint(0, vocab, (n_pairs,), generator=gen)
    return model, clean.to(device), corrupted.to(device), answers.to(device), wrong.to(device)


def floor_flops(cfg, width: int) -> float:
    """Forward FLOPs (2 per multiply-add) per example of the exact single-site resid_pre sweep's floor."""
    d, n, hd = cfg.d_model, cfg.n_layers, cfg.n_heads * cfg.d_head
    kv = (cfg.n_key_value_heads or cfg.n_heads) * cfg.d_head
    proj = 2 * d * (hd + 2 * kv) + 2 * hd * d
    mlp = 2 * (3 if cfg.gated_mlp else 2) * d * cfg.d_mlp

    def token(t: int) -> int:  # projections, MLP, and the query at position t attending over t + 1 keys
        return proj + mlp + 2 * 2 * (t + 1) * hd

    total = 0.0
    for layer in range(n):
        for p in range(width):
            total += (n - layer) * sum(token(t) for t in range(p, width)) + 2 * d * cfg.d_vocab
    return total


def throughput(device: str, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Sustained matmul FLOP/s on MLP-shaped products (best of a few runs)."""
    rows = 8192 if device == "cuda" else 1024
    a = torch.randn(rows, 768, device=device, dtype=dtype)
    b = torch.randn(768, 3072, device=device, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(8):
            a @ b
        sync(device)
        best = max(best, 8 * 2 * rows * 768 * 3072 / (time.perf_counter() - t0))
    return best


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device == "cuda" else "-"


def one_family(family: str, args, size: dict, device: str, dtype: torch.dtype) -> dict:
    n_pairs, n_tokens = (2, 6) if args.quick else (8, 20)
    model, clean, corrupted, answers, wrong = build(family, size, n_pairs, n_tokens, device, dtype)
    cfg = model.cfg
    n_sites = cfg.n_layers * n_tokens
    rows = torch.arange(n_pairs, device=device)
    pairs = make_pairs(model, clean, corrupted, answers=answers.tolist(), corrupted_answers=wrong.tolist())
    config = PatchConfig(max_tokens=args.max_tokens)

    def ours():
        sync(device)
        t0 = time.perf_counter()
        res = activation_patch(model, pairs, site="resid_pre", metric="logit_diff", progress=False, config=config)
        sync(device)
        return time.perf_counter() - t0, res

    peak_reset(device)
    first, res = ours()
    ours_peak = peak(device)

    def tl_metric(logits):
        read = logits[:, -1].float()
        return (read[rows, answers] - read[rows, wrong]).mean()

    picks = list(range(n_sites))
    if args.tl_sites and args.tl_sites < n_sites:
        picks = torch.linspace(0, n_sites - 1, args.tl_sites).round().long().unique().tolist()
    import pandas as pd

    index = pd.DataFrame([divmod(i, n_tokens) for i in picks], columns=["layer", "pos"])
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
        peak_reset(device)
        sync(device)
        t0 = time.perf_counter()
        got = tlp.generic_activation_patch(model, corrupted, cache, tl_metric, tlp.layer_pos_patch_setter,
                                           "resid_pre", index_df=index)
        sync(device)
        tl_measured = time.perf_counter() - t0
        tl_peak = peak(device)
    del cache
    rate = throughput(device, dtype)  # per family, next to lensarith's runs: the machine's load moves
    second, res2 = ours()
    ours_time = min(first, second)
    tl_time = tl_measured * n_sites / len(picks)
    diff = float((res.values.flatten()[picks] - got.float().cpu()).abs().max())
    floor_s = floor_flops(cfg, n_tokens) * n_pairs / rate
    values, backend = res.values.float().cpu(), backend_of(model).name
    return dict(family=family, rate=rate, tl=tl_time, values=values, tl_sites=len(picks), n_sites=n_sites, ours=ours_time, diff=diff,
                floor=floor_s, engine=res.meta["engine"], tl_peak=tl_peak, ours_peak=ours_peak,
                rerun=float((res.values - res2.values).abs().max()), backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tl-sites", type=int, default=0,
                        help="time TransformerLens on this many evenly spread sites and scale per site (0: all)")
    parser.add_argument("--max-tokens", type=int, default=PatchConfig().max_tokens, help="lensarith memory budget")
    parser.add_argument("--quick", action="store_true", help="a smoke test on tiny models")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ", ".join(FAMILIES))
    parser.add_argument("--real", action="store_true",
                        help="the real pretrained models (" + ", ".join(REAL) + ") instead of the random families")
    parser.add_argument("--dtypes", default=None,
                        help="comma-separated float32,bfloat16,float16 (default: float32, and bfloat16 on CUDA); "
                             "reduced precision also prints its largest difference from the float32 grid")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    size = QUICK if args.quick else SIZE
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to run on cuda")
        return
    dtypes = [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]
    if args.dtypes:
        dtypes = [getattr(torch, d.strip()) for d in args.dtypes.split(",") if d.strip()]
    families = list(REAL) if args.real else [f.strip() for f in args.families.split(",") if f.strip()]
    fp32_grids: dict[str, torch.Tensor] = {}
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} thread (no CUDA)"
    print(f"torch {torch.__version__} on {where}; load average {os.getloadavg()[0]:.2f}")
    shape = ("the real pretrained models " + ", ".join(REAL) if args.real else
             f"{size['n_layers']} layers, d_model {size['d_model']}, {size['n_heads']} heads, vocab {size['d_vocab']}")
    print(f"models: {shape}; {'2 pairs x 6' if args.quick else '8 pairs x 20'} tokens; resid_pre at every "
          f"(layer, position); logit difference at the last position; max_tokens {args.max_tokens}")
    for dtype in dtypes:
        print(f"\n{str(dtype).replace('torch.', '')}")
        head = (f"{'family':7} {'TransformerLens s':>17} {'lensarith s':>11} {'ratio':>7} {'/ floor':>8} "
                f"{'max diff':>9} {'engine':>6} {'GFLOP/s':>8}")
        if device == "cuda":
            head += f" {'TL peak MiB':>11} {'ours peak MiB':>13}"
        print(head)
        notes = {"floor: FLOPs of exact single-site patching at the matmul probe's rate (GFLOP/s, probed per family "
                 "between the TransformerLens run and lensarith's second run)"}
        for family in families:
            try:
                r = one_family(family, args, size, device, dtype)
            except ValueError as exc:  # e.g. TransformerLens 4.x's native model has no ALiBi
                print(f"{family:7} not built on this TransformerLens: {exc}")
                continue
            line = (f"{r['family']:7} {r['tl']:17.2f} {r['ours']:11.2f} {r['tl'] / r['ours']:6.2f}x "
                    f"{r['ours'] / r['floor']:7.2f}x {r['diff']:9.1e} {r['engine']:>6} {r['rate'] / 1e9:8.1f}")
            if device == "cuda":
                line += f" {r['tl_peak']:>11} {r['ours_peak']:>13}"
            if dtype == torch.float32:
                fp32_grids[family] = r["values"]
            elif family in fp32_grids:
                line += f"  vs float32: max |diff| {float((r['values'] - fp32_grids[family]).abs().max()):.2e}"
                line += f" (grid scale {float(fp32_grids[family].abs().max()):.2f})"
            print(line, flush=True)
            if r["tl_sites"] < r["n_sites"]:
                notes.add(f"TransformerLens measured on {r['tl_sites']} of {r['n_sites']} sites per family and "
                          "scaled per site; max diff over those sites")
            notes.add(f"backend {r['backend']}")
            if r["rerun"]:
                notes.add(f"lensarith's two runs differ by up to {r['rerun']:.1e}")
        for note in sorted(notes):
            print("  " + note)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
