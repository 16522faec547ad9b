"""The layers of each task's o-vector and replaced MLPs (the paper's for GPT2-Medium, a search
otherwise), the source prompts and the o-vectors that Figs 4 and 5 transplant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import LensarithError
from ..._types import Model
from ...core import tokenize
from ...tasks import Example
from ..config import TASKS, ReproduceConfig, is_gpt2_medium
from ..figures import PAPER_LAYERS
from ..text import scroll_table
from ._fig2 import Fig2
from ._fig3 import Fig3
from ._outputs import Outputs

if TYPE_CHECKING:
    from ...vectors import OVector

__all__ = ["Layers", "choose_layers", "layers"]


@dataclass(frozen=True)
class Layers:
    """The layers step's result.

    Attributes:
        numbers: ``{task: {"method", "application", "replace", "source", ...}}`` (``summary["layers"]``).
        sources: each task's source prompt (its o-vector's).
        ovecs: each task's o-vector (from MLP ``numbers[task]["application"]`` of its source prompt).
    """

    name: ClassVar[str] = "layers"
    numbers: dict[str, dict[str, Any]]
    sources: dict[str, Example]
    ovecs: dict[str, OVector]

    def line(self) -> str:
        return "layers: " + "; ".join(f"{t} o@{i['application']} replace {i['replace'][0]}-{i['replace'][-1]} "
                                      f"({i['method']})" for t, i in self.numbers.items())

    def render(self, report) -> None:
        report.add_section("Layers",
                           "GPT2-Medium uses the paper's layers (o from MLP 19 / 19 / 18, MLPs 18-23 replaced); other "
                           "models use lensarith.vectors.find_layers (each layer's o transplanted into random-token "
                           "contexts; the layer lifting the answer most, then the best start of the replaced range).")
        report.add_html(scroll_table([{"task": t, "method": i["method"], "o from MLP": i["application"],
                                       "replaced MLPs": f"{i['replace'][0]}-{i['replace'][-1]}",
                                       "source prompt": i["source"][-60:], "source answered correctly": i["source_correct_check"]}
                                      for t, i in self.numbers.items()]))


def layers(model: Model, config: ReproduceConfig, out: Outputs, fig3: Fig3, fig2: Fig2) -> Layers:
    """Per task: a source prompt the model answers (Fig 2's capitals prompt where it is answered),
    the layers (``choose_layers``), then the o-vectors."""
    from ...vectors import extract_o_vector

    numbers, sources, ovecs = {}, {}, {}
    for task in TASKS:
        data = fig3.tasks[task]
        batch, correct = data.batch, data.correct
        preferred = fig2.capitals if task == "capitals" else None
        src, src_ok = _pick_source(model, task, batch, correct, preferred, fig2.capitals_correct)
        sources[task] = src
        others = [e for e, c in zip(batch.examples, correct.tolist()) if c and e.prompt != src.prompt]
        others += [e for e, c in zip(batch.examples, correct.tolist()) if not c and e.prompt != src.prompt]
        info, found = choose_layers(model, task, src, others[: config.n_search - 1], config, progress=out.progress)
        info.update(source=src.prompt, source_answer=src.answer, source_correct_check=src_ok)
        numbers[task] = info
        if found is not None:
            found.save(out.results / f"layers-{task}")
    for task in TASKS:
        o = extract_o_vector(model, [sources[task]], numbers[task]["application"], reduce="mean")
        o.save(out.results / f"o-{task}")
        ovecs[task] = o
    return Layers(numbers, sources, ovecs)


def choose_layers(model: Model, task: str, source: Example, search_examples: list[Example], config: ReproduceConfig,
                  progress: bool | None = None) -> tuple[dict[str, Any], Any]:
    """The application layer and the replaced MLP range for a task.

    GPT2-Medium: the paper's (19/19/18 and 18-23). Otherwise ``find_layers`` on the task's
    prompts, with ``source`` as the o-vector's source prompt, sweeping the same intervention
    Fig 5 evaluates (o_l replacing MLPs l..last, then the best start of the range).

    Returns:
        ``({"method", "application", "replace", ...}, LayerSearchResult or None)``.
    """
    if is_gpt2_medium(model):
        return {"method": "paper", "application": PAPER_LAYERS["application"][task],
                "replace": list(PAPER_LAYERS["replace"])}, None
    from ...vectors import SearchConfig, find_layers

    found = find_layers(model, [source] + search_examples, source=0,
                        config=SearchConfig(n_prompts=config.n_search, n_contexts=config.n_search, seed=config.seed,
                                            apply_mode="replace"),
                        batch_size=8, progress=progress)
    info = {"method": "search", "application": found.application_layer, "replace": found.layers,
            "source_correct": found.meta.get("source_correct"), "task_accuracy": found.meta.get("task_accuracy"),
            "table": found.table()}
    return info, found


def _single_token(model, ex: Example) -> bool:
    try:
        b = tokenize(model, [ex], drop_multi_token=True)
    except LensarithError:
        return False
    return len(b) == 1


def _pick_source(model, task: str, batch, correct, preferred: Example | None, preferred_ok: bool) -> tuple[Example, bool]:
    if preferred is not None and preferred_ok and _single_token(model, preferred):
        return preferred, True
    exs = list(batch.examples)
    ok = correct.tolist()
    keep = [i for i in range(len(exs)) if task != "past" or exs[i].meta.get("source") == "past_regular"] or list(range(len(exs)))
    for i in keep:
        if ok[i]:
            return exs[i], True
    return exs[keep[0]], False
