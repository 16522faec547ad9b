"""The nnsight backend against TransformerLens on the organism: time, agreement, traces per sweep.

The organism (8 layers, d_model 128) as a ``HookedTransformer`` and, exported with
``to_hf_gpt2``, as a Hugging Face ``GPT2LMHeadModel`` behind nnsight (local). For an activation
patching sweep (resid_pre, all layers x positions, 8 pairs), an FFN ablation curve and a layer
search it prints both times, their ratio, the largest difference and the number of nnsight
traces (what a remote run would send to NDIF: one request per trace).

It also runs one sweep the way a remote request runs: the hooks cross a cloudpickle round trip
with lensarith's code shipped by value (as ``nnsight.register`` does), the trace runs here on
that copy, and the values its hooks saw are replayed locally. No network is used.

Usage::

    python benchmarks/nnsight_backend.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

import lensarith as la  # noqa: E402
from lensarith.ablation import ffn_ablation  # noqa: E402
from lensarith.core.backends import _nnsight as N  # noqa: E402
from lensarith.core.backends import backend_of  # noqa: E402
from lensarith.vectors import SearchConfig, find_layers  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def line(what: str, ref, got, t_ref: float, t_got: float, diff: float, traces: int) -> None:
    print(f"{what:<34} TL {t_ref:6.2f} s  nnsight {t_got:6.2f} s  ratio {t_got / t_ref:5.2f}  "
          f"max diff {diff:.1e}  traces {traces}")


def remote_like(model, fn):
    """``fn()`` with every trace run as a remote one would be, but here (see the module docstring)."""
    import cloudpickle
    from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES

    real_interleave, real_trace = N._interleave, model.lm.trace

    def server(lm, sm, plan, **kwargs):
        assert "lensarith" in _PICKLE_BY_VALUE_MODULES
        return real_interleave(lm, sm, cloudpickle.loads(cloudpickle.dumps(plan)), **kwargs)

    def trace(*args, **kwargs):
        kwargs.pop("remote", None)
        return real_trace(*args, **kwargs)

    N._interleave, model.lm.trace, model.remote = server, trace, True
    try:
        return fn()
    finally:
        N._interleave, model.remote = real_interleave, False
        del model.lm.trace


def main() -> None:
    tl = la.load_model("organism")
    nn = la.load_model("organism", backend="nnsight")
    print(f"organism: TransformerLens {backend_of(tl).name} vs {backend_of(nn).name} over {type(nn.module).__name__}")
    pairs = la.pair_examples(tl, la.build_prompts("capitals", format="zero_shot", n=60), n=8)
    la.activation_patch(nn, pairs, site="resid_pre")  # warm-up
    ref, t_ref = timed(lambda: la.activation_patch(tl, pairs, site="resid_pre"))
    got, t_got = timed(lambda: la.activation_patch(nn, pairs, site="resid_pre"))
    n_sites = got.values.numel()
    line(f"patching sweep ({n_sites} sites)", ref, got, t_ref, t_got, float((ref.values - got.values).abs().max()),
         got.meta["traces"])
    ref, t_ref = timed(lambda: ffn_ablation(tl, "capitals", mode="zero", n=24, steps=8))
    got, t_got = timed(lambda: ffn_ablation(nn, "capitals", mode="zero", n=24, steps=8))
    line("ablation curve (8 steps)", ref, got, t_ref, t_got,
         float((ref.tensors["accuracy"] - got.tensors["accuracy"]).abs().max()), got.meta["traces"])
    cfg = SearchConfig(n_contexts=16)
    ref, t_ref = timed(lambda: find_layers(tl, "capitals", config=cfg))
    got, t_got = timed(lambda: find_layers(nn, "capitals", config=cfg))
    diff = max(float((ref.tensors[k] - got.tensors[k]).nan_to_num().abs().max()) for k in ref.tensors)
    line("layer search (sweep method)", ref, got, t_ref, t_got, diff, got.meta["traces"])
    sim, t_sim = timed(lambda: remote_like(nn, lambda: la.activation_patch(nn, pairs, site="mlp_out")))
    want = la.activation_patch(tl, pairs, site="mlp_out")
    print(f"{'remote-style sweep (mlp_out)':<34} {t_sim:6.2f} s  max diff vs TL "
          f"{float((sim.values - want.values).abs().max()):.1e}  traces {sim.meta['traces']} "
          "(hooks pickled by value, replayed here)")


if __name__ == "__main__":
    main()
