"""The first-token rule: which multi-token items a recipe scores, and the counts it reports."""

import pytest

import lensarith as la
from lensarith.tasks import DROP_REASONS, classify_items, scoring_counts

#: the paper's tasks and out-of-domain sets that must give at least 100 scored items on a real model
REAL_MIN = {"capitals": 100, "region_capitals": 100, "uppercase": 100, "uppercase_words": 100, "past": 100,
            "past_irregular": 100}


def _enc(table):
    return lambda text: table[text]


def test_rule_on_known_ids():
    table = {" Rome": [1], " Italy": [2], " San Marino": [3, 4], " San": [3], " Santiago": [3, 5], " Chile": [6],
             " Kuwait": [7], " Kuwait City": [7, 8], " New Delhi": [9, 10], " India": [11], " Abu": [12, 13]}
    items = [("t", " Italy", " Rome"), ("t", " San", " San Marino"), ("t", " Chile", " Santiago"),
             ("t", " Kuwait", " Kuwait City"), ("t", " India", " New Delhi"), ("t", " Abu", " Rome")]
    got = classify_items(items, _enc(table), universe={})
    assert got == ["single_token", "argument_first_token", "shared_first_token", "argument_first_token",
                   "first_token", "first_token"]
    # the same answer twice is one answer, not a shared first token
    assert classify_items([("t", " India", " New Delhi")] * 2, _enc(table), universe={}) == ["first_token"] * 2
    # an answer outside the items but in the task's universe makes the first token ambiguous
    assert classify_items([("t", " India", " New Delhi")], _enc({**table, " New York": [9, 14]}),
                          universe={"t": [" New York"]}) == ["shared_first_token"]
    assert classify_items(items, _enc(table), universe={}, scoring="single_token")[1:] == ["multi_token"] * 5
    assert set(DROP_REASONS) >= {"argument_first_token", "shared_first_token", "multi_token", "unknown"}
    with pytest.raises(la.LensarithError, match="scoring must be one of 'first_token', 'single_token', got 'first'"):
        classify_items(items, _enc(table), scoring="first")


def test_tokenize_applies_the_rule_on_a_word_tokenizer(model):
    # capitals has " San Jose", " San Marino", " San Juan", ... : their first word " San" is shared
    exs = [e for e in la.build_prompts("capitals") if e.argument.strip() in
           ("Costa Rica", "Kuwait", "India", "Poland", "Mexico")]
    batch = la.tokenize(model, exs, drop_multi_token=True)
    by = {exs[i].argument.strip(): r for r, idx in batch.report["fails_rule"].items() for i in idx}
    assert by == {"Costa Rica": "shared_first_token", "Kuwait": "argument_first_token",
                  "Mexico": "argument_first_token"}
    kept = {e.argument.strip() for e in batch.examples}
    assert kept == {"India", "Poland"}
    india = [e for e in batch.examples if e.argument == " India"][0]
    row = list(batch.examples).index(india)
    assert int(batch.answer_ids[row]) == model.to_tokens(" New", prepend_bos=False)[0, 0]
    counts = batch.counts
    assert counts == scoring_counts(batch.report)
    assert counts["items"] == 5 and counts["scored"] == 2 and counts["first_token"] == 1
    assert counts["single_token"] == 1 and counts["dropped"] == {"shared_first_token": 1, "argument_first_token": 2}
    # without dropping, every item is scored on its first tokens and the counts say which fail the rule
    every = la.tokenize(model, exs)
    assert len(every) == 5 and every.counts["kept_failing_rule"] == {"shared_first_token": 1, "argument_first_token": 2}
    strict = la.tokenize(model, exs, drop_multi_token=True, scoring="single_token")
    assert {e.argument.strip() for e in strict.examples} == {"Poland"} and strict.counts["dropped"] == {"multi_token": 4}
    with pytest.raises(la.LensarithError, match="scoring must be one of"):
        la.tokenize(model, exs, scoring="all")
    with pytest.raises(la.LensarithError, match=r"no examples left after dropping 1 of 1 \(1 argument_first_token"):
        la.tokenize(model, [exs[[e.argument for e in exs].index(" Kuwait")]], drop_multi_token=True)


def test_uniqueness_is_within_the_task(model):
    # " San Jose" alone in a batch still shares " San" with the other capitals of the task ...
    cr = [e for e in la.build_prompts("capitals") if e.argument == " Costa Rica"]
    assert la.tokenize(model, cr + la.build_prompts("capitals", n=1), drop_multi_token=True).report["fails_rule"] \
        == {"shared_first_token": [0]}
    # ... also in random-token contexts of the task; a user's own label has only its own items
    ctx = la.random_token_contexts(cr)
    assert la.tokenize(model, ctx).report["fails_rule"] == {"shared_first_token": [0]}
    own = [la.Example(cr[0].prompt, cr[0].answer, cr[0].argument, "mine")]
    assert la.tokenize(model, own).report["first_token"] == [0]


# --------------------------------------------------------------------------- real tokenizers

REAL = {"gemma-3-270m": ("gemma", True), "smollm2-135m": ("smollm2", False)}


@pytest.fixture(params=sorted(REAL))
def real_tokenizer_model(request):
    """A real model (``la.load_model(name)``; session-scoped in conftest) and its name."""
    return request.param, request.getfixturevalue("gemma" if request.param.startswith("gemma") else "smol")


def test_real_tokenizers_score_enough_items(real_tokenizer_model):
    name, model = real_tokenizer_model
    for task, minimum in REAL_MIN.items():
        exs = la.build_prompts(task)
        batch = la.tokenize(model, exs, drop_multi_token=True)
        c = batch.counts
        assert c["scored"] >= minimum, (name, task, c)
        assert c["items"] == c["scored"] + sum(c["dropped"].values()) == len(exs)
        for row, ex in enumerate(batch.examples):  # each kept item is scored on its answer's first token
            if row % 25 == 0:
                assert int(batch.answer_ids[row]) == model.to_tokens(ex.answer, prepend_bos=False)[0, 0]
    kuwait = [e for e in la.build_prompts("capitals") if e.argument == " Kuwait"]
    assert la.tokenize(model, kuwait).report["fails_rule"] == {"argument_first_token": [0]}


def test_scoring_rule_sets_the_default_for_recipes(model):
    exs = la.build_prompts("capitals")
    ids = [e.argument for e in exs].index(" Costa Rica"), [e.argument for e in exs].index(" Poland")
    pair = [exs[i] for i in ids]
    assert la.tokenize(model, pair, drop_multi_token=True).report["scoring"] == "first_token"
    with la.tasks.scoring_rule("single_token"):
        assert la.tokenize(model, pair, drop_multi_token=True).report["scoring"] == "single_token"
    assert la.tokenize(model, pair, drop_multi_token=True).report["scoring"] == "first_token"
    with pytest.raises(la.LensarithError, match="rule must be one of"):
        with la.tasks.scoring_rule("all"):
            pass
