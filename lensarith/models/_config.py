"""Model configs as JSON, and the architecture hash recorded in every result's provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

__all__ = ["cfg_to_json", "cfg_from_json", "config_hash"]

_SKIPPED = ("device", "tokenizer_prepends_bos", "n_devices")
_HASHED = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
           "normalization_type", "positional_embedding_type")


def cfg_to_json(cfg) -> dict[str, Any]:
    """The init fields of a ``HookedTransformerConfig`` as JSON values (dtype as a string)."""
    import torch

    out: dict[str, Any] = {}
    for f in dataclasses.fields(type(cfg)):
        if not f.init or f.name in _SKIPPED:
            continue
        value = getattr(cfg, f.name)
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[f.name] = value
    return out


def cfg_from_json(data: dict[str, Any]):
    """A ``HookedTransformerConfig`` from ``cfg_to_json``'s output (unknown keys ignored)."""
    import torch
    from transformer_lens import HookedTransformerConfig

    data = dict(data)
    if isinstance(data.get("dtype"), str):
        data["dtype"] = getattr(torch, data["dtype"])
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return HookedTransformerConfig(**{k: v for k, v in data.items() if k in known})


def config_hash(model) -> str:
    """A short hash of the architecture (layers, widths, vocabulary), for provenance checks."""
    cfg = model.cfg
    text = json.dumps({k: getattr(cfg, k) for k in _HASHED}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
