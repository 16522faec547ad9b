"""``save_model``: a model in lensarith's local format (read back by ``lensarith.models._local``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._errors import LensarithError, ModelNotAvailableError
from .._io import atomic_directory, check_replaceable
from .._types import Model
from ._build import is_bridge
from ._config import cfg_to_json

__all__ = ["save_model"]


def save_model(model: Model, path: str | os.PathLike[str], *, extra: dict | None = None) -> Path:
    """Save a HookedTransformer in lensarith's local format, atomically.

    On TransformerLens 4.x a bridge over TransformerLens's native model is written in the same
    format (its weights converted to ``HookedTransformer`` names and shapes), so the directory
    loads under 3.x too; a bridge over a Hugging Face model is refused (save that model with
    ``model.original_model.save_pretrained``; ``load_model`` reads such a directory).

    Args:
        model: the model; its tokenizer (if any) is saved beside the weights.
        path: the target directory; replaced as a whole once everything is written.
        extra: JSON-serialisable metadata stored in ``lensarith.json``.

    Returns:
        The directory written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    check_replaceable(path, _saved_model_file, "a model", error=LensarithError)
    if is_bridge(model):
        from ._tl4 import is_native, tl3_state_dict

        if not is_native(model):
            raise ModelNotAvailableError(
                f"save_model writes lensarith's format (a HookedTransformer state dict); this TransformerBridge wraps "
                f"a Hugging Face {getattr(model.cfg, 'architecture', None) or 'model'}: save it with "
                "model.original_model.save_pretrained(folder) (and model.tokenizer.save_pretrained(folder)), which "
                "load_model reads back on TransformerLens 3.9 and 4.x")
        source = tl3_state_dict(model)
    else:
        source = model.state_dict()
    with atomic_directory(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(cfg_to_json(model.cfg), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in source.items()}
        save_file(state, str(tmp / "model.safetensors"))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            (tmp / "lensarith.json").write_text(json.dumps(extra, indent=2))
    return path


def _saved_model_file(name: str) -> bool:
    """A file ``save_model`` (its tokenizer) or the organism's card writer puts in a model folder."""
    return (name in ("config.json", "model.safetensors", "lensarith.json", "card.md", "table.json", "attempts.md",
                     "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")
            or name.startswith(("tokenizer", "vocab.")))
