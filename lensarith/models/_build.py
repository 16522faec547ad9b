"""Building a model for a config: ``new_hooked_transformer`` (a ``HookedTransformer`` on
TransformerLens 3.x, a ``TransformerBridge`` over TransformerLens's native model on 4.x), used by
every source that builds weights itself (local folders, tiny models, the real models)."""

from __future__ import annotations

import os
import tempfile

from .._types import Model
from ._config import cfg_from_json, cfg_to_json
from ._quiet import quiet_deprecation as _quiet_deprecation
from ._tokenizer import TEMP_PREFIX
from ._version import tl_major

__all__ = ["new_hooked_transformer", "is_bridge"]


def _reload_path(tokenizer) -> str | None:
    """The folder TransformerLens would reload ``tokenizer`` from, if that folder is gone."""
    name = (getattr(tokenizer, "init_kwargs", None) or {}).get("name_or_path") or getattr(tokenizer, "name_or_path", "")
    name = str(name or "")
    return name if os.path.isabs(name) and not os.path.isdir(name) else None


def new_hooked_transformer(cfg, tokenizer=None):
    """A ``HookedTransformer`` for ``cfg`` with lensarith's conventions (right padding); on
    TransformerLens 4.x a ``TransformerBridge`` over TransformerLens's native model.

    Args:
        cfg: a ``HookedTransformerConfig`` (3.x) or ``TransformerBridgeConfig`` (4.x; e.g.
            from ``cfg_from_json``).
        tokenizer: optional tokenizer. TransformerLens reloads it by its ``name_or_path``; a
            tokenizer whose folder is gone (e.g. a ``tiny_model``'s) is saved to a temporary
            folder for the construction, and that folder is removed afterwards.

    Returns:
        The model (TransformerLens's initialisation, train mode).
    """
    if tl_major() >= 4:
        from ._tl4 import new_bridge

        if not type(cfg).__name__ == "TransformerBridgeConfig":
            cfg = cfg_from_json(cfg_to_json(cfg) if not isinstance(cfg, dict) else cfg)
        return new_bridge(cfg, tokenizer)
    with _quiet_deprecation():
        from transformer_lens import HookedTransformer

        if tokenizer is None:  # padding is a tokenizer's; TransformerLens warns when it is given without one
            return HookedTransformer(cfg)
        if _reload_path(tokenizer) is None:
            return HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
            tokenizer.save_pretrained(tmp)
            fresh = AutoTokenizer.from_pretrained(tmp)
            fresh.padding_side = tokenizer.padding_side
            return HookedTransformer(cfg, tokenizer=fresh, default_padding_side="right")


def is_bridge(model: Model) -> bool:
    return any(c.__name__ == "TransformerBridge" for c in type(model).__mro__)
