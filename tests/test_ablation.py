"""FFN ablation (the paper's Fig 7) on tiny random models."""

from __future__ import annotations

import pytest
import torch

import lensarith as la
from lensarith.ablation import AblationResult, ffn_ablation, removal_counts


@pytest.fixture(scope="module")
def model():
    return la.tiny_model(n_layers=4, d_model=32, seed=1)


@pytest.fixture(scope="module")
def sets(model):
    def single(examples):
        return list(la.tokenize(model, examples, drop_multi_token=True).examples[:10])

    return {"abstractive": single(la.build_prompts("capitals", n=16)),
            "extractive": single(la.build_prompts("capitals", format="extractive", n=16))}


def _naive(model, examples, k: int, mode: str, means=None):
    """Full forwards from the tokens with the top k MLPs ablated: (correct, rank)."""
    batch = la.tokenize(model, examples)
    n = model.cfg.n_layers
    ivs = [la.Ablate(la.Site("mlp_out", layer), mode, None if means is None else means[layer]) for layer in range(n - k, n)]
    logits = la.run_with_interventions(model, batch, ivs)
    rank = (logits > logits.gather(1, batch.answer_ids[:, None])).sum(-1)
    return rank == 0, rank


def test_removal_counts_follow_sixths():
    assert removal_counts(24) == [0, 4, 8, 12, 16, 20, 24]
    assert removal_counts(8) == [0, 1, 3, 4, 5, 7, 8]
    assert removal_counts(4, steps=2) == [0, 2, 4]
    assert removal_counts(2) == [0, 1, 2]
    with pytest.raises(la.LensarithError, match=r"steps must be a positive int .* got 0"):
        removal_counts(4, steps=0)


def test_zero_ablation_matches_full_forwards(model, sets):
    out = ffn_ablation(model, sets, batch_size=3)
    assert isinstance(out, AblationResult) and out.sets == ["abstractive", "extractive"]
    assert out.n_removed == [0, 1, 2, 3, 4]  # round(i * 4 / 6)
    assert out.labels["removed"] == ["none", "L3", "L2-L3", "L1-L3", "L0-L3"]
    for s, name in enumerate(out.sets):
        for j, k in enumerate(out.n_removed):
            correct, rank = _naive(model, sets[name], k, "zero")
            assert torch.equal(out[f"correct.{name}"][j], correct), (name, k)
            assert float(out["accuracy"][s, j]) == pytest.approx(float(correct.float().mean()))
            assert float(out["mrr"][s, j]) == pytest.approx(float((1 / (rank.float() + 1)).mean()), abs=1e-6)
    # step 0 is the unablated model
    lens = la.logit_lens(model, la.tokenize(model, sets["abstractive"]))
    assert float(out.accuracy_of("abstractive")[0]) == pytest.approx(float(lens.accuracy("answer")[-1]))


def test_mean_ablation_uses_the_mean_mlp_output_over_real_tokens(model, sets):
    out = ffn_ablation(model, sets, mode="mean", batch_size=4)
    n = model.cfg.n_layers
    total, count = torch.zeros(n, model.cfg.d_model), 0
    for examples in sets.values():
        for ex in examples:
            _, cache = model.run_with_cache(ex.prompt)
            for layer in range(n):
                total[layer] += cache[f"blocks.{layer}.hook_mlp_out"][0].sum(0)
            count += cache["blocks.0.hook_mlp_out"].shape[1]
    means = total / count
    for name in out.sets:
        for j, k in enumerate(out.n_removed):
            correct, _ = _naive(model, sets[name], k, "mean", means)
            assert torch.equal(out[f"correct.{name}"][j], correct), (name, k)


def test_ablating_mlps_that_write_nothing_changes_nothing(sets):
    quiet = la.tiny_model(n_layers=4, d_model=32, seed=1)
    with torch.no_grad():
        for block in quiet.blocks:
            block.mlp.W_out.zero_()
            block.mlp.b_out.zero_()
    out = ffn_ablation(quiet, sets)
    assert torch.equal(out["accuracy"], out["accuracy"][:, :1].expand_as(out["accuracy"]))
    assert torch.all(out["retained"][:, 0][out["accuracy"][:, 0] > 0] == 1.0)


def test_a_task_name_gives_abstractive_and_extractive_sets_side_by_side(model, tmp_path):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = ffn_ablation(model, "capitals", n=12, steps=2)
    assert out.sets == ["abstractive", "extractive"] and out.n_removed == [0, 2, 4]
    assert out.meta["reports"]["abstractive"]["dropped"]  # multi-token capitals are dropped and reported
    table = out.table()
    assert [r["removed"] for r in table] == [0, 2, 4] and "extractive_accuracy" in table[0]
    assert out.drop("abstractive") == pytest.approx(table[0]["abstractive_accuracy"] - table[-1]["abstractive_accuracy"])
    back = la.Result.load(out.save(tmp_path / "abl"))
    assert isinstance(back, AblationResult) and back.table() == table
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())
    assert "ffn_ablation" in la.list_recipes()


def test_bad_input_raises_clear_errors(model, sets):
    with pytest.raises(la.LensarithError, match=r"mode must be 'zero' or 'mean', got 'half'"):
        ffn_ablation(model, sets, mode="half")
    with pytest.raises(la.LensarithError, match=r"prompts='past': extractive prompts exist for capitals"):
        ffn_ablation(model, "past")
    with pytest.raises(la.LensarithError, match=r"prompt set 'extractive' is empty"):
        ffn_ablation(model, {"abstractive": sets["abstractive"], "extractive": []})
    with pytest.raises(la.LensarithError, match=r"prompt set 'prompts' must hold lensarith.Example objects"):
        ffn_ablation(model, ["Q: What is the capital of Poland?\nA:"])
    with pytest.raises(la.LensarithError, match=r"steps must be a positive int"):
        ffn_ablation(model, sets, steps=-1)


def test_planted_organism_shows_the_ablation_contrast():
    """Zeroing MLPs from the planted layer up breaks the abstractive prompts, not the extractive ones."""
    import json

    from lensarith._paths import data_dir

    directory = data_dir() / "organism-planted"
    assert (directory / "model.safetensors").is_file(), "data/organism-planted ships with the repository"
    torch.set_num_threads(1)
    model = la.load_model("organism-planted", device="cpu")
    layer = json.loads((directory / "lensarith.json").read_text())["organism"]["config"]["planted"]["layer"]
    L = model.cfg.n_layers
    res = ffn_ablation(model, "capitals", n=40, steps=L)
    assert res.accuracy_of("abstractive")[0] > 0.9 and res.accuracy_of("extractive")[0] > 0.9
    assert res.drop("abstractive", L - layer) >= 0.3
    assert res.drop("extractive", L - layer) <= 0.1
