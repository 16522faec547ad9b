"""The whole o-vector recipe for a task: ``transplant_experiment``, registered as ``"transplant"``.

Source prompt -> o-vector (at a given layer, or one found by ``find_layers``) ->
transplanted into random-token (or zero-shot) contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import LensarithError, check_choice, check_int
from ..core import check_layer, register_recipe
from ..tasks import build_prompts
from ._transplant import MODES, POSITIONS, TransplantResult, transplant, transplant_contexts
from ._ovector import extract_o_vector
from ._search import SearchConfig, find_layers, pick_source, task_batch
from .._types import Model

__all__ = ["TransplantConfig", "transplant_experiment"]


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class TransplantConfig:
    """The paper's transplant experiment for one task (``transplant_experiment``).

    Attributes:
        mode, positions, scale: as in ``transplant``.
        layer: the application layer o is taken from (None: ``find_layers``).
        layers: the MLP layers intervened on (None: the search's range for ``replace``
            when the layer was searched, else ``layer``..last; ``(layer,)`` for
            ``add``/``subtract``).
        source: index of the source prompt among the usable task prompts (None: the first
            one the model answers correctly).
        contexts: ``random`` (random-token contexts for the other arguments) or
            ``zero_shot`` prompts.
        n_contexts: how many contexts (None: all).
        seed: seeds contexts and the search.
    """

    mode: str = "replace"
    positions: str = "all"
    scale: float = 1.0
    layer: int | None = None
    layers: Sequence[int] | None = None
    source: int | str | None = None
    contexts: str = "random"
    n_contexts: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.mode, MODES, "TransplantConfig mode")
        check_choice(self.positions, POSITIONS, "TransplantConfig positions")
        check_choice(self.contexts, ("random", "zero_shot"), "TransplantConfig contexts")
        if self.layers is not None:
            if isinstance(self.layers, (int, str)) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                               for x in self.layers):
                raise LensarithError(f"TransplantConfig layers must be None or a sequence of ints, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(self.layers))
        check_int(self.n_contexts, "TransplantConfig n_contexts", minimum=1, allow_none=True)
        check_int(self.layer, "TransplantConfig layer", allow_none=True)
        check_int(self.seed, "TransplantConfig seed")
        if self.source is not None and not isinstance(self.source, str):
            check_int(self.source, "TransplantConfig source (an index or an argument such as ' Poland')")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale != self.scale \
                or abs(self.scale) == float("inf"):
            raise LensarithError(f"TransplantConfig scale must be a finite number, got {self.scale!r}")


@register_recipe("transplant")
def transplant_experiment(model: Model, prompts, config: TransplantConfig = TransplantConfig(), *,
                          search: SearchConfig | None = None, batch_size: int = 32,
                          progress: bool | None = None) -> TransplantResult:
    """The paper's o-vector experiment for a task: source prompt -> o -> random-token contexts.

    Args:
        model: a HookedTransformer with MLPs.
        prompts: a task name (``capitals``, ``uppercase``, ``past`` ...) or the task's
            ``Example`` prompts. Multi-token and unknown items are dropped (see ``meta``).
        config: a ``TransplantConfig`` (mode, layers, source, contexts ...).
        search: the ``SearchConfig`` used when ``config.layer`` is None.
        batch_size: contexts per forward.
        progress: show progress bars.

    Returns:
        A ``TransplantResult``; ``meta`` adds the source prompt, the chosen layers and, when
        searched, the search table.

    Example:
        >>> from lensarith.core import run_recipe
        >>> out = run_recipe("transplant", model, "capitals", config=TransplantConfig(layer=1, n_contexts=10))
        >>> out.meta["application_layer"], out.summary()["n"]
        (1, 10)
    """
    if not isinstance(config, TransplantConfig):
        raise LensarithError(f"config must be a lensarith.TransplantConfig, got {type(config).__name__} {config!r:.80}")
    if search is not None and not isinstance(search, SearchConfig):
        raise LensarithError(f"search must be None or a lensarith.SearchConfig, got {type(search).__name__} {search!r:.80}")
    check_int(batch_size, "batch_size", minimum=1)
    prompts_batch = task_batch(model, prompts, n=None, seed=config.seed, name="prompts")
    search_meta = None
    if config.layer is None:
        found = find_layers(model, prompts_batch, source=config.source, config=search or SearchConfig(seed=config.seed),
                            batch_size=max(1, batch_size // 4), progress=progress)
        layer = found.application_layer
        default_layers = found.layers if config.mode == "replace" else [layer]
        search_meta = {"application_layer": layer, "start_layer": found.start_layer, "table": found.table(),
                       "method": found.meta["method"]}
        source_prompt = found.meta["source"]
        src = next(i for i, e in enumerate(prompts_batch.examples) if e.prompt == source_prompt)
    else:
        layer = check_layer(model, config.layer, name="config.layer")
        default_layers = list(range(layer, model.cfg.n_layers)) if config.mode == "replace" else [layer]
        src, _ = pick_source(model, prompts_batch, config.source, batch_size)
    layers = list(config.layers) if config.layers is not None else default_layers
    source = prompts_batch.examples[src]
    o = extract_o_vector(model, [source], layer, reduce="mean")
    others = [e for i, e in enumerate(prompts_batch.examples) if i != src]
    if not others:
        raise LensarithError("prompts: need at least two usable task prompts (one source, one or more contexts)")
    if config.contexts == "random":
        ctx = transplant_contexts(others, n=config.n_contexts, seed=config.seed)
    else:
        if not isinstance(prompts, str):
            raise LensarithError("TransplantConfig contexts='zero_shot' needs a task name as prompts")
        keep = {e.argument for e in others}
        ctx = [e for e in build_prompts(prompts, format="zero_shot") if e.argument in keep][: config.n_contexts]
    out = transplant(model, o, ctx, layers=layers, mode=config.mode, positions=config.positions, scale=config.scale,
                     batch_size=batch_size, drop_multi_token=True, progress=progress)
    out.meta.update(recipe="transplant_experiment", task=prompts if isinstance(prompts, str) else source.task,
                    source=source.prompt, source_answer=source.answer, application_layer=layer,
                    config=config.__dict__, search=search_meta, task_report=prompts_batch.report)
    return out
