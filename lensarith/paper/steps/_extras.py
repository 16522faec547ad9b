"""Inside the capitals prompt: direct logit attribution by position, the top heads' attention,
activation patching between capitals prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..._errors import LensarithError
from ..._types import Model
from ...tasks import Example, build_prompts
from ..config import ReproduceConfig
from ..figures import dla_by_position, top_heads
from ._fig3 import Fig3
from ._layers import Layers
from ._outputs import Outputs

if TYPE_CHECKING:
    from ...patching import PatchResult, PromptPairs

__all__ = ["Extras", "extras"]


@dataclass(frozen=True)
class Patched:
    """The activation-patching extra's objects the report draws (the numbers are in ``Extras.numbers``)."""

    result: PatchResult
    pairs: PromptPairs
    best: int  # the layer (index) with the largest |recovery|
    png: Path


@dataclass(frozen=True)
class Extras:
    """The extras' result.

    Attributes:
        numbers: ``{"dla_by_position", "top_heads", "patching"}`` (``summary["figures"]["extras"]``;
            ``patching`` is absent with ``patching_pairs=0`` and ``{"skipped": why}`` where no pairs fit).
        source: the capitals source prompt.
        patched: what the report draws of the patching (None when it did not run).
        model: the model (the report draws the top heads' attention on ``source``).
    """

    name: ClassVar[str] = "extras"
    numbers: dict[str, Any]
    source: Example
    patched: Patched | None
    model: Any = field(repr=False, compare=False)

    def line(self) -> str:
        return ""  # nothing to log

    def render(self, report) -> None:
        from ...viz import circuits

        extras, source = self.numbers, self.source
        report.add_section("Inside the capitals prompt: renderers",
                           "Per-position direct logit attribution through attention, the attention patterns of the heads "
                           "with the largest direct effect, and activation patching between capitals prompts.")
        d = extras["dla_by_position"]
        report.add_widget(circuits.colored_tokens(d["tokens"], d["values"], title=f"direct effect via attention of each "
                                                  f"position on logit({source.answer!r}) - logit({source.argument!r})"))
        heads = [(h["layer"], h["head"]) for h in extras["top_heads"]]
        if heads:
            report.add_widget(circuits.attention_patterns(self.model, source, heads,
                                                          title="attention of the heads with the largest direct effect "
                                                                "on answer - argument: "
                                                                + ", ".join(f"L{l}H{h}" for l, h in heads)))
        pat = extras.get("patching")
        if pat is None:
            return
        if "skipped" in pat:
            report.add_text(f"activation patching skipped: {pat['skipped']}", note=True)
            return
        p = self.patched
        varied = "; ".join(f"position {i}: {' / '.join(t)}" for i, t in enumerate(pat["position_tokens"]) if len(t) > 1)
        report.add_figure(p.png, caption=f"{len(p.pairs)} pairs of capitals prompts (aligned token by token, "
                                         "different answers); e.g. " + p.pairs.clean.examples[0].prompt.splitlines()[-2]
                                         + (f". Tokens where the pairs differ: {varied}." if varied else ""))
        report.add_widget(circuits.patch_tokens(p.result, p.best,
                                                title=f"patching by position at layer {p.result.labels['layer'][p.best]} "
                                                      "(first pair's tokens)"))


def extras(model: Model, config: ReproduceConfig, out: Outputs, fig3: Fig3, layers: Layers) -> Extras:
    """The capitals source prompt (``layers``) through the renderers: DLA by position, the top
    heads over the capitals prompts the model answers (``fig3``), and activation patching."""
    source = layers.sources["capitals"]
    numbers: dict[str, Any] = {}
    tokens, values = dla_by_position(model, source)
    numbers["dla_by_position"] = {"prompt": source.prompt, "tokens": tokens, "values": [round(v, 4) for v in values]}
    data = fig3.tasks["capitals"]
    batch, correct = data.batch, data.correct
    idx = correct.nonzero().flatten()
    sub = batch.take(idx[:32]) if len(idx) else batch[0:32]
    heads = top_heads(model, sub, k=2, batch_size=config.batch_size)
    numbers["top_heads"] = [{"layer": l, "head": h, "mean_dla": round(v, 4)} for l, h, v in heads]
    patched = None
    if config.patching_pairs:
        numbers["patching"], patched = _patching(model, config, out)
    return Extras(numbers, source, patched, model)


def _patching(model, config: ReproduceConfig, out: Outputs) -> tuple[dict[str, Any], Patched | None]:
    from ...patching import activation_patch, pair_examples
    from ...viz.heatmap import heatmap

    try:
        pairs = pair_examples(model, build_prompts("capitals", n=max(40, 4 * config.patching_pairs)),
                              n=config.patching_pairs, seed=config.seed)
        pat = activation_patch(model, pairs, site="resid_pre", metric="recovery", progress=out.progress)
    except LensarithError as exc:
        return {"skipped": str(exc)}, None
    pat.save(out.results / "patching")
    tokens = _position_tokens(model, pairs)
    labels = _position_labels(tokens)
    png = out.png(heatmap(pat, col_labels=labels, title=f"activation patching over {len(pairs)} pairs of capitals prompts "
                                                        "(resid_pre, clean into corrupted): recovery of the logit "
                                                        "difference (0 = corrupted run, 1 = clean run; blank: |value| < "
                                                        "0.005). Axis: position and the token all pairs share there, or "
                                                        "how many different tokens the pairs have there (listed in the "
                                                        "report)"), "patching")
    best = int(pat.values.abs().amax(-1).argmax())
    numbers = {"pairs": len(pairs), "site": "resid_pre", "metric": "recovery",
               "values": [[round(float(x), 4) for x in row] for row in pat.values],
               "layers": pat.labels["layer"], "positions": pat.labels.get("pos"), "position_labels": labels,
               "position_tokens": tokens, "clean_mean": float(pat.clean.mean()), "corrupted_mean": float(pat.corrupted.mean())}
    return numbers, Patched(pat, pairs, best, png)


def _position_tokens(model, pairs) -> list[list[str]]:
    """Per position: the distinct tokens the pairs (clean and corrupted) have there, in order of appearance."""
    from ...viz.circuits import display_tokens

    rows = []
    for side in (pairs.clean, pairs.corrupted):
        for ids, n in zip(side.tokens.tolist(), side.lengths.tolist()):
            rows.append(display_tokens(model, ids[:n]))
    width = int(pairs.clean.tokens.shape[1])
    return [list(dict.fromkeys(r[p].replace("\n", "\\n").strip() or repr(r[p]) for r in rows if len(r) > p))
            for p in range(width)]


def _position_labels(tokens: list[list[str]]) -> list[str]:
    """Axis labels: ``position token`` where every pair has the same token, ``position (k tokens)`` where they differ."""
    return [f"{p} {t[0]}" if len(t) == 1 else f"{p} ({len(t)} tokens)" for p, t in enumerate(tokens)]
