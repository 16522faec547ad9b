"""The token budget: every forward holds at most ``max_tokens`` positions, and chunked == batched."""

from __future__ import annotations

import pytest
import torch

import lensarith as la
from lensarith.core import Ablate, Site, backends, run, tokenize
from lensarith.core.run import run_with_interventions


def _widths(model, monkeypatch):
    seen = []
    backend = backends.backend_of(model)
    real = type(backend).forward
    monkeypatch.setattr(type(backend), "forward", lambda self, tokens, *, stop: seen.append(tokens.numel()) or real(self, tokens, stop=stop))
    return seen


def test_run_with_interventions_chunked_equals_batched(model, prompts, monkeypatch):
    batch = tokenize(model, prompts)
    ablate = [Ablate(Site("mlp_out", 0))]
    whole = run_with_interventions(model, batch, ablate, max_tokens=None)
    seen = _widths(model, monkeypatch)
    budget = 2 * batch.tokens.shape[1]
    small = run_with_interventions(model, batch, ablate, max_tokens=budget)
    assert len(seen) >= len(batch) // 2 and max(seen) <= budget  # the budget held every forward
    torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-5)
    by_rows = run_with_interventions(model, batch, ablate, batch_size=3)
    torch.testing.assert_close(by_rows, whole, atol=1e-5, rtol=1e-5)


def test_the_budget_counts_group_copies(model, prompts, monkeypatch):
    batch = tokenize(model, prompts)
    seen = _widths(model, monkeypatch)
    groups = [[], [Ablate(Site("mlp_out", 1))], [Ablate(Site("attn_out", 0))]]
    budget = 3 * 2 * batch.tokens.shape[1]  # two rows of three copies
    out = run(model, batch, groups=groups, read="last", max_tokens=budget)
    assert max(seen) <= budget
    whole = run(model, batch, groups=groups, read="last", max_tokens=None)
    torch.testing.assert_close(out.final, whole.final, atol=1e-5, rtol=1e-5)


def test_a_recipe_stays_within_the_default_budget(model, monkeypatch):
    from lensarith.core.run import MAX_TOKENS

    gen = torch.Generator().manual_seed(0)
    n, width = MAX_TOKENS // 12 + 40, 12  # more than one budget's worth of tokens
    tokens = torch.randint(0, model.cfg.d_vocab, (n, width), generator=gen)
    lengths = torch.randint(6, width + 1, (n,), generator=gen)
    batch = la.Batch(tokens, lengths, answer_ids=torch.randint(0, model.cfg.d_vocab, (n,), generator=gen))
    seen = _widths(model, monkeypatch)
    got = la.logit_lens(model, batch, batch_size=n, progress=False)  # a batch_size that alone would pass it
    assert len(seen) >= 2 and max(seen) <= MAX_TOKENS
    for i in (0, n // 2, n - 1):
        one = la.logit_lens(model, batch.take(torch.tensor([i])), progress=False)
        torch.testing.assert_close(got.normed[:, i], one.normed[:, 0], atol=1e-5, rtol=1e-5)


def test_a_bad_budget_is_refused(model, prompts):
    batch = tokenize(model, prompts)
    with pytest.raises(la.LensarithError, match="max_tokens"):
        run_with_interventions(model, batch, max_tokens=0)
