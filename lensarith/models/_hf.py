"""Local Hugging Face model folders (``save_pretrained`` output), on TransformerLens 3.x and 4.x.

- 3.x: TransformerLens's config conversion reads the folder's ``config.json`` (copied to a
  neutral temporary folder: TransformerLens picks some architectures by the *name*, e.g. any
  path containing "llama"), its weight conversion maps the Hugging Face model, and the
  weights load without processing (no LayerNorm folding, centring or value-bias folding), so
  activations are the Hugging Face model's own.
- 4.x: ``TransformerBridge.boot_transformers(folder, hf_model=...)`` wraps the same model.

Both run offline (huggingface_hub's offline switch is on for the call). ``default_prepend_bos``
is True exactly when the tokenizer has a BOS token, on both versions, so prompts tokenize alike.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ModelNotAvailableError
from ._tokenizer import load_tokenizer
from ._version import tl_major

__all__ = ["is_hf_directory", "load_hf_directory", "load_hf_split"]

#: Hugging Face architectures whose activation TransformerLens 4's config builder does not read
_ACT_FNS = {"BloomForCausalLM": "gelu_fast"}


def is_hf_directory(directory: Path) -> bool:
    """A folder written by ``save_pretrained`` (its config has ``model_type``, not ``d_model``)."""
    try:
        data = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data and "d_model" not in data


def load_hf_directory(directory: Path, device: str | None, *, build: Callable, offline: Callable,
                      quiet: Callable) -> Any:
    """The model in a Hugging Face folder as a HookedTransformer (3.x) or TransformerBridge (4.x).

    ``build(cfg, tokenizer)`` makes the empty 3.x model, ``offline()`` and ``quiet()`` are the
    loader's context managers for huggingface_hub's offline switch and TransformerLens 3's
    deprecation warnings (passed in: ``_load`` imports this module).
    """
    directory = Path(directory)
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    with offline():
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            hf = AutoModelForCausalLM.from_pretrained(str(directory), attn_implementation="eager")
        except Exception as exc:  # OSError, ValueError (unknown model type), SafetensorError
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotAvailableError(
                f"{str(directory)!r} is not a Hugging Face model folder transformers can load: {text}") from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        hf.eval()
        if tl_major() >= 4:
            model = _bridge(directory, hf, tokenizer, device)
        else:
            model = _hooked(directory, hf, tokenizer, device, build, quiet)
    model.cfg.model_name = Path(os.path.abspath(directory)).name
    model.cfg.default_prepend_bos = bool(tokenizer is not None and tokenizer.bos_token is not None)
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "right"
    model.eval()
    return model


def _boot(directory: Path, failure: str, errors: tuple[type[Exception], ...], **kwargs: Any):
    """``TransformerBridge.boot_transformers(directory, **kwargs)``; its errors become one
    ``ModelNotAvailableError`` starting with ``failure``, and the activation's name is TransformerLens's."""
    from transformer_lens.model_bridge import TransformerBridge

    try:
        model = TransformerBridge.boot_transformers(str(directory), **kwargs)
    except errors as exc:
        raise ModelNotAvailableError(
            f"{failure}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    arch = getattr(model.cfg, "architecture", None)
    if arch in _ACT_FNS:
        model.cfg.act_fn = _ACT_FNS[arch]
    return model


def _bridge(directory: Path, hf, tokenizer, device: str | None):
    return _boot(directory, f"TransformerLens 4 cannot wrap the {type(hf).__name__} in {str(directory)!r}",
                 (ValueError, KeyError, NotImplementedError), hf_model=hf, tokenizer=tokenizer, device=device or "cpu")


def _hooked(directory: Path, hf, tokenizer, device: str | None, build: Callable, quiet: Callable):
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict

    neutral = tempfile.mkdtemp(prefix="lensarith-hf-")
    try:
        shutil.copy(directory / "config.json", Path(neutral) / "config.json")
        try:
            with quiet():
                cfg = get_pretrained_model_config(neutral, fold_ln=False, device=device or "cpu")
                state = get_pretrained_state_dict(neutral, cfg, hf_model=hf)
        except (ValueError, KeyError, NotImplementedError, AttributeError) as exc:
            raise ModelNotAvailableError(
                f"TransformerLens 3 cannot convert the {type(hf).__name__} in {str(directory)!r}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    finally:
        shutil.rmtree(neutral, ignore_errors=True)
    model = build(cfg, tokenizer)
    try:
        with quiet():
            model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                              center_unembed=False, fold_value_biases=False,
                                              refactor_factored_attn_matrices=False)
    except RuntimeError as exc:
        raise ModelNotAvailableError(
            f"TransformerLens 3 converts the {type(hf).__name__} in {str(directory)!r} into another shape: "
            f"{str(exc).strip().splitlines()[-1].strip()}") from None
    return model


def load_hf_split(directory: Path, device_map, n_devices: int | None) -> Any:
    """A Hugging Face folder split over devices: TransformerLens 4's ``boot_transformers`` loads it
    itself with ``device_map`` / ``n_devices`` (it refuses both next to a pre-loaded ``hf_model``)."""
    if tl_major() < 4:
        from .._errors import LensarithError

        raise LensarithError("splitting a Hugging Face folder over devices needs TransformerLens 4 (device_map / "
                             "n_devices on TransformerBridge.boot_transformers) or backend='nnsight'")
    directory = Path(directory)
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    model = _boot(directory, f"TransformerLens 4 cannot split {str(directory)!r} over devices",
                  (ValueError, KeyError, NotImplementedError, RuntimeError), tokenizer=tokenizer,
                  device_map=device_map, n_devices=n_devices)
    model.cfg.model_name = Path(os.path.abspath(directory)).name
    model.cfg.default_prepend_bos = bool(tokenizer is not None and tokenizer.bos_token is not None)
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "right"
    return model.eval()
