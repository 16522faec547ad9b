"""The organism card's measurement table.

``evaluate(model)`` measures, on the paper's prompts (``lensarith.tasks``):

1. one-shot (and zero-shot) top-1 per task, on facts seen in Q/A formats and on facts the
   corpus states only in prose;
2. copying top-1 in random-token contexts (``w1 w2 w3 X w1 w2 w3 X w1 w2 w3`` -> X);
3. extractive top-1 (true and counterfactual context statements, statements about nonsense
   arguments; colour words); binding diagnostics: fresh colour prompts laid out object first
   (``mug : red``, ``a mug that is red``) and colour first (``a red mug``, the task's layout);
4. the mechanism: (a) logit lens at the last position (argument / answer top-1 and mean
   reciprocal rank ``1/(rank+1)`` per residual site; the fraction of correct examples whose
   argument is top-1 at some site before the last); (b) direct logit attribution of each
   MLP and attention layer to ``answer - argument`` with the frozen final-LN scale;
   (c) o-vector transplant from one source prompt into random-token contexts, against a
   random vector of equal norm and another task's o-vector; (d) zero-ablating MLPs from
   layer k up: abstractive vs extractive accuracy.

Part 4 runs on the library's recipes (``logit_lens``, ``direct_logit_attribution``,
``extract_o_vector`` + ``transplant``, ``ffn_ablation``), so the card measures what users run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .._types import Model
from ..ablation import ffn_ablation
from ..attribution import direct_logit_attribution
from ..core import Batch, run_with_interventions, tokenize
from ..lens import logit_lens
from ..tasks import TASKS, Example, build_prompts, load_pairs, random_token_contexts
from ..vectors import extract_o_vector, transplant
from .scenes import colour_scenes, one_word_objects
from .vocab import aux_held_out, held_out

__all__ = ["evaluate", "format_table", "planted_targets", "planted_verdicts", "planted_table", "PLANTED_CRITERIA", "nonsense_prompts", "binding_prompts", "ICL_TASKS"]

ICL_TASKS = ("capitals", "us_capitals", "uppercase", "uppercase_words", "past")
MECH_TASKS = ("capitals", "uppercase", "uppercase_words", "past")
_FAMILY = {"capitals": "country", "us_capitals": "state", "uppercase_words": "word", "past": "verb"}
_OTHER = {"capitals": "past", "uppercase": "past", "uppercase_words": "capitals", "past": "capitals"}
SCALES = (1.0, 2.0, 4.0, 8.0)
_CHUNK = 128


# --------------------------------------------------------------------------- helpers


def _last(model, batch: Batch) -> torch.Tensor:
    """Logits at each row's last real position, ``[batch, d_vocab]``."""
    return torch.cat([run_with_interventions(model, sub) for sub in batch.chunks(_CHUNK)])


def _top1(model, batch: Batch, ids: torch.Tensor | None = None) -> float:
    ids = batch.answer_ids if ids is None else ids
    return float((_last(model, batch).argmax(-1) == ids).float().mean())


def _correct(model, batch: Batch) -> torch.Tensor:
    return _last(model, batch).argmax(-1) == batch.answer_ids


def _split(task: str, examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(seen in Q/A formats, stated only in prose)."""
    hold = held_out().get(_FAMILY.get(task, ""), frozenset())
    seen = [e for e in examples if e.argument.strip() not in hold]
    prose = [e for e in examples if e.argument.strip() in hold]
    return seen, prose


def _prompts(task: str, fmt: str, n: int | None, seed: int) -> tuple[list[Example], list[Example]]:
    seen, prose = _split(task, build_prompts(task, format=fmt))
    if n is not None and len(seen) > n:
        seen = random.Random(seed).sample(seen, n)
    return seen, prose


def nonsense_prompts(seed: int = 0) -> list[Example]:
    """The counterfactual capitals prompts with the queried country replaced by a common word
    (``The capital of table is Paris. ... Q: What is the capital of table?``): a pure
    in-context recall check that memory cannot answer."""
    words = sorted({r["argument"] for r in load_pairs("uppercase_words")} - set(TASKS["capitals"].demo))
    rng = random.Random(seed)
    out = []
    for ex in build_prompts("capitals", format="counterfactual", seed=seed):
        arg, word = ex.argument.strip(), rng.choice(words)
        prompt = ex.prompt.replace(f"of {arg} is", f"of {word} is").replace(f"of {arg}?", f"of {word}?")
        out.append(Example(prompt, ex.answer, " " + word, "capitals", {"format": "nonsense"}))
    return out


# binding diagnostics: (label, layout, objects per prompt, one-word objects only)
BINDING = (("list, object first", "list", 3, False), ("scene, object first", "object_first", 3, False),
           ("scene, colour first (2 one-word objects)", "colour_first", 2, True),
           ("scene, colour first (3 one-word objects)", "colour_first", 3, True),
           ("scene, colour first (4 objects)", "colour_first", 4, False))


def binding_prompts(layout: str, k: int, *, one_word: bool = False, n: int = 200, seed: int = 0) -> list[Example]:
    """Fresh colour-binding prompts whose answer is the colour of one of ``k`` objects.

    ``layout``: ``"list"`` (``mug : red , pen : blue .\npen :`` -> ``blue``), ``"object_first"``
    (``a mug that is red and a pen that is blue. What color is the pen?`` -> ``Blue``) or
    ``"colour_first"`` (the task's own layout, ``a red mug and a blue pen``). Chance is ``1/k``.
    """
    cm = colour_scenes()
    pool = one_word_objects() if one_word else list(cm.OBJECTS)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        objects, colours, i = rng.sample(pool, k), rng.sample(cm.COLORS, k), rng.randrange(k)
        if layout == "list":
            prompt = " , ".join(f"{o} : {c}" for o, c in zip(objects, colours)) + f" .\n{objects[i]} :"
            answer = " " + colours[i]
        else:
            items = [f"a {o} that is {c}" if layout == "object_first" else cm.describe(c, o)
                     for o, c in zip(objects, colours)]
            prompt = f"Q: On the {rng.choice(cm.SURFACES)}, I see {cm.join(items)}. What color is the {objects[i]}?\nA:"
            answer = " " + colours[i].capitalize()
        out.append(Example(prompt, answer, " " + objects[i], "uppercase", {"format": f"binding/{layout}"}))
    return out


def _batch(model, examples) -> Batch:
    return tokenize(model, examples, drop_multi_token=False)


def _r(x) -> float:
    return round(float(x.detach() if isinstance(x, torch.Tensor) else x), 3)


# --------------------------------------------------------------------------- mechanism


def _lens(model, batch: Batch) -> dict:
    """Logit lens (``lensarith.logit_lens``, every resid_pre/mid and the final resid_post) at the
    last position: argument and answer top-1 and MRR per site."""
    lens = logit_lens(model, batch, stream="all", batch_size=_CHUNK, progress=False)
    labels = lens.layers
    arg, ans = lens.rank("argument"), lens.rank("answer")  # [site, batch]
    formed = (arg[1:-1] == 0).any(0)
    first = [labels[1 + int(torch.nonzero(arg[1:-1, i] == 0)[0])] for i in range(arg.shape[1]) if formed[i]]
    return {
        "sites": labels,
        "arg_top1": [_r(x) for x in (arg == 0).float().mean(1)],
        "ans_top1": [_r(x) for x in (ans == 0).float().mean(1)],
        "arg_mrr": [_r(x) for x in (1.0 / (arg + 1)).mean(1)],
        "ans_mrr": [_r(x) for x in (1.0 / (ans + 1)).mean(1)],
        "arg_formed": _r(formed.float().mean()),
        "arg_first_site_mode": max(set(first), key=first.count) if first else None,
        "n": int(arg.shape[1]),
    }


def _dla(model, batch: Batch) -> dict:
    """Mean direct logit attribution (``lensarith.direct_logit_attribution``) of each attention
    and MLP layer to answer - argument at the last position."""
    dla = direct_logit_attribution(model, batch, baselines="argument", batch_size=_CHUNK, progress=False).mean()
    L = model.cfg.n_layers
    attn = torch.tensor([dla[f"L{l}_attn"] for l in range(L)])
    mlp = torch.tensor([dla[f"L{l}_mlp"] for l in range(L)])
    pos = mlp.clamp(min=0)
    rest = sum(v for k, v in dla.items() if not k.endswith(("_attn", "_mlp")))
    return {"attn": [_r(x) for x in attn], "mlp": [_r(x) for x in mlp], "other": _r(rest),
            "top_mlp": int(mlp.argmax()), "top_mlp_share_of_positive": _r(pos.max() / pos.sum().clamp(min=1e-9))}


def _transplant(model, sources: dict[str, Batch], targets: dict[str, Batch], seed: int) -> dict:
    """Per task and layer (``lensarith.vectors.transplant`` at the last position): answer top-1 / MRR in
    random-token contexts with o added or replacing the MLP output, and the controls (a random
    vector of equal norm, another task's o) added, at several scales."""
    out: dict = {}
    gen = torch.Generator().manual_seed(seed)
    for task, tgt in targets.items():
        rows: dict = {}
        for layer in range(model.cfg.n_layers):
            o = extract_o_vector(model, sources[task][0:1], layer).single()
            other_task = _OTHER[task] if _OTHER[task] in sources else next(t for t in sources if t != task)
            other = extract_o_vector(model, sources[other_task][0:1], layer).single()
            rnd = torch.randn(o.shape, generator=gen)
            rnd = rnd / rnd.norm() * o.norm()
            cell = {}
            for mode, name, vec in (("add", "o", o), ("add", "random", rnd), ("add", "other_task", other),
                                    ("replace", "o", o)):
                res = []
                for s in SCALES:
                    got = transplant(model, vec, tgt, layers=[layer], mode=mode, positions="last", scale=s,
                                     batch_size=_CHUNK, progress=False).summary()
                    res.append((s, _r(got["answer_top1_transplant"]), _r(got["answer_mrr_transplant"])))
                    if "baseline" not in rows:
                        rows["baseline"] = {"ans_top1": _r(got["answer_top1_control"]),
                                            "ans_mrr": _r(got["answer_mrr_control"]),
                                            "arg_top1": _r(got["argument_top1_control"])}
                best = max(res, key=lambda r: r[2])
                cell[f"{mode}/{name}"] = {"top1@1": res[0][1], "mrr@1": res[0][2],
                                          "best_scale": best[0], "top1@best": best[1], "mrr@best": best[2]}
            rows[str(layer)] = cell
        out[task] = {"baseline": rows.pop("baseline"), **rows}
    return out


def _ablate(model, groups: dict[str, Batch]) -> dict:
    """Top-1 with the MLPs from layer k up zero-ablated (``lensarith.ffn_ablation``), k = L/2..L."""
    L = model.cfg.n_layers
    res = ffn_ablation(model, groups, mode="zero", steps=L, batch_size=_CHUNK, progress=False)
    out = {}
    for j, removed in enumerate(res.n_removed):
        if L - removed >= L // 2:
            out[str(L - removed)] = {g: _r(res.accuracy_of(g)[j]) for g in res.sets}
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


# --------------------------------------------------------------------------- table


@torch.no_grad()
def evaluate(model: Model, *, n: int | None = None, seed: int = 0, mechanism: bool = True, sweep: bool = True) -> dict:
    """Measure the organism card's table on ``model``.

    Args:
        model: a HookedTransformer whose tokenizer covers lensarith's task prompts.
        n: at most this many seen-fact prompts per task and format (None: all); prose-only
            facts are always all used. The mechanism parts use at most ``n or 200``.
        seed: seeds subsampling and the random control vectors.
        mechanism: also measure part 4 (lens, DLA, transplant, ablation); False keeps 1-3.
        sweep: in part 4, also the transplant sweep over every layer, vector and scale (4c).

    Returns:
        A JSON-serialisable dict (see ``format_table``).
    """
    L = model.cfg.n_layers
    table: dict = {"n_layers": L, "icl": {}, "zero_shot": {}, "copy": {}, "extractive": {}}
    batches: dict[str, Batch] = {}
    for task in ICL_TASKS:
        seen, prose = _prompts(task, "one_shot", n, seed)
        b = _batch(model, seen)
        batches[task] = b
        row = {"seen": _r(_top1(model, b)), "n_seen": len(b)}
        if prose:
            row.update(prose_only=_r(_top1(model, _batch(model, prose))), n_prose_only=len(prose))
        table["icl"][task] = row
        zs, _ = _prompts(task, "zero_shot", n, seed)
        table["zero_shot"][task] = _r(_top1(model, _batch(model, zs)))
        rc = _batch(model, random_token_contexts(seen + prose, seed=seed))
        table["copy"][task] = _r(_top1(model, rc, rc.argument_ids))
    extractive: dict[str, Batch] = {}
    for task, fmt in (("capitals", "extractive"), ("capitals", "counterfactual"), ("us_capitals", "extractive"),
                      ("us_capitals", "counterfactual"), ("uppercase", "extractive")):
        seen, prose = _prompts(task, fmt, n, seed)
        b = _batch(model, seen + prose)
        extractive[f"{task}/{fmt}"] = b
        table["extractive"][f"{task}/{fmt}"] = _r(_top1(model, b))
    # the same statements about nonsense arguments: memory cannot answer, only the context can
    b = _batch(model, nonsense_prompts(seed=seed)[: n or None])
    table["extractive"]["capitals/nonsense"] = _r(_top1(model, b))
    table["binding"] = {label: {"top1": _r(_top1(model, _batch(model, binding_prompts(lay, k, one_word=one, seed=seed)))),
                                "chance": _r(1 / k)} for label, lay, k, one in BINDING}

    if not mechanism:
        return table
    m = n or 200
    table["lens"], table["dla"] = {}, {}
    sources, targets = {}, {}
    for task in MECH_TASKS:
        b = batches[task]
        ok = _correct(model, b)
        keep = [e for e, c in zip(b.examples, ok.tolist()) if c][:m]
        if not keep:
            continue
        kb = _batch(model, keep)
        table["lens"][task] = _lens(model, kb)
        table["dla"][task] = _dla(model, kb)
        sources[task] = kb
        if len(keep) > 1:
            targets[task] = _batch(model, random_token_contexts(list(keep[1:61]), seed=seed + 1))
    if len(sources) >= 2 and sweep:
        table["transplant"] = _transplant(model, sources, {t: targets[t] for t in sources if t in targets}, seed)

    groups = {**{f"abstractive/{t}": batches[t][:m] for t in ("capitals", "uppercase", "uppercase_words", "past")},
              **{f"extractive/{k}": v[:m] for k, v in extractive.items()}}
    table["ablate_mlps_from"] = _ablate(model, groups)
    return table


def format_table(table: dict) -> str:
    """The table as markdown."""
    out = ["### 1. In-context learning (one-shot, top-1)", "",
           "| task | seen in Q/A formats | n | prose-only facts | n | zero-shot |", "|---|---|---|---|---|---|"]
    for t, r in table["icl"].items():
        out.append(f"| {t} | {r['seen']:.3f} | {r['n_seen']} | {r.get('prose_only', float('nan')):.3f} | "
                   f"{r.get('n_prose_only', 0)} | {table['zero_shot'][t]:.3f} |")
    out += ["", "### 2. Copying in random-token contexts (top-1 = argument)", "", "| task | top-1 |", "|---|---|"]
    out += [f"| {t} | {v:.3f} |" for t, v in table["copy"].items()]
    out += ["", "### 3. Extractive (top-1)", "", "| prompts | top-1 |", "|---|---|"]
    out += [f"| {t} | {v:.3f} |" for t, v in table["extractive"].items()]
    if "binding" in table:
        out += ["", "### 3b. Binding diagnostics: which colour belongs to which object (fresh prompts, top-1)", "",
                "| layout | top-1 | chance |", "|---|---|---|"]
        out += [f"| {t} | {r['top1']:.3f} | {r['chance']:.2f} |" for t, r in table["binding"].items()]
    if "lens" not in table:
        return "\n".join(out) + "\n"
    out += ["", "### 4a. Logit lens at the last position (correct one-shot examples)", ""]
    for t, r in table.get("lens", {}).items():
        out += [f"**{t}** (n={r['n']}): argument top-1 at some site before the last: **{r['arg_formed']:.2f}** "
                f"(most often first at {r['arg_first_site_mode']})", "",
                "| site | " + " | ".join(r["sites"]) + " |", "|---" * (len(r["sites"]) + 1) + "|"]
        for key in ("arg_top1", "arg_mrr", "ans_top1", "ans_mrr"):
            out.append(f"| {key} | " + " | ".join(f"{x:.2f}" for x in r[key]) + " |")
        out.append("")
    out += ["### 4b. Direct logit attribution to (answer - argument), last position, frozen final-LN scale", "",
            "| task | component | " + " | ".join(str(i) for i in range(table["n_layers"])) + " | top MLP (share of positive) |",
            "|---" * (table["n_layers"] + 3) + "|"]
    for t, r in table.get("dla", {}).items():
        out.append(f"| {t} | MLP | " + " | ".join(f"{x:.2f}" for x in r["mlp"]) +
                   f" | {r['top_mlp']} ({r['top_mlp_share_of_positive']:.2f}) |")
        out.append(f"| {t} | attn | " + " | ".join(f"{x:.2f}" for x in r["attn"]) + " | |")
    if "transplant" in table and table["transplant"]:
        out += ["", "### 4c. o-vector transplant into random-token contexts (answer top-1 / MRR)", "",
                "One source prompt's MLP output at the last position, added to (or replacing) the same "
                "layer's MLP output at the last position. Controls: random vector of equal norm; "
                "another task's o. `@1`: scale 1; `best`: the scale in "
                f"{list(SCALES)} with the highest MRR.", "",
                "| task | layer | o add @1 | o add best | random add best | other-task add best | o replace best |",
                "|---|---|---|---|---|---|---|"]
        for t, rows in table["transplant"].items():
            b = rows["baseline"]
            out.append(f"| {t} | none | top-1 {b['ans_top1']:.2f}, MRR {b['ans_mrr']:.2f} | | | | |")
            for layer, c in rows.items():
                if layer == "baseline":
                    continue
                f = lambda d, best=True: (f"{d['top1@best']:.2f} / {d['mrr@best']:.2f} (×{d['best_scale']:g})" if best  # noqa: E731
                                          else f"{d['top1@1']:.2f} / {d['mrr@1']:.2f}")
                out.append(f"| {t} | {layer} | {f(c['add/o'], False)} | {f(c['add/o'])} | {f(c['add/random'])} | "
                           f"{f(c['add/other_task'])} | {f(c['replace/o'])} |")
    if "ablate_mlps_from" not in table:
        return "\n".join(out) + "\n"
    out += ["", "### 4d. Zero-ablating MLPs from layer k up (top-1)", ""]
    abl = table["ablate_mlps_from"]
    groups = list(next(iter(abl.values())))
    out += ["| k | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for k, r in abl.items():
        label = f"{k} (none)" if int(k) == table["n_layers"] else k
        out.append(f"| {label} | " + " | ".join(f"{r[g]:.2f}" for g in groups) + " |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the planted organism

#: per relation: the task prompts, the in-domain and out-of-domain argument sets of the transplant
PLANTED_TASKS = {"capitals": ("capitals", "capitals", "us_capitals"),
                 "uppercase": ("uppercase", "uppercase", "uppercase_words"),
                 "past": ("past", "past_regular", "past_irregular")}
#: the issue's thresholds, and how each verdict is computed
PLANTED_CRITERIA = {
    "argument_formed": (0.80, "argument top-1 in the logit lens at the last position at some middle site "
                              "(resid_pre/mid of layers 1..L-1) before the site from which the answer stays top-1 to "
                              "the output, share of correctly answered one-shot prompts (the details also give the "
                              "stricter share: before the answer's first top-1 site anywhere)"),
    "planted_dla_share": (0.60, "MLP P's share of the positive MLP direct logit attribution to (answer - argument) at "
                                "the last position, mean over correctly answered prompts (frozen final-LN scale)"),
    "transplant_in_domain": (0.50, "answer top-1 in random-token contexts of in-domain arguments, o from one source "
                                   "prompt replacing the MLP outputs of layers P..last at every position, scale 1"),
    "transplant_out_of_domain": (0.30, "as above, arguments of another set (US states, irregular verbs, non-colour words)"),
    "transplant_vs_random": (5.0, "transplant top-1 / top-1 of a random vector of o's norm in the same protocol "
                                  "(in-domain and out-of-domain contexts pooled; met when the random vector's is 0 "
                                  "and o's is > 0)"),
    "subtract_to_argument": (0.50, "argument top-1 at the output after subtracting o (scale 1, every position) from "
                                   "MLP P's output, share of correctly answered one-shot prompts"),
    "ablation_contrast": (3.0, "zeroing MLPs P..last: drop of mean abstractive top-1 / drop of mean extractive top-1 "
                               "(met when >= 3 and the abstractive drop is >= 0.3)"),
    "size_mb": (25.0, "megabytes of the model folder's weights and config files (at most)"),
    "load_seconds": (5.0, "seconds for lensarith.load_model on this machine (at most)"),
}


def _formed_before_answer(lens, *, strict: bool = False) -> torch.Tensor:
    """``[batch]``: the argument is top-1 at some middle site (not the embedding, not the output)
    before the answer: before the site from which the answer stays top-1 to the output, or with
    ``strict`` before the answer's first top-1 site anywhere."""
    arg, ans = lens.rank("argument"), lens.rank("answer")  # [site, batch]
    S = arg.shape[0]
    top = ans == 0
    if strict:
        first_ans = torch.where(top.any(0), top.float().argmax(0), torch.full((arg.shape[1],), S))
    else:  # the last site where the answer is not top-1, plus one
        not_top = (~top).float()
        last_not = S - 1 - not_top.flip(0).argmax(0)
        first_ans = torch.where(not_top.any(0), last_not + 1, torch.zeros_like(last_not))
    site = torch.arange(S)[:, None]
    middle = (site >= 1) & (site < S - 1)
    return ((arg == 0) & middle & (site < first_ans[None])).any(0)


def _planted_transplant(model, row: dict, P: int, ind: str, ood: str, gb: Batch, *, keep, n: int | None, seed: int,
                        gen: torch.Generator, pooled: tuple[list, list]) -> None:
    """The transplant and subtract targets of one relation, into ``row`` (none when no source prompt is answered);
    the transplant and random-vector top-1 of each context set go to ``pooled``."""
    L = model.cfg.n_layers
    pooled_o, pooled_rnd = pooled
    # the source: the first correctly answered in-domain prompt (its argument left out of the contexts)
    src_pool = [e for e in build_prompts(ind) if keep(e)]
    sb = _batch(model, src_pool[:64])
    sok = _correct(model, sb)
    if not bool(sok.any()):
        return
    i = int(sok.float().argmax())
    src = sb[i:i + 1]
    src_ex = src.examples[0]
    o = extract_o_vector(model, src, P).single()
    rnd = torch.randn(o.shape, generator=gen)
    rnd = rnd / rnd.norm() * o.norm()
    row["source"], row["o_norm"] = src_ex.prompt.splitlines()[-2:] if "\n" in src_ex.prompt else src_ex.prompt, _r(o.norm())
    for tag, name in (("in_domain", ind), ("out_of_domain", ood)):
        exs = [e for e in build_prompts(name) if keep(e) and e.argument.strip() != src_ex.argument.strip()]
        if n is not None and len(exs) > n:
            exs = random.Random(seed).sample(exs, n)
        ctx = tokenize(model, random_token_contexts(exs, seed=seed + 1), drop_multi_token=True)
        if len(ctx) == 0:
            continue
        for pos_mode in ("all", "last"):
            got = transplant(model, o, ctx, layers=list(range(P, L)), mode="replace", positions=pos_mode,
                             batch_size=_CHUNK, progress=False).summary()
            sfx = "" if pos_mode == "all" else "_last_position"
            row[f"transplant_{tag}{sfx}"] = _r(got["answer_top1_transplant"])
            row[f"transplant_{tag}{sfx}_mrr"] = _r(got["answer_mrr_transplant"])
            if pos_mode == "all":
                row[f"control_{tag}"] = _r(got["answer_top1_control"])
                r = transplant(model, rnd, ctx, layers=list(range(P, L)), mode="replace", positions="all",
                               batch_size=_CHUNK, progress=False).summary()
                row[f"random_{tag}"] = _r(r["answer_top1_transplant"])
                pooled_o.append((got["answer_top1_transplant"], len(ctx)))
                pooled_rnd.append((r["answer_top1_transplant"], len(ctx)))
        row[f"n_contexts_{tag}"] = len(ctx)
    for pos_mode in ("all", "last"):
        sub = transplant(model, o, gb, layers=[P], mode="subtract", positions=pos_mode, batch_size=_CHUNK,
                         progress=False).summary()
        row["subtract_to_argument" + ("" if pos_mode == "all" else "_last_position")] = _r(sub["argument_top1_transplant"])


def _planted_ablation(model, P: int, *, n: int | None, keep) -> dict:
    """The ablation contrast: zero the MLPs from P up; abstractive vs extractive top-1 before and after."""
    L = model.cfg.n_layers
    groups = {f"abstractive/{t}": [e for e in build_prompts(t) if keep(e)][: n or None] for t in PLANTED_TASKS}
    groups.update({f"extractive/{t}/{f}": [e for e in build_prompts(t, format=f) if keep(e)][: n or None]
                   for t, f in (("capitals", "extractive"), ("capitals", "counterfactual"),
                                ("us_capitals", "extractive"), ("us_capitals", "counterfactual"),
                                ("uppercase", "extractive"))})
    groups = {k: v for k, v in groups.items() if v}
    res = ffn_ablation(model, groups, mode="zero", steps=L, batch_size=_CHUNK, progress=False)
    j_none, j_p = res.n_removed.index(0), res.n_removed.index(L - P)
    acc = {g: (_r(res.accuracy_of(g)[j_none]), _r(res.accuracy_of(g)[j_p])) for g in res.sets}
    ablation = {"zeroed": f"MLPs {P}..{L - 1}", "top1_before_after": acc}
    mean = lambda kind, j: sum(v[j] for g, v in acc.items() if g.startswith(kind)) / max(  # noqa: E731
        1, sum(g.startswith(kind) for g in acc))
    ablation["abstractive_drop"] = _r(mean("abstractive", 0) - mean("abstractive", 1))
    ablation["extractive_drop"] = _r(mean("extractive", 0) - mean("extractive", 1))
    return ablation


def planted_targets(model: Model, *, layer: int, n: int | None = 200, seed: int = 0,
                    only_aux_held_out: bool = False) -> dict:
    """The planted organism's targets, measured with the library's recipes.

    Args:
        model: the model (also runs on the naturally trained organism, for comparison).
        layer: the planted MLP P.
        n: at most this many prompts / contexts per set (None: all).
        seed: seeds subsampling, the contexts' filler words and the random control vectors.
        only_aux_held_out: measure only on arguments the planted objectives never saw
            (``lensarith.organism.vocab.aux_held_out``).

    Returns:
        ``{"per_task": {relation: {...}}, "layer": P, ...}`` with the measured values; verdicts
        are added by ``planted_verdicts``.
    """
    P, L = layer, model.cfg.n_layers
    keep = (lambda e: aux_held_out(e.argument)) if only_aux_held_out else (lambda e: True)  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    out: dict = {"layer": P, "n_layers": L, "only_aux_held_out": only_aux_held_out, "per_task": {}}
    pooled_o, pooled_rnd = [], []
    for rel, (task, ind, ood) in PLANTED_TASKS.items():
        row: dict = {}
        b = _batch(model, [e for e in build_prompts(task) if keep(e)])
        ok = _correct(model, b)
        good = [e for e, c in zip(b.examples, ok.tolist()) if c]
        row["accuracy"], row["n_prompts"] = _r(ok.float().mean()), len(b)
        if n is not None and len(good) > n:
            good = random.Random(seed).sample(good, n)
        if len(good) < 2:
            out["per_task"][rel] = row
            continue
        gb = _batch(model, good)
        lens = logit_lens(model, gb, stream="all", batch_size=_CHUNK, progress=False)
        row["argument_formed"], row["n_correct"] = _r(_formed_before_answer(lens).float().mean()), len(good)
        row["argument_formed_before_first_answer"] = _r(_formed_before_answer(lens, strict=True).float().mean())
        arg_top1 = (lens.rank("argument") == 0).float().mean(1)
        row["argument_top1_by_site"] = dict(zip(lens.layers, [_r(x) for x in arg_top1]))
        row["answer_top1_by_site"] = dict(zip(lens.layers, [_r(x) for x in (lens.rank("answer") == 0).float().mean(1)]))
        dla = _dla(model, gb)
        pos = torch.tensor(dla["mlp"]).clamp(min=0)
        row["dla_mlp"], row["planted_dla_share"] = dla["mlp"], _r(pos[P] / pos.sum().clamp(min=1e-9))
        _planted_transplant(model, row, P, ind, ood, gb, keep=keep, n=n, seed=seed, gen=gen, pooled=(pooled_o, pooled_rnd))
        out["per_task"][rel] = row
    if pooled_o:
        w = sum(k for _, k in pooled_o)
        out["transplant_top1_pooled"] = _r(sum(v * k for v, k in pooled_o) / w)
        out["random_top1_pooled"] = _r(sum(v * k for v, k in pooled_rnd) / w)
    out["ablation"] = _planted_ablation(model, P, n=n, keep=keep)
    return out


def planted_verdicts(targets: dict, *, size_mb: float | None = None, load_seconds: float | None = None) -> list[dict]:
    """One row per target and relation: the measured value, the threshold and met / missed,
    computed from ``PLANTED_CRITERIA``."""
    rows = []

    def add(target, scope, value, met, shown=None):
        rows.append({"target": target, "scope": scope, "value": value, "shown": shown or f"{value:.2f}",
                     "threshold": PLANTED_CRITERIA[target][0], "met": bool(met)})

    for rel, r in targets["per_task"].items():
        for key in ("argument_formed", "planted_dla_share", "transplant_in_domain", "transplant_out_of_domain",
                    "subtract_to_argument"):
            if key in r:
                add(key, rel, r[key], r[key] >= PLANTED_CRITERIA[key][0])
    if "transplant_top1_pooled" in targets:
        o, rnd = targets["transplant_top1_pooled"], targets["random_top1_pooled"]
        ratio = o / rnd if rnd > 0 else (float("inf") if o > 0 else 0.0)
        add("transplant_vs_random", "pooled", ratio, ratio >= PLANTED_CRITERIA["transplant_vs_random"][0],
            f"{o:.2f} vs {rnd:.2f} (×{ratio:.1f})" if rnd > 0 else f"{o:.2f} vs {rnd:.2f}")
    ab = targets["ablation"]
    a, e = ab["abstractive_drop"], ab["extractive_drop"]
    ratio = a / e if e > 0 else (float("inf") if a > 0 else 0.0)
    add("ablation_contrast", ab["zeroed"], ratio, ratio >= PLANTED_CRITERIA["ablation_contrast"][0] and a >= 0.3,
        f"abstractive drop {a:.2f}, extractive drop {e:.2f}")
    if size_mb is not None:
        add("size_mb", "model folder", size_mb, size_mb <= PLANTED_CRITERIA["size_mb"][0], f"{size_mb:.1f} MB")
    if load_seconds is not None:
        add("load_seconds", "load_model", load_seconds, load_seconds <= PLANTED_CRITERIA["load_seconds"][0],
            f"{load_seconds:.2f} s")
    return rows


def planted_table(model: Model, out_dir, *, layer: int, n: int | None = 200, load_seconds: float | None = None) -> dict:
    """The planted organism card's table: targets on all arguments and on the arguments the planted
    objectives never saw, with verdicts, the model folder's size and load time, and the organism
    card's parts 1-3 (``evaluate(model, n=100, sweep=False)``)."""
    from ..models import load_model

    out_dir = Path(out_dir)
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.name in ("model.safetensors", "config.json",
                                                                        "tokenizer.json", "tokenizer_config.json",
                                                                        "lensarith.json"))
    if load_seconds is None:
        t0 = time.perf_counter()
        load_model(out_dir, device="cpu")
        load_seconds = time.perf_counter() - t0
    table = {"targets": planted_targets(model, layer=layer, n=n),
             "targets_aux_held_out": planted_targets(model, layer=layer, n=n, only_aux_held_out=True),
             "size_mb": round(size / 1e6, 2), "load_seconds": round(load_seconds, 2),
             "general": evaluate(model, n=100, sweep=False)}
    table["verdicts"] = planted_verdicts(table["targets"], size_mb=table["size_mb"], load_seconds=table["load_seconds"])
    table["verdicts_aux_held_out"] = planted_verdicts(table["targets_aux_held_out"])
    return table
