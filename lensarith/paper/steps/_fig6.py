"""Fig 6: abstractive vs extractive capitals prompts in the upper layers (from Fig 2's logit lens)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..._types import Model
from ...lens import LensResult
from ...tasks import Example
from ..config import is_gpt2_medium
from ..figures import PAPER, PAPER_LAYERS, upper_layers
from ._fig2 import Fig2
from ._outputs import Outputs

__all__ = ["Fig6", "fig6"]


@dataclass(frozen=True)
class Fig6:
    """Fig 6's result.

    Attributes:
        numbers: ``{"abstractive", "extractive"}``: the upper layers' top-1 tokens, the answer's
            and the argument's layers (``summary["figures"]["fig6"]``).
        lens: Fig 2's logit lens (abstractive prompt at 0, extractive at 2).
        abstractive, extractive: the two prompts (Fig 2's capitals prompt and its extractive twin).
        png: the figure.
    """

    name: ClassVar[str] = "fig6"
    numbers: dict[str, dict[str, Any]]
    lens: LensResult
    abstractive: Example
    extractive: Example
    png: Path

    def line(self) -> str:
        return (f"fig 6: answer from layer {self.numbers['abstractive']['answer_from']} (abstractive) vs "
                f"{self.numbers['extractive']['answer_from']} (extractive)")

    def render(self, report) -> None:
        from ...viz import circuits

        fig6 = self.numbers
        up = fig6["abstractive"]["layers"]
        report.add_section("Fig 6: abstractive vs extractive (capitals)",
                           f"Layers {up[0]}-{up[-1]}. Abstractive answer from layer {fig6['abstractive']['answer_from']}, "
                           f"extractive from layer {fig6['extractive']['answer_from']}. Paper: " + PAPER["fig6"]["text"] + ".")
        report.add_figure(self.png)
        report.add_widget(circuits.logit_lens_table(self.lens, 0, k=3, layers=up, title="abstractive: " + self.abstractive.prompt.splitlines()[-2]))
        report.add_widget(circuits.logit_lens_table(self.lens, 2, k=3, layers=up, title="extractive: " + self.extractive.prompt.splitlines()[0]))


def fig6(model: Model, out: Outputs, fig2: Fig2) -> Fig6:
    """Fig 6: Fig 2's capitals prompt (abstractive) and its extractive twin over the upper layers
    (the paper's 14-23 on GPT2-Medium, the same share of the depth elsewhere)."""
    from ...viz import plots

    toks = fig2.tokens
    up = upper_layers(model.cfg.n_layers) if not is_gpt2_medium(model) else PAPER_LAYERS["fig6_layers"]
    numbers = {}
    for name, t in (("abstractive", toks[0]), ("extractive", toks[2])):
        numbers[name] = {"prompt": t["prompt"], "layers": up, "top1": [t["top1"][i] for i in up],
                         "answer_from": t["answer_from"], "argument_layers": t["argument_layers"]}
    png = out.png(plots.token_grid([toks[0]["layers"][i] for i in up], {"abstractive": numbers["abstractive"]["top1"],
                                                                       "extractive": numbers["extractive"]["top1"]},
                                   title=f"Fig 6: top-1 token, layers {up[0]}-{up[-1]}", highlight=fig2.marks), "fig6")
    return Fig6(numbers, fig2.lens, fig2.capitals, fig2.capitals_extractive, png)
