"""The logit lens's one pass over the vocabulary: chunked == all at once, later readouts free.

``readout.scan`` reads the vocabulary in column chunks of bounded memory; its ranks must
equal a full computation's count of strictly higher logits (so a full sort's position up to
exact ties), on vocabularies with planted exact ties and under an output soft cap; its guard
(a logit outside its rounding bound) must recount correctly; and a ``LensResult`` must answer
every later readout of the same ids from the first pass, with no unembedding.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import lensarith as la
from lensarith.core import readout


def wide(cap: float = -1.0, seed: int = 0) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=24, n_heads=2, d_head=12, d_mlp=48, d_vocab=997, n_ctx=16,
                                  act_fn="gelu", normalization_type="LN", seed=seed, output_logits_soft_cap=cap)
    m = HookedTransformer(cfg)
    m.eval()
    with torch.no_grad():
        m.unembed.W_U[:, 500:520] = m.unembed.W_U[:, 100:120]  # exact ties: duplicated columns
        m.unembed.b_U.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
        m.unembed.b_U[500:520] = m.unembed.b_U[100:120]
    return m


@pytest.mark.parametrize("cap", [-1.0, 0.5])
@pytest.mark.parametrize("elements", [6 * 997, 6 * 100, 6 * 37, 6])
def test_chunked_scan_equals_the_full_computation(cap, elements):
    model = wide(cap)
    x = readout.final_norm(model, torch.randn(6, 24, generator=torch.Generator().manual_seed(1))).detach() * 8
    ids = [torch.tensor([0, 100, 500, 996, 7, 119]), torch.tensor([3, 3, 3, 519, 250, 1])]
    full = readout.unembed(model, x).float()
    got = readout.scan(model, x, ids, k=5, elements=elements)
    rows = torch.arange(6)
    for i, r, lg, p in zip(ids, got.ranks, got.logits, got.probs):
        assert torch.equal(r, readout.rank(full, i))
        ties = (full == full[rows, i][:, None]).sum(-1) - 1
        order = torch.sort(full, dim=-1, descending=True, stable=True).indices
        pos = (order == i[:, None]).float().argmax(-1)  # the full sort's position
        assert bool(((pos >= r) & (pos <= r + ties)).all())  # equal up to exact ties
        torch.testing.assert_close(lg, full[rows, i], atol=1e-5, rtol=0)
        torch.testing.assert_close(p, full.softmax(-1)[rows, i], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.logsumexp, full.logsumexp(-1), atol=1e-5, rtol=0)
    assert torch.equal(full.gather(-1, got.top), full.topk(5).values)
    if cap > 0:
        assert int((full == full.max(-1, keepdim=True).values).sum()) > 6  # the cap made ties to count through


def test_the_bound_guard_recounts(monkeypatch):
    model = wide(0.5, seed=3)  # a cap squashing logits into ties: estimates off by one ulp matter
    x = readout.final_norm(model, torch.randn(6, 24, generator=torch.Generator().manual_seed(2))).detach() * 8
    ids = [torch.tensor([0, 100, 500, 996, 7, 119])]
    full = readout.unembed(model, x).float()
    calls = []
    real = readout._slice_logits
    monkeypatch.setattr(readout, "_slice_logits", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(readout, "_BOUND", 0.0)  # a zero bound: rows land outside it and are recounted
    got = readout.scan(model, x, ids, elements=6 * 100)
    assert len(calls) > 10  # the one pass (10 chunks) and the recount
    assert torch.equal(got.ranks[0], readout.rank(full, ids[0]))


def test_scan_refuses_non_finite_logits():
    model = wide()
    x = torch.randn(3, 24)
    x[1, 0] = float("nan")
    with pytest.raises(la.LensarithError, match="non-finite values .* in the lens test"):
        readout.scan(model, x, [torch.tensor([1, 2, 3])], where="the lens test", elements=30)


@pytest.mark.parametrize("elements", [None, 40])
def test_later_readouts_do_no_unembedding(model, prompts, monkeypatch, elements):
    if elements is not None:
        monkeypatch.setattr(readout, "SCAN_ELEMENTS", elements)  # many chunks per layer
    lens = la.logit_lens(model, prompts, stream="all")
    full = lens.logits()
    calls = []
    real_scan = readout.scan
    monkeypatch.setattr(readout, "scan", lambda *a, **k: calls.append(1) or real_scan(*a, **k))
    rank = lens.rank("answer")
    assert len(calls) == len(lens.layers)  # one pass per layer, answer and argument together
    monkeypatch.setattr(readout, "scan", lambda *a, **k: pytest.fail("a later readout unembedded again"))
    monkeypatch.setattr(readout, "unembed", lambda *a, **k: pytest.fail("a later readout unembedded again"))
    rr, acc = lens.reciprocal_rank("answer"), lens.accuracy("argument")
    top, _ = lens.top_tokens(3)
    probs, logp, arg = lens.probs("answer"), lens.log_probs("answer"), lens.rank("argument")
    ids = lens.tensors["answer_ids"]
    target = full.gather(-1, ids[None, :, None].expand(full.shape[0], -1, 1))[..., 0]
    assert torch.equal(rank, (full > target[..., None]).sum(-1))
    torch.testing.assert_close(rr, 1 / (rank.float() + 1))
    arg_ids = lens.tensors["argument_ids"]
    arg_t = full.gather(-1, arg_ids[None, :, None].expand(full.shape[0], -1, 1))
    assert torch.equal(arg, (full > arg_t).sum(-1))
    torch.testing.assert_close(acc, (arg == 0).float().mean(-1))
    assert torch.equal(full.gather(-1, top), full.topk(3).values)
    torch.testing.assert_close(probs, full.softmax(-1).gather(-1, ids[None, :, None].expand(full.shape[0], -1, 1))[..., 0])
    torch.testing.assert_close(logp, full.log_softmax(-1).gather(-1, ids[None, :, None].expand(full.shape[0], -1, 1))[..., 0])


def test_other_ids_and_more_top_tokens_scan_once_more(model, prompts, monkeypatch):
    lens = la.logit_lens(model, prompts)
    lens.rank("answer")
    calls = []
    real_scan = readout.scan
    monkeypatch.setattr(readout, "scan", lambda *a, **k: calls.append(k.get("k")) or real_scan(*a, **k))
    lens.rank(" Paris")
    lens.reciprocal_rank(" Paris")
    assert len(calls) == len(lens.layers)
    lens.top_tokens(lens.TOP_K + 2)
    assert calls[-1] == lens.TOP_K + 2 and len(calls) == 2 * len(lens.layers)
    lens.top_tokens(4)
    assert len(calls) == 2 * len(lens.layers)


def test_attach_forgets_the_statistics(model, prompts, tmp_path):
    lens = la.logit_lens(model, prompts)
    want = lens.rank("answer")
    lens.save(tmp_path / "lens")
    loaded = la.Result.load(tmp_path / "lens")
    with pytest.raises(la.LensarithError, match="no model attached"):
        loaded.rank("answer")
    assert torch.equal(loaded.attach(model).rank("answer"), want)
