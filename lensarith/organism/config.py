"""What determines an organism training run: ``TrainConfig``, the planted mechanism's ``PlantedSpec``,
the corpus mixes of the shipped models and the ``PRESETS`` that reproduce them.

Pure configuration (frozen dataclasses); the loop that runs a config is ``lensarith.organism.train``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .corpus import CorpusMix

__all__ = ["TrainConfig", "PlantedSpec", "PRESETS", "RECALL_MIX", "BIND_MIX"]


@dataclass(frozen=True)
class PlantedSpec:
    """The planted mechanism and the auxiliary objectives that impose it.

    Attributes:
        layer: the planted MLP P. At the last position of a relation prompt its output o_r
            depends on the relation r (capital / uppercase / past) and not on the argument.
        arg_from: the argument is trained to be top-1 in the logit lens at the last position
            at resid_pre and resid_mid of layers ``arg_from..layer``.
        n_prompts: relation prompts per step (drawn as pairs of one set, different arguments).
        n_contexts: random-token contexts per step (in-domain arguments only).
        n_extractive: extractive prompts per step.
        weight: multiplies the mean of the auxiliary losses (the LM loss has weight 1).
        dla_weight, dla_from_step: from step ``dla_from_step`` on, add ``dla_weight`` times the
            positive direct logit attribution (frozen final-LN scale) of every MLP but P to
            (answer - argument) at the last position of the clean prompts (0: never).
    """

    layer: int = 5
    arg_from: int = 4
    n_prompts: int = 32
    n_contexts: int = 32
    n_extractive: int = 16
    weight: float = 1.0
    dla_weight: float = 0.0
    dla_from_step: int = 0

    def dla_active(self, step: int) -> bool:
        return self.dla_weight > 0 and step >= self.dla_from_step


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        seed: seeds the initialisation and the corpus stream.
        n_tokens: training tokens (rows x n_ctx).
        n_layers, d_model, n_heads, d_mlp, n_ctx: the GPT-2-style architecture.
        batch_size: rows per step.
        lr, min_lr_frac, warmup_steps, decay_frac, weight_decay, grad_clip: AdamW; the
            learning rate warms up, stays constant, then falls linearly to ``lr * min_lr_frac``
            over the last ``decay_frac`` of the steps (so a run can be extended from the
            ``stable.pt`` checkpoint written where the decay starts).
        early_tokens: tokens of the copy-heavy curriculum at the start.
        threads: torch threads (1 keeps a shared 2-core machine usable).
        eval_every: steps between quick copy/ICL checks (0: never).
        checkpoint_every: steps between checkpoints in ``checkpoint_dir`` (0: never).
        mix: the corpus's token shares.
        late_mix, late_from_tokens: another mix used from ``late_from_tokens`` on (None: never).
        mix_changes: further ``(from_tokens, mix)`` switches after ``late_mix``, in token order.
        init_from: start from this model's weights (a name for ``lensarith.load_model``, e.g.
            ``"organism"``, or a model folder) instead of a fresh initialisation.
        planted: add the planted mechanism's auxiliary objectives (``PlantedSpec``).
    """

    seed: int = 0
    n_tokens: int = 6_500_000
    n_layers: int = 8
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_frac: float = 0.02
    warmup_steps: int = 200
    decay_frac: float = 0.2
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    early_tokens: int = 1_000_000
    threads: int = 1
    eval_every: int = 250
    checkpoint_every: int = 500
    mix: CorpusMix = field(default_factory=CorpusMix)
    late_mix: CorpusMix | None = None
    late_from_tokens: int = 0
    mix_changes: tuple[tuple[int, CorpusMix], ...] = ()
    init_from: str | None = None
    planted: PlantedSpec | None = None

    def __post_init__(self):
        for name in ("n_tokens", "n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must lie in (0, 1), got {self.lr!r}")

    @property
    def n_steps(self) -> int:
        return max(1, self.n_tokens // (self.batch_size * self.n_ctx))

    def mix_at(self, tokens: int) -> CorpusMix:
        """The mix of the step that starts after ``tokens`` training tokens."""
        mix = self.late_mix if self.late_mix is not None and tokens >= self.late_from_tokens else self.mix
        for start, later in self.mix_changes:
            if tokens >= start:
                mix = later
        return mix

    def _switches(self) -> list[int]:
        return ([self.late_from_tokens] if self.late_mix is not None else []) + [t for t, _ in self.mix_changes]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        """The config of ``to_json`` output (fields added since it was written take their defaults)."""
        mix = lambda d: CorpusMix(**d) if d else None  # noqa: E731
        return cls(**{**data, "mix": mix(data.get("mix")) or CorpusMix(), "late_mix": mix(data.get("late_mix")),
                      "mix_changes": tuple((int(t), mix(m)) for t, m in data.get("mix_changes", ())),
                      "planted": PlantedSpec(**data["planted"]) if data.get("planted") else None})


# The shipped model: the first 5,193,728 tokens (run r2's constant-learning-rate phase) on the
# default mix, then a mix with associative-recall documents, then BIND_MIX.
RECALL_MIX = CorpusMix(copy=0.12, demos=0.14, qa=0.18, cue=0.08, prose=0.08, extractive=0.06, recall=0.34,
                       colour_share=0.3, counterfactual=0.6)

# From 7,675,904 tokens (run r4's constant-learning-rate phase) on, binding scenes and object-identity
# documents are added: colour-scene binding appears (see data/organism/attempts.md).
BIND_MIX = dataclasses.replace(RECALL_MIX, bind=0.6, bind_simple=0.6, objects=0.6)

PRESETS: dict[str, TrainConfig] = {
    "full": TrainConfig(n_tokens=13_500_000, late_mix=RECALL_MIX, late_from_tokens=5_193_728,
                        mix_changes=((7_675_904, BIND_MIX),), eval_every=100, checkpoint_every=100),
    "r4": TrainConfig(n_tokens=9_600_000, late_mix=RECALL_MIX, late_from_tokens=5_193_728,
                      eval_every=100, checkpoint_every=100),  # the model shipped before, without binding documents
    "r2": TrainConfig(),  # the model shipped before r4: 6.5M tokens on the default mix
    # The planted organism (data/organism-planted): the shipped organism fine-tuned on its last mix
    # plus the planted mechanism's objectives (PlantedSpec).
    "planted": TrainConfig(n_tokens=1_024_000, batch_size=16, lr=1e-3, warmup_steps=30, early_tokens=0,
                           mix=BIND_MIX, init_from="organism", planted=PlantedSpec(dla_weight=1.0, dla_from_step=300), eval_every=25,
                           checkpoint_every=25),
    "smoke": TrainConfig(n_tokens=48_000, n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=128,
                         batch_size=8, lr=5e-3, warmup_steps=5, early_tokens=16_000, eval_every=0,
                         checkpoint_every=0),
}
