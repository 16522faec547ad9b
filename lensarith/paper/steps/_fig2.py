"""Fig 2 / Table 1: the logit lens on the paper's two prompts (Poland, colours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..._types import Model
from ...lens import LensResult
from ...tasks import Example
from ..config import ReproduceConfig
from ..figures import PAPER, find_example, lens_tokens
from ._fig3 import Fig3
from ._outputs import Outputs

__all__ = ["Fig2", "fig2"]


@dataclass(frozen=True)
class Fig2:
    """Fig 2's result.

    Attributes:
        numbers: ``{"capitals", "colours"}``: top-k tokens per layer, argument layers, answer
            layer, whether the paper's prompt was kept (``summary["figures"]["fig2"]``).
        capitals, colours: the prompts shown (the paper's, or the task's first one the model
            answers correctly when it misses the paper's).
        capitals_extractive: the capitals prompt with the answer in the context (Fig 6).
        lens: the logit lens on ``[capitals, colours, capitals_extractive]`` (Fig 6 reads it too).
        tokens: ``lens_tokens``' per-prompt dicts for those three prompts.
        marks: token highlight colours (argument blue, answer orange).
        notes: for each paper prompt the model misses: its prediction and whether it was replaced.
        n_layers: the model's depth.
        png: the figure.
    """

    name: ClassVar[str] = "fig2"
    numbers: dict[str, dict[str, Any]]
    capitals: Example
    colours: Example
    capitals_extractive: Example
    lens: LensResult
    tokens: list[dict[str, Any]]
    marks: dict[str, str]
    notes: dict[str, dict[str, Any]]
    n_layers: int
    png: Path

    @property
    def capitals_correct(self) -> bool:
        """Whether the model answers the capitals prompt shown correctly."""
        return bool(self.numbers["capitals"]["correct"])

    def line(self) -> str:
        cap_ex, col_ex, toks = self.capitals, self.colours, self.tokens
        return (f"fig 2: {cap_ex.argument.strip()} prompt: argument layers {toks[0]['argument_layers']}, answer from "
                f"{toks[0]['answer_from']}; colours ({col_ex.argument.strip()}) answer from {toks[1]['answer_from']}"
                + "".join(f"; the paper's {k} prompt is answered {n['paper_prompt_prediction'].strip()!r}"
                          for k, n in self.notes.items()))

    def render(self, report) -> None:
        from ...viz import circuits

        toks = self.tokens
        intro = ("Top-1 token decoded from the residual stream after each layer at the last position (argument blue, "
                 "answer orange). Paper, GPT2-Medium: " + PAPER["fig2"]["poland"] + "; " + PAPER["fig2"]["colours"] + ".")
        for key, n in self.notes.items():
            intro += (f" The model answers the paper's {key} prompt ({n['paper_prompt_argument'].strip()} → "
                      f"{n['paper_prompt_answer'].strip()}) with {n['paper_prompt_prediction'].strip()!r}"
                      + ("; shown instead: the first prompt of the task it answers correctly." if n["substituted"] else "."))
        report.add_section("Fig 2 / Table 1: the logit lens on two prompts", intro)
        report.add_figure(self.png, caption="top-1 token per layer")
        for i, key in enumerate(("capitals", "colours")):
            t = toks[i]
            report.add_widget(circuits.logit_lens_table(self.lens, i, k=5,
                                                        title=f"{key}: ...{t['prompt'][-60:]!r} → {t['answer']!r}"))
            report.add_text(f"{key}: argument top-1 at layers {t['argument_layers'] or 'none'}; answer top-1 from layer "
                            f"{t['answer_from'] if t['answer_from'] is not None else 'never'} (of {self.n_layers}).",
                            note=True)


def fig2(model: Model, config: ReproduceConfig, out: Outputs, fig3: Fig3) -> Fig2:
    """Fig 2: the paper's Poland and colours prompts through the logit lens (a prompt the model
    misses is replaced by the first of its task the model answers correctly, from ``fig3``)."""
    from ...viz import plots

    paper_prompts = (find_example("capitals", argument="Poland"),
                     find_example("uppercase", answer="Brown", contains="sheet of paper"))
    _, paper_toks = lens_tokens(model, list(paper_prompts), k=1, batch_size=config.batch_size, progress=False)
    shown, notes = [], {}
    for key, ex, t, task in (("capitals", paper_prompts[0], paper_toks[0], "capitals"),
                             ("colours", paper_prompts[1], paper_toks[1], "uppercase")):
        if t["top1"][-1].strip() == ex.answer.strip():
            shown.append(ex)
            continue
        data = fig3.tasks[task]
        alt = next((e for e, ok in zip(data.batch.examples, data.correct.tolist()) if ok), None)
        shown.append(alt or ex)
        notes[key] = {"paper_prompt_prediction": t["top1"][-1], "paper_prompt_answer": ex.answer,
                      "paper_prompt_argument": ex.argument, "substituted": alt is not None}
    cap_ex, col_ex = shown
    cap_x = find_example("capitals", argument=cap_ex.argument.strip(), format="extractive")
    lens3, toks = lens_tokens(model, [cap_ex, col_ex, cap_x], k=5, batch_size=config.batch_size, progress=False)
    lens3.save(out.results / "fig2-lens")
    numbers = {}
    for key, ex, t in (("capitals", paper_prompts[0], toks[0]), ("colours", paper_prompts[1], toks[1])):
        numbers[key] = {kk: v for kk, v in t.items() if kk != "probs"}
        numbers[key]["correct"] = t["top1"][-1].strip() == t["answer"].strip()
        numbers[key]["paper_prompt"] = key not in notes or not notes[key]["substituted"]
        numbers[key].update(notes.get(key, {}))
    marks = {e.argument: "#cfe2ff" for e in (cap_ex, col_ex)} | {e.answer: "#ffe0b2" for e in (cap_ex, col_ex)}
    png = out.png(plots.token_grid(toks[0]["layers"], {f"{cap_ex.argument.strip()} prompt": toks[0]["top1"],
                                                       f"colours ({col_ex.argument.strip()}) prompt": toks[1]["top1"]},
                                   title="Fig 2 / Table 1: top-1 logit-lens token per layer (last position)",
                                   highlight=marks), "fig2")
    return Fig2(numbers, cap_ex, col_ex, cap_x, lens3, toks, marks, notes, model.cfg.n_layers, png)
