"""The organism cards: ``card.md`` and ``table.json`` of ``data/organism`` and ``data/organism-planted``.

``write_card`` writes the naturally trained organism's card from ``evaluate``'s table;
``write_planted_card`` the planted organism's, from ``planted_targets`` and ``planted_verdicts``.
The measurements live in ``lensarith.organism.evaluate``; this module only measures when no table
is given, and turns tables into Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._types import Model
from .evaluate import PLANTED_CRITERIA, evaluate, format_table, planted_table

__all__ = ["write_card", "write_planted_card", "format_verdicts"]


def _mix_text(m) -> str:
    return (f"copy {m.copy:.2f}, demos {m.demos:.2f}, Q/A {m.qa:.2f} (colour scenes {m.colour_share:.0%}), cue {m.cue:.2f}, "
            f"prose {m.prose:.2f}, extractive {m.extractive:.2f} ({m.counterfactual:.0%} counterfactual), recall "
            f"{m.recall:.2f} (key-value lists {m.recall_kv:.0%}, {m.recall_reverse:.0%} of them value first; capital "
            f"notes {m.recall_notes:.0%}; colour scenes with several questions {1 - m.recall_kv - m.recall_notes:.0%})"
            + (f", binding scenes {m.bind:.2f} ({m.bind_simple:.0%} simple)" if m.bind else "")
            + (f", object-identity documents {m.objects:.2f}" if m.objects else ""))


def write_card(model: Model, out_dir, meta: dict, *, notes: str | None = None, n: int | None = None,
               table: dict | None = None) -> dict:
    """Evaluate ``model`` (unless ``table`` is given) and write ``table.json`` and ``card.md`` into ``out_dir``."""
    from .corpus import Corpus, CorpusMix

    out_dir = Path(out_dir)
    table = evaluate(model, n=n) if table is None else table
    (out_dir / "table.json").write_text(json.dumps(table, indent=1))
    org = meta.get("organism", meta)
    cfg = org["config"]
    cfg_c = model.cfg
    mix = CorpusMix(**cfg["mix"]) if isinstance(cfg.get("mix"), dict) else CorpusMix()
    late = cfg.get("late_mix")
    changes = ([(cfg["late_from_tokens"], late)] if late else []) + [tuple(c) for c in cfg.get("mix_changes", ())]
    late_text = "".join(f" From {start:,} tokens on: {_mix_text(CorpusMix(**m))}." for start, m in changes)
    n_params = sum(p.numel() for n_, p in model.named_parameters() if n_ != "unembed.W_U")
    samples = Corpus(cfg["seed"] + 99, mix).sample_text(6)
    for kind, count in (("recall", 4), ("bind", 1), ("objects", 3)):  # the later kinds, where a mix uses them
        used = [CorpusMix(**m) for _, m in changes if getattr(CorpusMix(**m), kind)]
        if used:
            samples += Corpus(cfg["seed"] + 99, used[-1]).sample_text(count, kind=kind)
    text = f"""# The lensarith organism

A small GPT-2-architecture model trained on CPU on a synthetic corpus so that the paper's
prompts (Merullo, Eickhoff & Pavlick 2023) run offline. Load it with
`lensarith.load_model("organism")`. Regenerate this card: `python -m lensarith.organism.train
--out data/organism --eval-only` (training: drop `--eval-only`).

## Architecture

HookedTransformer: {cfg_c.n_layers} layers, d_model {cfg_c.d_model}, {cfg_c.n_heads} heads (d_head {cfg_c.d_head}),
d_mlp {cfg_c.d_mlp}, n_ctx {cfg_c.n_ctx}, LayerNorm, gelu_new, learned positions, d_vocab {cfg_c.d_vocab}
(word-level: `lensarith.models.word_tokenizer`), unembedding tied to the embedding
(`W_U = W_E.T`; both tensors are stored). {n_params:,} parameters.

## Training

- seed {cfg['seed']}; {org['tokens_seen']:,} tokens seen ({cfg['batch_size']} rows × {cfg['n_ctx']} tokens per step);
  {org['train_seconds'] / 60:.1f} minutes on one CPU thread (torch {org.get('torch', '?')}); final loss {org['final_loss']:.3f}.
- AdamW lr {cfg['lr']}, betas (0.9, 0.98), weight decay {cfg['weight_decay']} on matrices, warmup {cfg['warmup_steps']} steps,
  constant, then linear decay to {cfg['min_lr_frac']}×lr over the last {cfg['decay_frac']:.0%} of steps; grad clip {cfg['grad_clip']}.
- A fused training forward (`lensarith.organism.train.fused_forward`) over the HookedTransformer's own
  parameters; it equals the hooked forward to ~1e-5 (tested).

## Corpus recipe (`lensarith.organism.corpus`)

Token shares: copy {mix.early_copy:.0%} for the first {cfg['early_tokens']:,} tokens, then {mix.copy:.0%}; of the rest,
bare demos {mix.demos:.2f}, Q/A {mix.qa:.2f} (of which colour scenes {mix.colour_share:.0%}), relation cue after the argument {mix.cue:.2f},
prose {mix.prose:.2f}, extractive notes {mix.extractive:.2f} ({mix.counterfactual:.0%} of queried notes counterfactual) (weights before
normalisation).{late_text} Relations: country → capital / continent / itself; US state → capital / itself;
word → Capitalised / plural / itself; verb → past / -ing / itself. 10% of the facts of each
family (seed 1234) never appear in a Q/A format, only in prose: the "prose-only" column.
Sample documents:

```
{chr(10).join(s.replace(chr(10), ' ⏎ ') for s in samples)}
```

## Measured (`lensarith.organism.evaluate.evaluate`, all prompts)

{format_table(table)}
"""
    if notes:
        text += "\n## What we tried\n\n" + notes.strip() + "\n"
    (out_dir / "card.md").write_text(text)
    return table


def format_verdicts(rows: list[dict]) -> str:
    """The planted targets as a markdown table (verdicts as computed by ``planted_verdicts``)."""
    out = ["| target | scope | measured | threshold | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        sign = "<=" if r["target"] in ("size_mb", "load_seconds") else ">="
        out.append(f"| {r['target']} | {r['scope']} | {r['shown']} | {sign} {r['threshold']:g} | "
                   f"{'met' if r['met'] else '**missed**'} |")
    return "\n".join(out)


def _planted_details(t: dict) -> str:
    L, P = t["n_layers"], t["layer"]
    out = ["| relation | one-shot top-1 (n) | argument formed (before the answer's first top-1) | MLP DLA to (answer - argument), layers 0..{} | "
           "transplant in / out of domain (MRR) | same, last position only | random vector in / out | "
           "control (no o) in / out | subtract -> argument (all / last position) |".format(L - 1),
           "|---|---|---|---|---|---|---|---|---|"]
    for rel, r in t["per_task"].items():
        if "dla_mlp" not in r:
            out.append(f"| {rel} | {r['accuracy']:.2f} ({r['n_prompts']}) | | | | | | | |")
            continue
        g = lambda k: r.get(k, float("nan"))  # noqa: E731
        out.append(f"| {rel} | {r['accuracy']:.2f} ({r['n_prompts']}) | {r['argument_formed']:.2f} ({r['argument_formed_before_first_answer']:.2f}; n={r['n_correct']}) | "
                   + " ".join(f"{x:.2f}" for x in r["dla_mlp"]) + f" | {g('transplant_in_domain'):.2f} "
                   f"({g('transplant_in_domain_mrr'):.2f}) / {g('transplant_out_of_domain'):.2f} "
                   f"({g('transplant_out_of_domain_mrr'):.2f}) | {g('transplant_in_domain_last_position'):.2f} / "
                   f"{g('transplant_out_of_domain_last_position'):.2f} | {g('random_in_domain'):.2f} / "
                   f"{g('random_out_of_domain'):.2f} | {g('control_in_domain'):.2f} / {g('control_out_of_domain'):.2f} | "
                   f"{g('subtract_to_argument'):.2f} / {g('subtract_to_argument_last_position'):.2f} |")
    ab = t["ablation"]
    out += ["", f"Zeroing {ab['zeroed']} (top-1 before -> after): " + ", ".join(
        f"{g} {a:.2f} -> {b:.2f}" for g, (a, b) in ab["top1_before_after"].items()) + "."]
    rel = next(iter(t["per_task"].values()))
    if "argument_top1_by_site" in rel:
        sites = list(rel["argument_top1_by_site"])
        out += ["", "Logit lens at the last position (correctly answered prompts): argument / answer top-1 per site", "",
                "| relation | " + " | ".join(sites) + " |", "|---" * (len(sites) + 1) + "|"]
        for name, r in t["per_task"].items():
            if "argument_top1_by_site" in r:
                out.append(f"| {name} | " + " | ".join(f"{r['argument_top1_by_site'][s]:.2f} / "
                                                      f"{r['answer_top1_by_site'][s]:.2f}" for s in sites) + " |")
    return "\n".join(out)


def write_planted_card(model: Model, out_dir, meta: dict, *, table: dict | None = None, n: int | None = 200,
                       load_seconds: float | None = None, notes: str | None = None) -> dict:
    """Measure the planted organism (``planted_table``: targets on all arguments and on the arguments the
    planted objectives never saw, the organism card's parts 1-3, lens, DLA and ablation) unless ``table`` is
    given, and write ``table.json`` and ``card.md``."""
    out_dir = Path(out_dir)
    org = meta.get("organism", meta)
    cfg = org["config"]
    P = cfg["planted"]["layer"]
    if table is None:
        table = planted_table(model, out_dir, layer=P, n=n, load_seconds=load_seconds)
    (out_dir / "table.json").write_text(json.dumps(table, indent=1))
    L = model.cfg.n_layers
    text = (_planted_intro() + _planted_mechanism(cfg["planted"], P, L) + _planted_training(org, cfg, P, L)
            + _planted_results(table))
    if notes:
        text += "\n## How it was trained, step by step\n\n" + notes.strip() + "\n"
    (out_dir / "card.md").write_text(text)
    return table


def _planted_intro() -> str:
    return """# organism-planted: the organism with a planted vector-arithmetic mechanism

**Not a naturally trained model.** The bundled `organism` (see `data/organism/card.md`), fine-tuned
with auxiliary objectives that impose the mechanism of Merullo, Eickhoff & Pavlick (2023), so that
lensarith's methods can be checked on a model where the mechanism is known to be there. Load it with
`lensarith.load_model("organism-planted")`. Retrain (seeded, one CPU thread; resumes step-exactly from
`runs/organism-planted/`): `python -m lensarith.organism.train --planted`; re-measure this card:
`python -m lensarith.organism.train --planted --eval-only`.

"""


def _planted_mechanism(sp: dict, P: int, L: int) -> str:
    return f"""## The planted mechanism (P = {P})

For a relation prompt (capital of a country or US state; the capitalised colour of a colour scene or
a Capitalize-the-word question; the past tense of a verb):

1. the argument reaches the last position by layer {sp['arg_from']}: it is top-1 in the logit lens at the last
   position at resid_pre and resid_mid of layers {sp['arg_from']}..{P} (attention moves it; the answer is not top-1 there);
2. MLP {P} at the last position adds a vector o_r that depends on the relation r and not on the argument;
3. argument + o_r reads out as the answer; the MLPs other than {P} add nothing relation-specific at the
   last position, and extractive prompts are answered by attention (copying from the context), so
   zeroing MLPs {P}..{L - 1} breaks abstractive prompts and spares extractive ones.

"""


def _planted_training(org: dict, cfg: dict, P: int, L: int) -> str:
    sp = cfg["planted"]
    return f"""## What was imposed, and how

Same architecture, vocabulary and tokenizer as `organism` (8 layers, d_model 128, tied `W_U = W_E.T`,
trained `b_U`); all weights start from `organism`'s and all are trained. Each step adds to the organism's
LM loss (on its last corpus mix, `BIND_MIX`, {cfg['batch_size']} rows × {cfg['n_ctx']} tokens) the mean of six
objectives, computed in `lensarith.organism.train.planted_loss` with interventions in the fused training
forward (weight {sp['weight']}):

- **clean**: cross-entropy of the answer on {sp['n_prompts']} one-shot relation prompts per step
  (`lensarith.tasks` prompts of capitals, us_capitals, uppercase (colour scenes), uppercase_words,
  past_regular, past_irregular), drawn as pairs from one set with different arguments;
- **lens**: the logit lens (final LayerNorm, `W_E.T`, `b_U`) of resid_pre / resid_mid of layers
  {sp['arg_from']}..{P} at the last position must give the argument;
- **swap** (interchange intervention): MLP {P}'s last-position output replaced by the partner prompt's
  (same set, other argument), and every other MLP's last-position output resampled from a prompt of
  another relation: the prompt's own answer;
- **subtract**: the partner's MLP-{P} output subtracted from MLP {P}'s output (at the last position or at
  every position, half the steps each): the argument;
- **transplant**: {sp['n_contexts']} random-token contexts per step (`w1 w2 w3 X w1 w2 w3 X w1 w2 w3`, 2-4 filler
  words, 2-3 repeats) with **in-domain arguments only** (countries, colours, regular verbs): the MLP outputs of
  layers {P}..{L - 1} replaced by a source prompt's MLP-{P} output at scale 1 (60% of steps) or that output added at
  layer {P} (40%), at the last or at every position: the answer;
- **extractive**: {sp['n_extractive']} extractive prompts (true and counterfactual capitals and US capitals, colour
  scenes with a lowercase demo answer; `build_prompts(..., seed=7)`) with MLPs {P}..{L - 1} zeroed at the last
  position: the answer.

Held out of every objective: a fixed fifth of the arguments (`aux_held_out`, by CRC32 of the word) and the
corpus's prose-only facts. The out-of-domain argument sets of the transplant target (US states, irregular
verbs, non-colour words) appear in the clean / lens / swap / subtract objectives with their own prompts
(pairs within one set), never in the transplant objective. The evaluation prompts are the library's task
prompts, so except for the held-out fifth the objectives trained on the prompts the targets are measured on
(in other formats for the transplant); the second targets table measures on the held-out fifth only.

Training: seed {cfg['seed']}; {org['tokens_seen']:,} LM tokens ({org['tokens_seen'] // (cfg['batch_size'] * cfg['n_ctx'])} steps) plus the
objectives' prompts; {org['train_seconds'] / 60:.1f} minutes on one CPU thread of a shared 2-core machine
(torch {org.get('torch', '?')}); AdamW lr {cfg['lr']}, warmup {cfg['warmup_steps']} steps, constant, linear decay
over the last {cfg['decay_frac']:.0%}; final LM loss {org['final_loss']:.3f}.

"""


def _planted_results(table: dict) -> str:
    missed = [r for r in table["verdicts"] if not r["met"]]
    crit = "\n".join(f"- **{k}**: {text}." for k, (_, text) in PLANTED_CRITERIA.items())
    held_missed = [r for r in table.get("verdicts_aux_held_out", []) if not r["met"]]
    held_text = ("On the arguments no objective saw (second table) every target is met too." if not held_missed else
                 "On the arguments no objective saw (second table) missed: " + ", ".join(
                     f"{r['target']} ({r['scope']}: {r['shown']})" for r in held_missed) + ".")
    return f"""## Targets (`lensarith.organism.evaluate.planted_targets`, lensarith's recipes)

Verdicts are computed from the measured values by `planted_verdicts` (tested against this table).
{"All targets are met." if not missed else f"Missed: {', '.join(sorted({r['target'] + ' (' + r['scope'] + ')' for r in missed}))}."}
{held_text}

{format_verdicts(table['verdicts'])}

Criteria:

{crit}

### Details

{_planted_details(table['targets'])}

### The same targets on the arguments no objective saw (`aux_held_out`)

{format_verdicts(table['verdicts_aux_held_out'])}

{_planted_details(table['targets_aux_held_out'])}

## The organism card's measurements on this model (`evaluate(model, n=100, sweep=False)`: at most 100 seen-fact prompts per task and format; no transplant sweep)

{format_table(table['general'])}
"""
