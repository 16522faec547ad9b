"""The sizes and conventions of a reproduction run (``ReproduceConfig``) and the test for the paper's model.

A leaf of ``lensarith.paper``: the figures' steps (``lensarith.paper.steps``) and the driver
(``lensarith.paper.reproduce``) import it; it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import LensarithError
from .._types import Model
from .stats import N_RESAMPLES

__all__ = ["ReproduceConfig", "TASKS", "is_gpt2_medium"]

#: the three tasks of Figs 3 and 5 (one o-vector each)
TASKS = ("capitals", "uppercase", "past")


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of a reproduction run.

    Attributes:
        n: prompts per task (Fig 3, Fig 7) and contexts per set (Fig 5); None: all.
        n_search: task prompts and contexts for the layer search (models other than GPT2-Medium).
        seed: seeds context sampling, the search, the random vectors and the bootstraps.
        batch_size: prompts per forward.
        patching_pairs: prompt pairs for the activation-patching extra (0: skip it).
        small: a CI-sized run (recorded in the summary).
        prepend_bos: None: the paper's tokenization for hub models (``tokenizer.encode``, no
            BOS token) and the model's own default for lensarith-trained models (the organism
            was trained with a BOS token); True / False: force it (True is TransformerLens's
            default for GPT-2). Recorded in ``summary["tokenization"]``.
        n_random: random vectors of o's norm in Fig 5's random baseline (averaged per context).
        n_boot: bootstrap resamples per interval.
    """

    n: int | None = 200
    n_search: int = 48
    seed: int = 0
    batch_size: int = 32
    patching_pairs: int = 8
    small: bool = False
    prepend_bos: bool | None = None
    n_random: int = 5
    n_boot: int = N_RESAMPLES

    def __post_init__(self) -> None:
        if self.n is not None and (not isinstance(self.n, int) or self.n < 2):
            raise LensarithError(f"n must be None or an int >= 2 (prompts per task), got {self.n!r}")
        if not isinstance(self.n_search, int) or self.n_search < 2:
            raise LensarithError(f"n_search must be an int >= 2, got {self.n_search!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise LensarithError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.patching_pairs, int) or self.patching_pairs < 0:
            raise LensarithError(f"patching_pairs must be an int >= 0, got {self.patching_pairs!r}")
        if self.prepend_bos is not None and not isinstance(self.prepend_bos, bool):
            raise LensarithError(f"prepend_bos must be None (automatic), True or False, got {self.prepend_bos!r}")
        for name in ("n_random", "n_boot"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LensarithError(f"{name} must be a positive int, got {value!r}")

    @classmethod
    def small_run(cls, **overrides: Any) -> ReproduceConfig:
        """A quick run (CI, notebooks): 16 prompts per task, 12 for the search."""
        return cls(**{"n": 16, "n_search": 12, "patching_pairs": 4, "small": True, **overrides})


def is_gpt2_medium(model: Model) -> bool:
    """True for GPT2-Medium (the paper's model: its layers are used as published): its shape
    (24 layers, d_model 1024, GPT-2's vocabulary) and either its name or GPT-2's architecture. A
    local folder named ``gpt2-medium`` holding another model is not taken for it."""
    cfg = model.cfg
    shape = cfg.n_layers == 24 and cfg.d_model == 1024 and cfg.d_vocab == 50257
    named = getattr(cfg, "model_name", "") == "gpt2-medium"
    return shape and (named or "gpt2" in str(getattr(cfg, "original_architecture", "")).lower())
