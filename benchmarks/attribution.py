"""Attribution patching against exact activation patching, per site and method, in one run.

For each model, exact patching (``activation_patch``) and every attribution method
(``attribution_patch(method=...)``: ``atp``, ``atp+qk``, ``atp*``, ``relp``) sweep the same
sites: resid_pre, attn_out, mlp_out (layer x position) and heads (``z``, layer x head over
all positions). The score is the Pearson correlation of each example's change from its
corrupted run (``per_example - corrupted``, flattened over the grid and the pairs: "per
example"), and in brackets the correlation of the grids' means over pairs.

Models:

- (a) the organism (``lensarith.load_model("organism")``), 16 capitals pairs; goal >= 0.98
  per example on every site;
- (b) stress models, where plain attribution patching is known to break, each with random
  prompt pairs:
  * ``saturated``: 4 layers, d_model 128, query and key weights scaled by 4 (near one-hot
    attention);
  * ``large-patch``: 4 layers, d_model 128, MLP input weights scaled by 3 and pairs that differ
    at every other position (patches that cross GELU and softmax nonlinearities);
  * ``deep``: GPT-2-small shape (12 layers, d_model 768, 12 heads), random weights.
  The new methods should beat ``atp`` by a clear margin there.

Usage::

    python benchmarks/attribution.py            # all models
    python benchmarks/attribution.py --quick    # organism on 4 pairs, small stress models
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

import lensarith as la  # noqa: E402
from lensarith.models import cfg_from_json, new_hooked_transformer  # noqa: E402
from lensarith.patching import activation_patch, attribution_patch, make_pairs, pair_examples  # noqa: E402

METHODS = ("atp", "atp+qk", "atp*", "relp", "relp+qk")
SITES = ("resid_pre", "attn_out", "mlp_out", "z")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def stress(name: str, quick: bool):
    """A random model of the stress kind ``name`` and random prompt pairs for it."""
    small = dict(n_layers=2 if quick else 4, d_model=64 if quick else 128, n_heads=4, d_head=16 if quick else 32,
                 d_mlp=256 if quick else 512, d_vocab=500, n_ctx=32)
    deep = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=32)
    size = small if name != "deep" or quick else deep
    model = new_hooked_transformer(cfg_from_json(dict(size, act_fn="gelu_new", normalization_type="LN", seed=1)))
    model.eval()
    with torch.no_grad():
        for block in model.blocks:
            if name == "saturated":
                block.attn.W_Q.mul_(4.0)
                block.attn.W_K.mul_(4.0)
            if name == "large-patch":
                block.mlp.W_in.mul_(3.0)
    n_pairs, width = (4, 8) if quick else (8, 12)
    gen = torch.Generator().manual_seed(0)
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (n_pairs, width), generator=gen)
    corrupted = clean.clone()
    where = range(1, width, 2) if name == "large-patch" else (width // 4, width // 2)
    for pos in where:
        corrupted[:, pos] = torch.randint(0, vocab, (n_pairs,), generator=gen)
    answers = torch.randint(0, vocab, (n_pairs,), generator=gen).tolist()
    wrong = torch.randint(0, vocab, (n_pairs,), generator=gen).tolist()
    return model, make_pairs(model, clean, corrupted, answers=answers, corrupted_answers=wrong)


def one_model(name: str, model, pairs) -> None:
    print(f"\n{name}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, {len(pairs)} pairs x "
          f"{pairs.clean.tokens.shape[1]} tokens")
    print(f"{'site':10} " + " ".join(f"{m:>15}" for m in METHODS) + f" {'exact s':>8}")
    cost: dict[str, float] = {m: 0.0 for m in METHODS}
    times: dict[str, float] = {m: 0.0 for m in METHODS}
    groups: set[str] = set()
    fixed: list[str] = []
    for site in SITES:
        t0 = time.perf_counter()
        exact = activation_patch(model, pairs, site=site, progress=False)
        exact_s = time.perf_counter() - t0
        moved = exact.per_example - exact.corrupted
        cells = []
        for m in METHODS:
            t0 = time.perf_counter()
            res = attribution_patch(model, pairs, site=site, method=m)
            times[m] += time.perf_counter() - t0
            cost[m] = max(cost[m], res.meta["forward_equivalents"])
            if "graddrop_groups" in res.meta:
                groups.add(str(res.meta["graddrop_groups"]))
            if m == "atp+qk":
                fixed.append(f"{site} {res.meta['qk_fixed_sites']}")
            cells.append(f"{corr(moved, res.per_example - res.corrupted):6.3f} ({corr(exact.values, res.values):5.3f})")
        print(f"{site:10} " + " ".join(f"{c:>15}" for c in cells) + f" {exact_s:8.2f}", flush=True)
    print("forward-equivalents (max over sites): " + ", ".join(f"{m} {cost[m]:.2f}" for m in METHODS))
    print("attribution time, all sites: " + ", ".join(f"{m} {times[m]:.2f} s" for m in METHODS))
    print("GradDrop groups (atp*): " + "; ".join(sorted(groups)))
    print("sites given the QK fix within the budget (atp+qk): " + ", ".join(fixed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--models", default="organism,saturated,large-patch,deep")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; load average {os.getloadavg()[0]:.2f}")
    print("cells: Pearson r per example (r of the means over pairs)")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name == "organism":
            model = la.load_model("organism")
            pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=80), n=4 if args.quick else 16)
        else:
            model, pairs = stress(name, args.quick)
        one_model(name, model, pairs)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
