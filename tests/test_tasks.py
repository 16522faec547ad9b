import pytest
import torch

import lensarith as la
from lensarith.core import token_ids


@pytest.mark.parametrize("task,minimum", [("capitals", 240), ("us_capitals", 50), ("uppercase", 200),
                                          ("uppercase_words", 100), ("past_regular", 400), ("past_irregular", 120)])
def test_dataset_sizes(task, minimum):
    rows = la.load_pairs(task)
    assert len(rows) >= minimum
    assert all(r["argument"] != r["answer"] for r in rows)


def test_paper_formats():
    cap = [e for e in la.build_prompts("capitals") if e.argument == " Poland"][0]
    assert cap.prompt == "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:"
    assert cap.answer == " Warsaw"
    past = [e for e in la.build_prompts("past") if e.argument == " abolish"][0]
    assert past.prompt == "Today I abandon. Yesterday I abandoned. Today I abolish. Yesterday I"
    assert past.answer == " abolished"
    col = la.build_prompts("uppercase", n=1)[0]
    assert col.prompt.startswith("Q: On ") and col.prompt.endswith("?\nA:")
    assert col.answer.strip() == col.argument.strip().capitalize()


def test_extractive_and_counterfactual_formats():
    ext = [e for e in la.build_prompts("capitals", format="extractive") if e.argument == " Poland"][0]
    assert ext.prompt.startswith("The capital of France is Paris. The capital of Poland is Warsaw.\nQ:")
    cf = la.build_prompts("capitals", format="counterfactual", seed=1)
    assert all(e.answer.strip() in e.prompt for e in cf)
    truth = {r["argument"]: r["answer"] for r in la.load_pairs("capitals")}
    assert all(truth[e.argument.strip()] != e.answer.strip() for e in cf)
    col = la.build_prompts("uppercase", format="extractive", n=5)
    assert all(e.answer == e.argument for e in col)  # lowercase demo: the answer is copied
    with pytest.raises(la.LensarithError, match="format='extractive' is defined for"):
        la.build_prompts("past", format="extractive")


def test_random_token_contexts_are_seeded():
    src = la.build_prompts("capitals", n=5)
    a = la.random_token_contexts(src, seed=3)
    assert a == la.random_token_contexts(src, seed=3)
    assert a != la.random_token_contexts(src, seed=4)
    words = a[0].prompt.split()
    assert len(words) == 3 * 4 + 3 - 0 or words.count(src[0].argument.strip()) >= 3
    assert a[0].answer == src[0].answer and a[0].task == "random:capitals"


def test_tokenize_pads_right_and_reports_multi_token(model):
    ex = la.build_prompts("capitals")[:40]
    batch = la.tokenize(model, ex)
    assert len(batch) == 40
    for i, e in enumerate(ex):
        ids = model.to_tokens(e.prompt)[0]
        n = int(batch.lengths[i])
        assert torch.equal(batch.tokens[i, :n], ids)
        assert (batch.tokens[i, n:] == model.tokenizer.pad_token_id).all()
    multi = batch.report["multi_token_answer"] + batch.report["multi_token_argument"]
    assert multi, "some capitals have multi-word names"
    single = la.tokenize(model, ex, drop_multi_token=True, scoring="single_token")
    assert len(single) == 40 - len(set(multi)) and single.report["dropped"] == sorted(set(multi))
    ruled = la.tokenize(model, ex, drop_multi_token=True)  # the first-token rule keeps some multi-token items
    kept = set(ruled.report["first_token"])
    assert kept and kept <= set(multi) and len(ruled) == 40 - len(ruled.report["dropped"]) > len(single)


def test_tokenize_errors(model):
    with pytest.raises(la.LensarithError, match="examples is empty"):
        la.tokenize(model, [])
    bad = la.Example("Q: What is the capital of Poland?\nA:", " Qqqxyz", " Poland")
    with pytest.raises(la.LensarithError, match=r"\[' Qqqxyz'\] not in the model's vocabulary"):
        la.tokenize(model, [bad])
    assert len(la.tokenize(model, [bad, la.build_prompts("capitals", n=1)[0]], drop_multi_token=True)) == 1
    with pytest.raises(la.LensarithError, match="task='planets' is unknown"):
        la.build_prompts("planets")


def test_batch_chunks_and_positions(model):
    batch = la.tokenize(model, la.build_prompts("past", n=5) + la.build_prompts("capitals", n=3))
    chunks = list(batch.chunks(3))
    assert [len(c) for c in chunks] == [3, 3, 2]
    assert all(c.tokens.shape[1] == int(c.lengths.max()) for c in chunks)
    assert torch.equal(batch.positions(-2), batch.lengths - 2)
    with pytest.raises(la.LensarithError, match="batch_size must be a positive int, got 0"):
        list(batch.chunks(0))


def test_token_ids(model):
    assert token_ids(model, [" Paris", "Warsaw"]).tolist() == [model.to_single_token("Paris"), model.to_single_token("Warsaw")]
    with pytest.raises(la.LensarithError, match="token ids must lie in"):
        token_ids(model, [10**9])


def test_generated_colour_data_equals_what_its_script_writes():
    """colors.jsonl and colors_scenes.jsonl are committed data; build_colors.py writes them byte for byte, and the
    organism's scene writer draws the script's rows call for call."""
    import importlib.util
    import json
    import random
    from pathlib import Path

    from lensarith.organism.scenes import colour_scenes

    folder = Path(__file__).resolve().parent.parent / "data" / "tasks"
    spec = importlib.util.spec_from_file_location("build_colors_under_test", folder / "build_colors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, rows in (("colors.jsonl", script.build()), ("colors_scenes.jsonl", script.scene_lists())):
        assert (folder / name).read_text(encoding="utf-8") == "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in rows), name
    scenes = colour_scenes()
    assert (scenes.COLORS, scenes.OBJECTS, scenes.SURFACES, scenes.VERBS) == (
        script.COLORS, script.OBJECTS, script.SURFACES, script.VERBS)
    for seed in range(20):
        ours, theirs = random.Random(seed), random.Random(seed)
        for color in script.COLORS[:5]:
            assert scenes.make_row(ours, color) == script.make_row(theirs, color)
        assert ours.random() == theirs.random()  # the same number of draws
