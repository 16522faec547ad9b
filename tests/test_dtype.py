"""Reduced precision: ``load_model(dtype=)`` validates, casts, and every recipe still runs.

How much bf16/fp16 changes the numbers is measured by the benchmarks, not asserted here; these
tests check the cast itself, that readouts and the fast engine run on it, and that the lens's
float32 readout of bf16 weights agrees with a float32 product of the same weights.
"""

from __future__ import annotations

import pytest
import torch

import lensarith as la
from lensarith.core import readout
from lensarith.patching import PatchConfig, activation_patch, make_pairs


@pytest.mark.parametrize("dtype", ["bf16", torch.float16, "float32"])
def test_load_model_casts_weights_and_config(dtype):
    model = la.load_model("organism", dtype=dtype)
    want = {"bf16": torch.bfloat16, "float32": torch.float32}.get(dtype, dtype)
    assert model.cfg.dtype == want and model.W_U.dtype == want and model.blocks[0].attn.W_Q.dtype == want


@pytest.mark.parametrize("bad", ["float8", torch.int8, 16])
def test_a_bad_dtype_is_refused_before_loading(bad):
    with pytest.raises(la.LensarithError, match=r"dtype must be None, 'float32', 'bfloat16'.*got"):
        la.load_model("no-such-model-anywhere", dtype=bad)


def test_the_lens_reads_bf16_weights_in_float32(prompts):
    model = la.load_model("organism", dtype="bf16")
    lens = la.logit_lens(model, prompts)
    ranks = lens.rank("answer")
    full = torch.stack([x @ model.W_U.float() + model.b_U.float() for x in lens.normed])  # float32 products
    ids = lens.tensors["answer_ids"]
    target = full.gather(-1, ids[None, :, None].expand(full.shape[0], -1, 1))
    assert torch.equal(ranks, (full > target).sum(-1))
    assert lens.top_tokens(2)[0].shape == (*ranks.shape, 2)


def test_the_fast_engine_runs_in_bf16():
    model = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.cfg.d_vocab, (3, 7), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 2] = (corrupt[:, 2] + 1) % model.cfg.d_vocab
    pairs = make_pairs(model, clean, corrupt, answers=[1, 2, 3], corrupted_answers=[4, 5, 6])
    ref = activation_patch(model, pairs, config=PatchConfig(engine="fast"))
    from lensarith.models._dtype import with_dtype

    half = with_dtype(model, "bf16")
    got = activation_patch(half, make_pairs(half, clean, corrupt, answers=[1, 2, 3], corrupted_answers=[4, 5, 6]),
                           config=PatchConfig(engine="fast"))
    assert got.meta["engine"] == "fast" and bool(torch.isfinite(got.values).all())
    assert float((got.values.float() - ref.values).abs().max()) < 0.25 * float(ref.values.abs().max()) + 1e-3
