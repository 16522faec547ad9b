"""Building blocks of the paper's figures (Merullo, Eickhoff & Pavlick 2023), one model at a time.

Each function computes the numbers of one figure from lensarith's recipes and returns plain
Python (lists, floats) ready for JSON, plots and the report; ``reproduce`` strings them
together. The paper's own numbers for GPT2-Medium are in ``PAPER``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from ..attribution import direct_logit_attribution
from ..core import Batch, Site, as_batch, collect, readout, token_ids, tokenize
from ..core.backends import backend_of
from ..lens import LensResult, logit_lens
from ..tasks import Example, Format, build_prompts
from ..viz.circuits import display_tokens
from .stats import bootstrap_ci, bootstrap_columns, uniform_mrr
from .verdicts import NOISE_FLOOR

__all__ = [
    "PAPER",
    "PAPER_LAYERS",
    "find_example",
    "lens_tokens",
    "answer_from",
    "argument_layers",
    "task_curves",
    "crossing",
    "curve_stats",
    "dla_by_position",
    "top_heads",
    "upper_layers",
]

#: The paper's o-vector layers and replaced range for GPT2-Medium (24 layers).
PAPER_LAYERS: dict[str, Any] = {"model": "gpt2-medium", "application": {"capitals": 19, "uppercase": 19, "past": 18},
                                "replace": list(range(18, 24)), "fig6_layers": list(range(14, 24))}

#: What the paper reports (GPT2-Medium unless said otherwise), for side-by-side printing.
PAPER: dict[str, Any] = {
    "fig2": {"poland": "' Poland' top-1 at layers 15-18, ' Warsaw' from layer 19 (of 24)",
             "colours": "' Brown' top-1 from layer 19 (of 24)",
             "poland_argument_layers": [15, 16, 17, 18], "poland_answer_from": 19, "colours_answer_from": 19},
    "fig3": {"text": "argument rises then falls, answer rises: an 'X'; the function is applied about 2/3 through "
                     "the network", "application_fraction": 2 / 3},
    "fig4": {"text": "random-token context for ' China': with FFNs 18-23 replaced by the Poland prompt's o, "
                     "' Beijing' climbs to the top in the upper layers; without it, it does not"},
    "fig5": {
        "capitals": {"control_rank": 10, "transplant_rank": 4, "no_effect": 0.37},
        "us_capitals": {"control_rank": 20, "transplant_rank": 3},
        "uppercase": {"text": "promoted almost always", "no_effect": 0.04},
        "uppercase_words": {"text": "promoted almost always"},
        "past_regular": {"control_rank": 7, "transplant_rank": 3, "no_effect": 0.19},
        "past_irregular": {"control_rank": 6, "transplant_rank": 3},
        "rank_note": "the answer's rank at the last layer, read off the MRR curves (1 = top)",
    },
    "fig6": {"text": "layers 14-23: the abstractive prompt shows ' Poland' then ' Warsaw'; the extractive prompt has "
                     "' Warsaw' on top at once (saturation)"},
    "fig7": {"model": "BLOOM", "removed": "24 FFNs (of 30)", "extractive_drop": 0.17, "abstractive_drop": 0.73,
             "text": "removing upper FFNs hurts abstractive far more than extractive accuracy"},
}


def find_example(task: str, *, argument: str | None = None, answer: str | None = None, contains: str | None = None,
                 format: Format = "one_shot") -> Example:
    """The first example of a task matching the filters (falls back to filtering less, then the first)."""
    examples = build_prompts(task, format=format)
    tests = [
        lambda e: (argument is None or e.argument.strip() == argument) and (answer is None or e.answer.strip() == answer)
        and (contains is None or contains in e.prompt.splitlines()[-2]),
        lambda e: (argument is None or e.argument.strip() == argument) and (answer is None or e.answer.strip() == answer),
    ]
    for test in tests:
        for e in examples:
            if test(e):
                return e
    return examples[0]


def _decode(model, ids: Sequence[int]) -> list[str]:
    if model.tokenizer is None:
        return [str(int(i)) for i in ids]
    return [model.tokenizer.decode([int(i)]) for i in ids]


def lens_tokens(model: Model, examples: Sequence[Example], *, k: int = 5, batch_size: int = 32,
                progress: bool | None = None) -> tuple[LensResult, list[dict]]:
    """Logit lens at the last position of a few prompts: the top-k tokens per layer.

    Returns:
        The ``LensResult`` and, per example, ``{"prompt", "argument", "answer", "layers",
        "top": [[token]*k per layer], "probs": [[p]*k per layer], "top1": [token per layer],
        "argument_layers", "answer_from"}`` (the layers where the argument's first token is
        top-1; the first layer from which the answer's first token stays top-1).
    """
    batch = tokenize(model, list(examples))
    lens = logit_lens(model, batch, batch_size=batch_size, progress=progress)
    out = []
    all_logits = lens.logits()  # [layer, batch, d_vocab]

    def first(ids, i: int, text: str) -> str:  # the token the item is scored on (its first token)
        return text if ids is None or int(ids[i]) < 0 else _decode(model, [int(ids[i])])[0]

    with torch.no_grad():
        for i, ex in enumerate(batch.examples):
            probs = all_logits[:, i].softmax(-1)
            top = probs.topk(k, dim=-1)
            toks = [_decode(model, row.tolist()) for row in top.indices]
            top1 = [row[0] for row in toks]
            out.append({"prompt": ex.prompt, "argument": ex.argument, "answer": ex.answer, "layers": list(lens.layers),
                        "top": toks, "probs": [[round(float(p), 4) for p in row] for row in top.values],
                        "top1": top1, "argument_layers": argument_layers(top1, first(batch.argument_ids, i, ex.argument)),
                        "answer_from": answer_from(top1, first(batch.answer_ids, i, ex.answer))})
    return lens, out


def answer_from(top1: Sequence[str], answer: str) -> int | None:
    """The first layer from which ``answer`` is the top-1 token through the last layer (None: never)."""
    first = None
    for i in range(len(top1) - 1, -1, -1):
        if top1[i].strip() != answer.strip():
            break
        first = i
    return first


def argument_layers(top1: Sequence[str], argument: str) -> list[int]:
    """The layers where ``argument`` is the top-1 token."""
    return [i for i, t in enumerate(top1) if t.strip() == argument.strip()]


def upper_layers(n_layers: int) -> list[int]:
    """Fig 6's layers: the paper's 14-23 of 24, scaled to the model's depth."""
    start = min(n_layers - 1, int(round(14 * n_layers / 24)))
    return list(range(start, n_layers))


def crossing(answer: Sequence[float], argument: Sequence[float], floor: float = NOISE_FLOOR) -> int | None:
    """The first layer from which the answer's MRR stays above the argument's and at or above
    ``floor`` through the last layer (None: never).

    Example:
        >>> crossing([0.005, 0.01, 0.7, 1.0], [0.001, 0.002, 0.5, 0.3])  # L0-L1 are noise
        2
    """
    first = None
    for i in range(len(answer) - 1, -1, -1):
        if not (float(answer[i]) > float(argument[i]) and float(answer[i]) >= floor):
            break
        first = i
    return first


def _diff(a: Tensor, b: Tensor, seed: int) -> dict[str, Any]:
    """Mean and bootstrap 95% CI of the paired per-example difference ``a - b``."""
    d = (a - b).double()
    lo, hi = bootstrap_ci(d, seed=seed)
    return {"value": round(float(d.mean()), 4), "ci": [round(lo, 4), round(hi, 4)]}


def curve_stats(answer_rr: Float[Tensor, "layer example"], argument_rr: Float[Tensor, "layer example"], *, floor: float = NOISE_FLOOR, seed: int = 0) -> dict[str, Any]:
    """Intervals, the crossing and the "X" numbers from per-example reciprocal ranks.

    Args:
        answer_rr, argument_rr: ``[layer, example]`` reciprocal ranks (the examples averaged).
        floor: the noise floor of the MRR.
        seed: seeds the bootstraps.

    Returns:
        ``{"answer_ci", "argument_ci"`` (per layer ``[lo, hi]``), ``"crossing"``
        (``layer``, ``fraction``, ``handover``, ``argument_leads_layers``, ``floor``),
        ``"x"`` (the numbers ``verdicts.judge_x`` reads)``}``.
    """
    L = answer_rr.shape[0]
    ans, arg = answer_rr.double().mean(-1), argument_rr.double().mean(-1)
    a_lo, a_hi = bootstrap_columns(answer_rr.T.double(), seed=seed)
    g_lo, g_hi = bootstrap_columns(argument_rr.T.double(), seed=seed)
    cross = crossing(ans.tolist(), arg.tolist(), floor)
    leads = []
    for i in range(L if cross is None else cross):
        if float(arg[i]) >= floor and float(arg[i]) > float(ans[i]):
            if bootstrap_ci((argument_rr[i] - answer_rr[i]).double(), seed=seed)[0] > 0:
                leads.append(i)
    peak = int(arg[:-1].argmax()) if L > 1 else 0
    x = {"n_layers": L, "peak_layer": peak, "peak_mrr": round(float(arg[peak]), 4),
         "peak_ci": [round(float(g_lo[peak]), 4), round(float(g_hi[peak]), 4)], "floor": floor,
         "rise": _diff(argument_rr[peak], argument_rr[0], seed), "fall": _diff(argument_rr[peak], argument_rr[-1], seed),
         "answer_rise": _diff(answer_rr[-1], answer_rr[peak], seed), "argument_leads_layers": leads}
    return {"answer_ci": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(a_lo, a_hi)],
            "argument_ci": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(g_lo, g_hi)],
            "crossing": {"layer": cross, "fraction": None if cross is None else round((cross + 1) / L, 3),
                         "handover": bool(leads), "argument_leads_layers": leads, "floor": floor,
                         "rule": "first layer from which the answer's MRR stays above the argument's and above the "
                                 f"noise floor {floor} to the output; depth = (layer + 1) / n_layers"},
         "x": x}


def task_curves(model: Model, task: str, *, n: int | None, batch_size: int = 32, seed: int = 0,
                progress: bool | None = None) -> tuple[dict[str, Any], LensResult, Batch, Tensor]:
    """Fig 3 for one task: mean RR of argument and answer per layer over the correct examples.

    Returns:
        ``(summary, lens, batch, correct)``: the summary holds ``layers``, ``argument`` and
        ``answer`` (MRR per layer over the examples the model answers correctly; all
        examples when it answers none) with bootstrap 95% intervals (``argument_ci``,
        ``answer_ci``), ``n``, ``n_correct``, ``accuracy`` (+ ``accuracy_ci``),
        ``argument_peak_layer``, ``crossing`` (the first layer from which the answer stays
        above the argument *and* above the noise floor, its depth, whether the argument led
        before it), ``x`` (the numbers of the "X" verdict), the noise floor and the MRR of a
        uniform random ranking. ``crossover_layer`` / ``crossover_fraction`` keep the raw
        reading (answer above argument, noise included) for comparison.
    """
    examples = build_prompts(task, n=n, seed=seed)
    batch = tokenize(model, examples, drop_multi_token=True)
    lens = logit_lens(model, batch, batch_size=batch_size, progress=progress)
    ans_rank, arg_rank = lens.rank("answer"), lens.rank("argument")
    correct = ans_rank[-1] == 0
    use = correct if bool(correct.any()) else torch.ones_like(correct)
    ans_rr = 1.0 / (ans_rank[:, use].float() + 1)
    arg_rr = 1.0 / (arg_rank[:, use].float() + 1)
    ans, arg = ans_rr.mean(-1), arg_rr.mean(-1)
    L = len(lens.layers)
    cross = None
    for i in range(L - 1, -1, -1):
        if float(ans[i]) <= float(arg[i]):
            break
        cross = i
    peak = int(arg[:-1].argmax()) if L > 1 else 0
    acc_ci = bootstrap_ci(correct.double(), seed=seed)
    summary = {"task": task, "layers": list(lens.layers), "argument": [round(float(x), 4) for x in arg],
               "answer": [round(float(x), 4) for x in ans], "n": len(batch), "n_correct": int(correct.sum()),
               "accuracy": round(float(correct.float().mean()), 4), "averaged_over": "correct" if bool(correct.any()) else "all",
               "argument_peak_layer": peak, "argument_peak_mrr": round(float(arg[peak]), 4), "crossover_layer": cross,
               "crossover_fraction": None if cross is None else round((cross + 1) / L, 3),
               "dropped_multi_token": len(batch.report.get("dropped", [])),
               "accuracy_ci": [round(acc_ci[0], 4), round(acc_ci[1], 4)], "noise_floor": NOISE_FLOOR,
               "uniform_mrr": round(uniform_mrr(model.cfg.d_vocab), 6)}
    summary.update(curve_stats(ans_rr, arg_rr, floor=NOISE_FLOOR, seed=seed))
    return summary, lens, batch, correct


def dla_by_position(model: Model, example: Example | str, *, answer: str | None = None, baseline: str | None = None
                    ) -> tuple[list[str], list[float]]:
    """Per source position: the direct effect, through every attention head, of what the last
    position reads from it on ``logit(answer) - logit(baseline)`` (frozen final-LN scale).

    Args:
        model: a HookedTransformer.
        example: an ``Example`` (answer and argument are used) or a prompt string.
        answer, baseline: override the tokens (default: the example's answer and argument).

    Returns:
        ``(tokens, values)``, one value per token of the prompt.
    """
    if isinstance(example, str):
        example = Example(example, answer or "", baseline or "")
    ans = answer or example.answer
    base = baseline if baseline is not None else example.argument
    if not ans:
        raise LensarithError("dla_by_position needs an answer token (Example.answer or answer=)")
    batch = as_batch(model, [example.prompt])
    ids = batch.tokens[0]
    L = model.cfg.n_layers
    sites = [Site(kind, layer) for layer in range(L) for kind in ("pattern", "v")]
    read = Site("resid_post", L - 1, "last")
    got = collect(model, batch, sites + [read])
    with torch.no_grad():
        total = None
        for layer in range(L):
            pat = got[Site("pattern", layer)][0, :, -1]  # [head, src]
            v = got[Site("v", layer)][0]  # [src, head_kv, d_head]
            if v.shape[1] != pat.shape[0]:
                v = v.repeat_interleave(pat.shape[0] // v.shape[1], dim=1)
            per = torch.einsum("hs,shd,hdm->sm", pat, v, backend_of(model).block(layer).W_O)
            total = per if total is None else total + per
        normed, _ = readout.frozen_final_norm(model, total[:, None, :], got[read])
        direction = readout.directions(model, token_ids(model, [ans], name="answer"))[0][0]
        if base:
            direction = direction - readout.directions(model, token_ids(model, [base], name="baseline"))[0][0]
        values = (normed[:, 0] @ direction).float().cpu().tolist()
    return display_tokens(model, ids), values


def top_heads(model: Model, batch: Batch, *, k: int = 2, batch_size: int = 32) -> list[tuple[int, int, float]]:
    """The ``k`` heads with the largest mean direct logit attribution to answer - argument."""
    dla = direct_logit_attribution(model, batch, "answer", "argument", granularity="head", batch_size=batch_size,
                                   progress=False)
    means = dla.attributions.mean(-1)
    rows = []
    for label, value in zip(dla.component_labels, means.tolist()):
        if label.startswith("L") and "H" in label and "_" not in label:
            layer, head = label[1:].split("H")
            rows.append((int(layer), int(head), float(value)))
    rows.sort(key=lambda r: -abs(r[2]))
    return rows[:k]
