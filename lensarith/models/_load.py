"""Loading and saving models: hub names, lensarith's local format, the bundled organism.

lensarith's local format is a directory holding

- ``config.json``: the ``HookedTransformerConfig`` fields (dtype as a string),
- ``model.safetensors``: the ``HookedTransformer`` state dict,
- ``tokenizer.json`` (+ the files ``PreTrainedTokenizerFast.save_pretrained`` writes).

TransformerLens is imported on first use, so ``import lensarith`` stays light.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._errors import ModelNotAvailableError
from .._io import atomic_directory
from .._paths import data_dir
from ._config import cfg_from_json, cfg_to_json
from ._tokenizer import load_tokenizer

__all__ = ["load_model", "save_model", "new_hooked_transformer"]

_HUB_HOST = ("huggingface.co", 443)


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """TransformerLens 3.9 warns that ``HookedTransformer`` and ``transformer_lens.utils``
    are deprecated; lensarith knows (its backends cover 4.x), so users are not told again."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        warnings.filterwarnings("ignore", message=".*transformer_lens.utils.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*'utils' module has been deprecated.*")
        yield


def new_hooked_transformer(cfg, tokenizer=None):
    """A ``HookedTransformer`` for ``cfg`` with lensarith's conventions (right padding)."""
    with _quiet_deprecation():
        from transformer_lens import HookedTransformer

        return HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right")


def save_model(model, path: str | os.PathLike[str], *, extra: dict | None = None) -> Path:
    """Save a HookedTransformer in lensarith's local format, atomically.

    Args:
        model: the model; its tokenizer (if any) is saved beside the weights.
        path: the target directory; replaced as a whole once everything is written.
        extra: JSON-serialisable metadata stored in ``lensarith.json``.

    Returns:
        The directory written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_directory(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(cfg_to_json(model.cfg), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            (tmp / "lensarith.json").write_text(json.dumps(extra, indent=2))
    return path


def _load_local(directory: Path, device: str | None):
    cfg_path = directory / "config.json"
    weights = directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise ModelNotAvailableError(
            f"model directory {str(directory)!r} is not in lensarith's format: it needs "
            "config.json and model.safetensors (write one with lensarith.save_model)"
        )
    cfg = cfg_from_json(json.loads(cfg_path.read_text()))
    if device is not None:
        cfg.device = device
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    from safetensors.torch import load_file

    model = new_hooked_transformer(cfg, tokenizer)
    model.load_state_dict(load_file(str(weights), device=str(cfg.device)), strict=True)
    model.eval()
    return model


def _hub_cached(official: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    hit = try_to_load_from_cache(official, "config.json")
    return isinstance(hit, str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str, device: str | None, **kwargs: Any):
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise ModelNotAvailableError(
            f"model {name!r} is neither a local directory, 'organism', nor a TransformerLens "
            "hub name (e.g. 'gpt2', 'gpt2-medium', 'EleutherAI/gpt-j-6b')"
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    cached = _hub_cached(official)
    if not cached and (offline or not _hub_reachable()):
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise ModelNotAvailableError(
            f"cannot load {name!r}: it is not in the local Hugging Face cache and {why}. "
            "Use load_model('organism') for the bundled model, a directory written by "
            "lensarith.save_model, or download the model on a machine with network first."
        )
    if cached and not _hub_reachable():
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    with _quiet_deprecation():
        from transformer_lens import HookedTransformer

        return HookedTransformer.from_pretrained(name, device=device, **kwargs)


def load_model(name_or_path: str | os.PathLike[str], *, device: str | None = None, **kwargs: Any):
    """Load a HookedTransformer by hub name, local directory, or ``"organism"``.

    Args:
        name_or_path: ``"organism"`` (the small trained model in ``data/organism``), a
            directory in lensarith's format, or a TransformerLens hub name such as
            ``"gpt2-medium"``. Without network a hub name fails within seconds.
        device: e.g. ``"cpu"`` or ``"cuda"``; defaults to TransformerLens's choice.
        **kwargs: passed to ``HookedTransformer.from_pretrained`` for hub names.

    Returns:
        The model in eval mode, tokenizer attached, right padding.

    Example:
        >>> model = load_model("organism")
        >>> model.cfg.n_layers, model.to_str_tokens(" Poland", prepend_bos=False)
        (8, ['Poland'])
    """
    if isinstance(name_or_path, str) and name_or_path == "organism":
        directory = data_dir() / "organism"
        if not (directory / "model.safetensors").is_file():
            raise ModelNotAvailableError(
                f"the organism is not bundled in {str(directory)!r}: train it with "
                "`lensarith organism-train` or point $LENSARITH_DATA at a data folder holding it"
            )
        return _load_local(directory, device)
    path = Path(name_or_path)
    if path.is_dir():
        return _load_local(path, device)
    if not isinstance(name_or_path, str) or path.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise ModelNotAvailableError(
            f"model directory {str(name_or_path)!r} does not exist or is not a directory"
        )
    return _load_hub(str(name_or_path), device, **kwargs)
