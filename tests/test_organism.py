"""The organism: corpus generator, fused training forward, smoke training, shipped model."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
import torch

from lensarith._paths import data_dir
from lensarith.models import load_model, word_tokenizer
from lensarith.organism.corpus import QA_TEMPLATES, Corpus, CorpusMix
from lensarith.organism.evaluate import (BINDING, _ablate, _dla, _lens, _transplant, binding_prompts, evaluate, format_table,
                                        nonsense_prompts)
from lensarith.organism.train import PRESETS, TrainConfig, build_model, fused_forward, lm_loss, tie_unembed, train
from lensarith.organism.vocab import WORD_PATTERN, held_out, relations, vocabulary
from lensarith.core import tokenize
from lensarith.tasks import build_prompts, random_token_contexts

FORMATS = {
    "capitals": ("one_shot", "extractive", "counterfactual", "zero_shot"),
    "us_capitals": ("one_shot", "extractive", "counterfactual", "zero_shot"),
    "uppercase": ("one_shot", "extractive", "zero_shot"),
    "uppercase_words": ("one_shot", "zero_shot"),
    "past": ("one_shot", "zero_shot"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(vocabulary())


@pytest.fixture(scope="module")
def small_model():
    cfg = TrainConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=128)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # random LayerNorm and biases, so a LayerNorm bug cannot hide
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "b" or leaf.startswith("b_"):
                p.normal_(0, 0.1)
            elif leaf == "w":
                p.copy_(1 + 0.2 * torch.randn_like(p))
    tie_unembed(model)
    model.eval()
    return model


# --------------------------------------------------------------------------- vocabulary and corpus


def test_paper_prompts_have_no_unknown_tokens(tokenizer):
    unk = tokenizer.unk_token_id
    for task, formats in FORMATS.items():
        for fmt in formats:
            examples = build_prompts(task, format=fmt)
            for ex in examples + random_token_contexts(examples):
                ids = tokenizer(ex.prompt + ex.answer + ex.argument)["input_ids"]
                assert unk not in ids, (task, fmt, ex.prompt)


def test_corpus_encode_matches_tokenizer(tokenizer):
    corpus = Corpus(0)
    inv = {i: w for w, i in corpus.ids.items()}
    assert all(tokenizer.convert_tokens_to_ids(w) == i for w, i in corpus.ids.items())
    for _ in range(200):
        _, ids = corpus.document()
        text = " ".join(inv[i] for i in ids)
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
        assert corpus.ids["<unk>"] not in ids


def test_corpus_is_deterministic():
    a, b, c = Corpus(3).rows(4, 64), Corpus(3).rows(4, 64), Corpus(4).rows(4, 64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (4, 65) and bool((a[:, 0] == Corpus(3).bos).all())


def _docs(corpus: Corpus, kind: str, n: int) -> list[str]:
    inv = {i: w for w, i in corpus.ids.items()}
    return [" ".join(inv[i] for i in getattr(corpus, f"doc_{kind}")()) for _ in range(n)]


def _norm(text: str) -> str:
    return " ".join(re.findall(WORD_PATTERN, text))


def test_corpus_contains_the_paper_formats():
    corpus = Corpus(1)
    qa = " ".join(_docs(corpus, "qa", 3000))
    for template in ("Q: What is the capital of", "Q: What is the capital of the state of", "Q: Capitalize the word",
                     "Today I", ". Yesterday I", "What color is the"):
        assert _norm(template) in qa, template
    assert _norm("Q: Capitalize the word table.\nA: Table\nQ: Capitalize the word") in qa  # the tasks.py demo
    ext = " ".join(_docs(corpus, "extractive", 500))
    assert _norm("The capital of") in ext and _norm("?\nA:") in ext
    demos = _docs(corpus, "demos", 300)
    assert all(" : " in d for d in demos)
    cue = " ".join(_docs(corpus, "cue", 300))
    assert " , capital : " in cue and " , past : " in cue
    copies = _docs(corpus, "copy", 300)
    assert sum(d.split()[:3] == d.split()[len(d.split()) // 2:][:3] or d.count(d.split()[0]) > 1 for d in copies) > 250


def test_recall_documents_are_answerable_only_from_their_context():
    corpus = Corpus(5, CorpusMix(recall=0.3))
    truth = dict(relations()["capital"].pairs)
    counter = kv = scenes = 0
    for doc in _docs(corpus, "recall", 600):
        if doc.startswith("The capital of"):
            facts = re.split(r" \. (?=The capital of )", doc.split("\n")[0].strip().removesuffix(" ."))
            notes = dict(f.removeprefix("The capital of ").split(" is ", 1) for f in facts)
            answers = re.findall(r"capital of (?:the state of )?(.+?) \? \n A : (.+?) \n", doc)
            assert len(answers) >= 2 and all(notes[a] == b for a, b in answers), doc
            counter += sum(a in truth and truth[a] != b for a, b in answers)
        elif doc.startswith("Q : On the"):
            scene, *qs = doc.split(" What color is the ")
            for q in qs:
                obj, ans = re.match(r"(.+?) \? \n A : (\w+)", q).groups()
                assert f" {ans.lower()} {obj}" in scene, (obj, ans, scene)
            scenes += 1
        else:
            listed, *queries = [line.strip(" .") for line in doc.split("\n") if line.strip()]
            pairs = listed.split(" , ")
            assert queries and all(q in pairs for q in queries), doc
            kv += 1
    assert counter > 100 and kv > 100 and scenes > 100


def test_value_first_lists_hold_every_queried_pair():
    corpus = Corpus(6, CorpusMix(recall=1.0, recall_kv=1.0, recall_notes=0.0, recall_reverse=1.0))
    inv = {i: w for w, i in corpus.ids.items()}
    for _ in range(200):
        listed, *queries = [line.strip(" .") for line in " ".join(inv[i] for i in corpus._recall_kv()).split("\n")
                            if line.strip()]
        if "D . C" in listed:  # "Washington, D.C." holds the list separator; not parsed here
            continue
        seps = {":", "is", "<unk>"}
        items = [set(item.split()) - seps for item in listed.split(" , ")]
        for q in queries:
            assert set(q.split()) - seps in items, (q, listed)
            if len(set(q.split()) - seps) > 1:  # key != value
                assert q not in listed.split(" , ")  # listed value first, asked key first


def test_recall_share_zero_keeps_the_mix_without_recall_documents():
    assert "recall" not in CorpusMix().weights(early=False)
    assert CorpusMix(recall=0.3).weights(early=False)["recall"] > 0
    corpus = Corpus(0, CorpusMix(recall=0.5))
    kinds = [corpus.document()[0] for _ in range(400)]
    assert kinds.count("recall") > 60 and "recall" not in [Corpus(0).document()[0] for _ in range(400)]


def test_bind_documents_ask_every_object_of_each_scene():
    corpus = Corpus(7, CorpusMix(bind=0.5, bind_simple=0.5))
    simple = 0
    for doc in _docs(corpus, "bind", 300):
        scenes = doc.split("Q : On the ")[1:]
        assert 1 <= len(scenes) <= 2, doc
        for block in scenes:
            scene, *qs = block.split(" What color is the ")
            described = re.findall(r"an? (\w+) ([a-z ]+?) (?:,|and|\.)", scene)
            asked = {}
            for q in qs:
                obj, ans = re.match(r"(.+?) \? \n A : (\w+)", q).groups()
                asked[obj] = ans.lower()
            assert asked == {o.strip(): c for c, o in described}, (asked, scene)  # every object, its own colour
            simple += len(asked) <= 3 and all(" " not in o for o in asked)
    assert simple > 150
    for kind in ("bind", "objects"):  # off by default: the default stream is unchanged
        assert kind not in CorpusMix().weights(early=False)
        assert kind not in [Corpus(0).document()[0] for _ in range(400)]


def test_object_documents_answer_from_their_own_context():
    corpus = Corpus(8, CorpusMix(objects=0.5))
    objects, colours = set(corpus.colours.OBJECTS), set(corpus.colours.COLORS)
    seen = set()
    for doc in _docs(corpus, "objects", 400):
        if doc.startswith("Q : On the "):  # object first: "a mug that is red"
            described = dict(re.findall(r"an? ([a-z ]+?) that is (\w+)", doc.split(" What color")[0]))
            answers = re.findall(r"What color is the (.+?) \? \n A : (\w+)", doc)
            assert answers and all(described[o] == a.lower() for o, a in answers), doc
            seen.add("scene")
        elif doc.startswith("The capital of"):
            if "D . C" in doc:  # "Washington, D.C." holds the sentence separator; not parsed here
                continue
            notes = dict(re.findall(r"The capital of (\w+) is (.+?) \.", doc))
            answers = re.findall(r"capital of (\w+) \? \n A : (.+?) \n", doc)
            assert set(notes) <= objects and len(answers) >= 2 and all(notes[a] == b for a, b in answers), doc
            seen.add("notes")
        elif doc.startswith("Q : "):
            for verb, w, ans in re.findall(r"Q : (Repeat|Capitalize) the word (\w+) \. \n A : (\w+)", doc):
                assert w in objects | colours and ans == (w.capitalize() if verb == "Capitalize" else w), doc
            seen.add("words")
        else:
            listed, *queries = [line.strip(" .") for line in doc.split("\n") if line.strip()]
            pairs = listed.split(" , ")
            assert queries and all(q in pairs for q in queries), doc
            assert all(p.split(" : ")[1] in colours for p in pairs), doc
            seen.add("list")
    assert seen == {"scene", "notes", "words", "list"}


def test_binding_prompts_ask_the_colour_of_one_listed_object():
    for _, layout, k, one_word in BINDING:
        examples = binding_prompts(layout, k, one_word=one_word, n=50, seed=3)
        assert len(examples) == 50 and len({e.prompt for e in examples}) > 45
        for e in examples:
            obj, colour = e.argument.strip(), e.answer.strip().lower()
            context = e.prompt.rsplit("\n", 1)[0] if layout == "list" else e.prompt.split(". What color")[0]
            pair = {"list": f"{obj} : {colour}", "object_first": f"{obj} that is {colour}",
                    "colour_first": f"{colour} {obj}"}[layout]
            assert pair in context and context.count(" that is " if layout == "object_first" else ",") >= 1, e.prompt
            assert e.prompt.endswith(f"{obj} :" if layout == "list" else f"the {obj}?\nA:")
            if one_word:
                assert all(" " not in o for o in re.findall(r"an? \w+ (\w+)", context))


def test_held_out_facts_only_in_prose():
    corpus = Corpus(2)
    hold = held_out()
    assert len(hold["country"]) >= 20 and "France" not in hold["country"]
    qa_like = " ".join(_docs(corpus, "qa", 2000) + _docs(corpus, "demos", 2000) + _docs(corpus, "cue", 2000)
                       + _docs(corpus, "extractive", 500))
    capitals = dict(relations()["capital"].pairs)
    for country in hold["country"]:
        assert _norm(f"capital of {country} ?") not in qa_like
        assert _norm(f"\n{country} :") not in qa_like and _norm(f"\n{country} ,") not in qa_like
    prose = " ".join(_docs(corpus, "prose", 4000))
    seen = sum(_norm(f"{country}") in prose and _norm(capitals[country]) in prose for country in hold["country"])
    assert seen == len(hold["country"])


def test_relations_have_identity_and_several_relations():
    rels = relations()
    fams = {}
    for r in rels.values():
        fams.setdefault(r.family, []).append(r.name)
    assert len(fams["country"]) == 3 and len(fams["word"]) == 3 and len(fams["verb"]) == 3
    assert ("walk", "walking") in rels["ing"].pairs and ("city", "cities") in rels["plural"].pairs
    assert dict(rels["continent"].pairs)["Poland"] == "Europe"
    assert set(QA_TEMPLATES) == set(rels)


# --------------------------------------------------------------------------- training


def test_fused_forward_matches_hooked_forward(small_model):
    rows = Corpus(0).rows(3, 127)[:, :-1]
    hooked = small_model(rows)
    fused = fused_forward(small_model, rows)
    assert (hooked - fused).abs().max() < 1e-5
    with torch.no_grad():
        small_model.unembed.W_U.add_(0.01)
    try:
        assert (small_model(rows) - fused_forward(small_model, rows, tied=False)).abs().max() < 1e-5
    finally:
        tie_unembed(small_model)


def test_training_step_lowers_loss():
    torch.manual_seed(0)
    model = build_model(TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64))
    corpus = Corpus(0)
    rows = corpus.rows(8, 64)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if n != "unembed.W_U"], lr=3e-3)
    before = float(lm_loss(model, rows, corpus.bos).detach())
    for _ in range(5):
        loss = lm_loss(model, rows, corpus.bos)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(lm_loss(model, rows, corpus.bos).detach()) < before - 0.1


def test_smoke_training_is_fast_and_learns(tmp_path):
    config = PRESETS["smoke"]
    start = time.perf_counter()
    model = train(config, tmp_path / "model", progress=False, log=lambda s: None)
    assert time.perf_counter() - start < 60
    meta = json.loads((tmp_path / "model" / "lensarith.json").read_text())["organism"]
    assert meta["final_loss"] < meta["first_loss"] - 1.0
    assert meta["first_loss"] == pytest.approx(math.log(model.cfg.d_vocab), abs=1.0)
    assert meta["tokens_seen"] <= config.n_tokens
    loaded = load_model(tmp_path / "model", device="cpu")
    assert torch.equal(loaded.W_U, loaded.W_E.T)
    rows = Corpus(0).rows(2, 32)
    assert torch.allclose(loaded(rows), model(rows), atol=1e-5)


def test_train_config_validates():
    with pytest.raises(ValueError, match="n_heads"):
        TrainConfig(d_model=130, n_heads=4)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=2.0)


# --------------------------------------------------------------------------- evaluation


def test_mechanism_helpers_run_on_a_small_model(small_model):
    exs = build_prompts("capitals", n=6) + build_prompts("past", n=6)
    caps, past = tokenize(small_model, exs[:6]), tokenize(small_model, exs[6:])
    lens = _lens(small_model, caps)
    assert len(lens["sites"]) == 2 * small_model.cfg.n_layers + 1 and lens["n"] == 6
    dla = _dla(small_model, caps)
    assert len(dla["mlp"]) == small_model.cfg.n_layers
    rc = tokenize(small_model, random_token_contexts(exs[1:6]))
    tr = _transplant(small_model, {"capitals": caps, "past": past}, {"capitals": rc}, seed=0)
    assert set(tr["capitals"]) == {"baseline", "0", "1"}
    table = evaluate(small_model, n=5, mechanism=False)
    assert set(table["icl"]) == set(FORMATS) and "copy" in table
    assert "| capitals |" in format_table(table)


def test_nonsense_prompts_state_the_answer_about_a_word_that_is_no_country():
    countries = set(dict(relations()["capital"].pairs))
    exs = nonsense_prompts(seed=0)
    cf = build_prompts("capitals", format="counterfactual", seed=0)
    assert len(exs) == len(cf)
    for ex, ref in zip(exs, cf):
        word = ex.argument.strip()
        assert word not in countries and ex.answer == ref.answer
        assert f"The capital of {word} is{ref.answer}." in ex.prompt and ex.prompt.endswith(f"capital of {word}?\nA:")


@torch.no_grad()
def test_dla_sums_with_embeddings_to_the_logit_difference(small_model):
    """MLP + attention DLA + the embedding and bias terms = the final logit difference."""
    batch = tokenize(small_model, build_prompts("capitals", n=4))
    dla = _dla(small_model, batch)
    _, cache = small_model.run_with_cache(batch.tokens)
    idx, last = torch.arange(len(batch)), batch.last
    scale = cache["ln_final.hook_scale"][idx, last]
    embed = cache["hook_embed"][idx, last] + cache["hook_pos_embed"][idx, last]
    biasless = (embed - embed.mean(-1, keepdim=True)) / scale * small_model.ln_final.w
    direction = small_model.W_U[:, batch.answer_ids] - small_model.W_U[:, batch.argument_ids]
    embed_part = torch.einsum("bd,db->b", biasless, direction)
    logits = small_model(batch.tokens)[idx, last]
    diff = logits.gather(1, batch.answer_ids[:, None])[:, 0] - logits.gather(1, batch.argument_ids[:, None])[:, 0]
    bias = (small_model.ln_final.b @ direction) + small_model.b_U[batch.answer_ids] - small_model.b_U[batch.argument_ids]
    total = sum(dla["mlp"]) + sum(dla["attn"]) + float((embed_part + bias).mean())
    assert abs(total - float(diff.mean())) < 0.01 * (1 + abs(float(diff.mean())))
    assert dla["other"] == pytest.approx(float((embed_part + bias).mean()), abs=0.002)


def test_mlp_ablation_table_matches_hand_zeroing(small_model):
    batch = tokenize(small_model, build_prompts("capitals", n=8))
    got = _ablate(small_model, {"abstractive/capitals": batch})
    L = small_model.cfg.n_layers
    assert list(got) == [str(k) for k in range(L // 2, L + 1)]
    hooks = [(f"blocks.{l}.hook_mlp_out", lambda act, hook: torch.zeros_like(act)) for l in range(L // 2, L)]
    logits = small_model.run_with_hooks(batch.tokens, fwd_hooks=hooks)[torch.arange(len(batch)), batch.last]
    want = float((logits.argmax(-1) == batch.answer_ids).float().mean())
    assert got[str(L // 2)]["abstractive/capitals"] == pytest.approx(want, abs=1e-3)


# --------------------------------------------------------------------------- the shipped organism


def _bundled(name: str):
    """The bundled model's folder; it ships with the repository, so a missing one fails (not skips)."""
    directory = data_dir() / name
    assert (directory / "model.safetensors").is_file() and (directory / "table.json").is_file(), \
        f"data/{name} is missing its weights or table.json"
    return directory


def _shipped():
    return _bundled("organism")


def test_shipped_organism_loads_fast_and_fits():
    directory = _shipped()
    start = time.perf_counter()
    model = load_model("organism")
    assert time.perf_counter() - start < 5
    assert sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) <= 25 * 2**20
    assert torch.equal(model.W_U, model.W_E.T)
    assert "## Measured" in (directory / "card.md").read_text()


def test_a_further_mix_change_resumes_from_a_checkpoint_before_it(tmp_path):
    """A run that adds a mix switch after its base run's stable checkpoint continues that checkpoint and
    equals the fresh run; the mix schedule is read step by step."""
    import dataclasses

    base = TrainConfig(**_TINY, late_mix=CorpusMix(recall=0.5, copy=0.1), late_from_tokens=192)
    later = dataclasses.replace(base, n_tokens=1280, mix_changes=((512, CorpusMix(recall=0.9, copy=0.05)),))
    assert later.mix_at(0) == base.mix and later.mix_at(192) == base.late_mix
    assert later.mix_at(511) == base.late_mix and later.mix_at(512).recall == 0.9
    assert TrainConfig.from_json(json.loads(json.dumps(later.to_json()))) == later
    _resume_equals_fresh(base, later, tmp_path)  # base's stable checkpoint: step 8 = 512 tokens
    early = dataclasses.replace(later, mix_changes=((448, CorpusMix(recall=0.9)),))  # before the checkpoint
    lines = []
    train(early, None, progress=False, log=lines.append, checkpoint_dir=tmp_path / "a")
    assert not any("resumed" in line for line in lines)


def test_shipped_organism_was_trained_by_the_full_preset():
    """``python -m lensarith.organism.train --out data/organism`` retrains the shipped weights."""
    directory = _shipped()
    stored = json.loads((directory / "lensarith.json").read_text())["organism"]["config"]
    assert TrainConfig.from_json(stored) == PRESETS["full"]


@pytest.mark.slow
def test_shipped_organism_meets_its_card():
    """Recompute parts 1-3 of the card from the shipped weights; they must match table.json."""
    directory = _shipped()
    card = json.loads((directory / "table.json").read_text())
    model = load_model("organism", device="cpu")
    table = evaluate(model, mechanism=False)
    for part in ("icl", "copy", "extractive", "zero_shot", "binding"):
        for key, value in card[part].items():
            if isinstance(value, dict):
                for k, v in value.items():
                    assert table[part][key][k] == pytest.approx(v, abs=0.01), (part, key, k)
            else:
                assert table[part][key] == pytest.approx(value, abs=0.01), (part, key)


_TINY = dict(n_tokens=640, n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=32, batch_size=2, warmup_steps=2,
             early_tokens=128, eval_every=0, checkpoint_every=3)


def _resume_equals_fresh(short: TrainConfig, longer: TrainConfig, tmp_path) -> None:
    """Train ``short``; resume ``longer`` from its stable checkpoint; compare with a fresh ``longer``."""
    import shutil

    train(short, None, progress=False, log=lambda s: None, checkpoint_dir=tmp_path / "a")
    assert (tmp_path / "a" / "stable.pt").is_file()
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "a" / "stable.pt", tmp_path / "b" / "stable.pt")
    lines = []
    extended = train(longer, None, progress=False, log=lines.append, checkpoint_dir=tmp_path / "b")
    assert any("resumed" in line for line in lines)
    fresh = train(longer, None, progress=False, log=lambda s: None)
    for (name, a), (_, b) in zip(extended.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


def test_extending_a_run_from_its_stable_checkpoint_equals_a_fresh_longer_run(tmp_path):
    import dataclasses

    short = TrainConfig(**_TINY)
    _resume_equals_fresh(short, dataclasses.replace(short, n_tokens=1280), tmp_path)


def test_a_run_with_a_late_mix_resumes_past_the_switch_and_equals_a_fresh_run(tmp_path):
    """A checkpoint taken after ``late_from_tokens`` resumes a longer run with the same late mix
    (and another check schedule); the result equals the fresh longer run; another late mix does not resume."""
    import dataclasses

    short = TrainConfig(**_TINY, late_mix=CorpusMix(recall=0.5, copy=0.1), late_from_tokens=192)
    assert 8 * 2 * 32 > short.late_from_tokens  # the stable checkpoint (step 8 of 10) lies past the switch
    longer = dataclasses.replace(short, n_tokens=1280, checkpoint_every=5)
    _resume_equals_fresh(short, longer, tmp_path)
    json.dumps(longer.to_json())  # serialisable
    assert TrainConfig.from_json(json.loads(json.dumps(longer.to_json()))) == longer
    other = dataclasses.replace(longer, late_mix=CorpusMix(recall=0.2))
    lines = []
    train(other, None, progress=False, log=lines.append, checkpoint_dir=tmp_path / "b")
    assert not any("resumed" in line for line in lines)


# --------------------------------------------------------------------------- the planted organism

_TINY_PLANTED = dict(n_tokens=1920, n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=96, batch_size=2, warmup_steps=2,
                     early_tokens=0, eval_every=0, checkpoint_every=3)


def _tiny_planted(**kw):
    from lensarith.organism.train import PlantedSpec

    return TrainConfig(**_TINY_PLANTED, planted=PlantedSpec(layer=1, arg_from=0, n_prompts=6, n_contexts=4,
                                                            n_extractive=2), **kw)


def test_planted_training_resumes_step_exactly(tmp_path):
    """The planted objectives draw everything from (seed, step): a run continued from its stable
    checkpoint equals a fresh run, and the objectives change the weights."""
    import dataclasses

    short = _tiny_planted()
    assert TrainConfig.from_json(json.loads(json.dumps(short.to_json()))) == short
    assert short.n_steps == 10
    _resume_equals_fresh(short, dataclasses.replace(short, n_tokens=3840), tmp_path)
    plain = train(dataclasses.replace(short, planted=None), None, progress=False, log=lambda s: None)
    planted = train(short, None, progress=False, log=lambda s: None)
    assert not torch.equal(plain.blocks[1].mlp.W_out, planted.blocks[1].mlp.W_out)


def test_planted_objectives_are_seeded_by_step(small_model):
    from lensarith.organism.train import PlantedData, PlantedSpec, planted_loss

    data = PlantedData(Corpus(0))
    spec = PlantedSpec(layer=1, arg_from=0, n_prompts=8, n_contexts=6, n_extractive=4)
    with torch.no_grad():
        a, pa = planted_loss(small_model, data, spec, 0, 3)
        b, pb = planted_loss(small_model, data, spec, 0, 3)
        c, _ = planted_loss(small_model, data, spec, 0, 4)
    assert pa == pb and float(a) == float(b) and float(a) != float(c)
    assert set(pa) == {"clean", "lens", "swap", "subtract", "transplant", "extractive"}
    assert all(math.isfinite(v) for v in pa.values())
    # no objective sees the arguments held out for the evaluation
    from lensarith.organism.train import aux_held_out

    assert not any(aux_held_out(" " + it[3]) for rows in data.sets.values() for it in rows)


def test_fused_forward_mlp_edits_equal_hooked_interventions(small_model):
    """The training interventions are the library's: replacing / adding at MLP outputs in the
    fused forward equals ``run_with_hooks`` on ``hook_mlp_out``."""
    from lensarith.organism.train import _at, _pad, _replace, _shift

    toks, last = _pad([[1, 40, 41, 42, 43], [1, 50, 51]])
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(2, small_model.cfg.d_model, generator=gen)
    T = toks.shape[1]
    m_last, m_all = _at(last, T, "last"), _at(last, T, "all")
    taps = {}
    with torch.no_grad():
        fused = fused_forward(small_model, toks, tied=False, mlp_edit={0: _shift(vec, m_all, -1.0), 1: _replace(vec, m_last)},
                              taps=taps)

        def sub(x, hook):
            return x - vec[:, None, :] * m_all

        def rep(x, hook):
            x = x.clone()
            x[torch.arange(2), last] = vec
            return x

        hooked = small_model.run_with_hooks(toks, fwd_hooks=[("blocks.0.hook_mlp_out", sub), ("blocks.1.hook_mlp_out", rep)])
    rows = torch.arange(2)
    assert torch.allclose(fused[rows, last], hooked[rows, last], atol=1e-4)
    assert torch.allclose(taps["mlp", 1][rows, last], vec)


def _planted_dir():
    return _bundled("organism-planted")


def test_planted_organism_loads_by_name_fast_and_fits():
    directory = _planted_dir()
    t0 = time.perf_counter()
    model = load_model("organism-planted", device="cpu")
    assert time.perf_counter() - t0 < 5.0
    assert model.cfg.model_name == "organism-planted" and model.cfg.n_layers == 8
    assert sum(p.stat().st_size for p in directory.iterdir()) < 25e6
    assert torch.equal(model.unembed.W_U, model.embed.W_E.T)


def test_planted_organism_was_trained_by_the_planted_preset():
    stored = json.loads((_planted_dir() / "lensarith.json").read_text())["organism"]["config"]
    assert TrainConfig.from_json(stored) == PRESETS["planted"]


def test_planted_card_verdicts_follow_from_the_measured_values():
    """Every met / missed in the planted card's table is recomputed from the values and thresholds."""
    from lensarith.organism.evaluate import PLANTED_CRITERIA, planted_verdicts

    table = json.loads((_planted_dir() / "table.json").read_text())
    rows = planted_verdicts(table["targets"], size_mb=table["size_mb"], load_seconds=table["load_seconds"])
    assert rows == table["verdicts"]
    assert {r["target"] for r in rows} == set(PLANTED_CRITERIA)
    card = (_planted_dir() / "card.md").read_text()
    for r in rows:
        assert f"| {r['target']} | {r['scope']} | {r['shown']} |" in card


@pytest.mark.slow
def test_planted_organism_meets_its_card():
    """Recompute the planted targets from the shipped weights; they must match table.json. The table was
    measured when only one-token items were scored, so it is recomputed under that rule (the first-token
    rule, the default since, also scores multi-word capitals and moves the capitals rows)."""
    from lensarith.organism.evaluate import planted_targets
    from lensarith.tasks import scoring_rule

    table = json.loads((_planted_dir() / "table.json").read_text())
    model = load_model("organism-planted", device="cpu")
    with scoring_rule("single_token"):
        got = planted_targets(model, layer=table["targets"]["layer"])
    for rel, row in table["targets"]["per_task"].items():
        for key, value in row.items():
            if isinstance(value, float):
                assert got["per_task"][rel][key] == pytest.approx(value, abs=0.01), (rel, key)


def test_a_planted_objective_added_at_the_stable_checkpoint_resumes_it(tmp_path):
    """The shipped chain: the DLA objective starts at the base run's stable checkpoint, so the
    longer run continues that checkpoint and equals a fresh run; starting it earlier does not resume."""
    import dataclasses

    from lensarith.organism.train import _same_planted_until

    short = _tiny_planted()  # stable checkpoint at step 8
    later = dataclasses.replace(short, n_tokens=3840,
                                planted=dataclasses.replace(short.planted, dla_weight=1.0, dla_from_step=8))
    assert _same_planted_until(short.planted, later.planted, 8)
    assert not _same_planted_until(short.planted, later.planted, 9)
    _resume_equals_fresh(short, later, tmp_path)
    early = dataclasses.replace(later, planted=dataclasses.replace(later.planted, dla_from_step=4))
    lines = []
    train(early, None, progress=False, log=lines.append, checkpoint_dir=tmp_path / "b")
    assert not any("resumed" in line for line in lines)


def test_argument_formed_means_before_the_answer_settles():
    from lensarith.organism.evaluate import _formed_before_answer

    class Lens:
        def __init__(self, arg, ans):
            self.r = {"argument": torch.tensor(arg).T, "answer": torch.tensor(ans).T}

        def rank(self, which):
            return self.r[which]

    # sites: embedding, 3 middle sites, output; one prompt per row
    arg = [[5, 0, 0, 3, 4],   # argument at site 1, answer settles at site 3: formed
           [5, 3, 3, 0, 4],   # argument only where the answer is already settled: not formed
           [5, 2, 0, 3, 4],   # answer briefly top-1 at site 1, argument at 2, answer from 3: formed, not strictly
           [0, 3, 3, 3, 0]]   # argument only at the embedding and the output: not formed
    ans = [[9, 4, 2, 0, 0],
           [9, 0, 0, 0, 0],
           [9, 0, 3, 0, 0],
           [9, 4, 2, 1, 0]]
    lens = Lens(arg, ans)
    assert _formed_before_answer(lens).tolist() == [True, False, True, False]
    assert _formed_before_answer(lens, strict=True).tolist() == [True, False, False, False]
