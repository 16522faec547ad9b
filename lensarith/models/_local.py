"""Models from a folder: lensarith's local format, a Hugging Face ``save_pretrained`` folder, and the
bundled models (lensarith folders under ``data/``).

lensarith's local format is a directory holding

- ``config.json``: the ``HookedTransformerConfig`` fields (dtype as a string),
- ``model.safetensors``: the ``HookedTransformer`` state dict,
- ``tokenizer.json`` (+ the files ``PreTrainedTokenizerFast.save_pretrained`` writes).

Every problem with a folder's files is a ``ModelNotAvailableError`` naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from pathlib import Path
from typing import Any

from .._errors import ModelNotAvailableError
from .._paths import data_dir
from ._build import is_bridge, new_hooked_transformer
from ._config import TL3_FIELDS, cfg_from_json
from ._quiet import hub_offline
from ._quiet import quiet_deprecation as _quiet_deprecation
from ._tokenizer import load_tokenizer
from ._version import tl_major, tl_version

__all__ = ["load_local", "load_bundled", "first_line"]

_NORMS = (None, "LN", "LNPre", "RMS", "RMSPre")

_POSITIONS = ("standard", "rotary", "shortformer", "alibi", "relative_positional_bias")

_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _is_word_level(tokenizer) -> bool:
    """lensarith's word-level tokenizer (tiny models, the organism): its vocabulary is the model's, exactly."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(getattr(backend, "model", None)).__name__ == "WordLevel"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON) fits the annotation ``hint``; unknown annotations pass."""
    if hint is typing.Any:
        return True
    if typing.get_origin(hint) is typing.Union:
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) in (list, typing.List):  # noqa: UP006
        return isinstance(value, list)
    return True


def _check_config(data: dict[str, Any], path: Path) -> None:
    """Raise ``ModelNotAvailableError`` naming ``path`` and the field for a config TransformerLens
    would reject, or would build into something else (an unknown norm builds no final norm)."""
    if tl_major() >= 4:
        from transformer_lens.config.transformer_lens_config import TransformerLensConfig as HookedTransformerConfig
    else:
        from transformer_lens import HookedTransformerConfig

    def bad(field: str, valid: str) -> ModelNotAvailableError:
        return ModelNotAvailableError(
            f"{str(path)!r}: {field} is {data[field]!r} ({type(data[field]).__name__}), but it must be {valid}; "
            "fix the file or rewrite the directory with lensarith.save_model")

    fields = {f.name: f for f in dataclasses.fields(HookedTransformerConfig) if f.init and f.name in TL3_FIELDS}
    missing = [name for name in ("d_model", "d_head", "n_layers", "n_ctx") if name not in data]
    if missing:
        raise ModelNotAvailableError(
            f"{str(path)!r} lacks {', '.join(missing)}: a lensarith config needs every field "
            "HookedTransformerConfig requires; rewrite the directory with lensarith.save_model")
    for name in ("n_layers", "d_model", "d_head", "n_ctx"):
        if not _type_ok(data[name], int) or data[name] < 1:
            raise bad(name, "a positive int")
    for name in ("n_heads", "d_vocab", "d_vocab_out"):
        if name in data and (not _type_ok(data[name], int) or (data[name] < 1 and data[name] != -1)):
            raise bad(name, "a positive int (or -1 for 'derive it')")
    if data.get("d_mlp") is not None and (not _type_ok(data["d_mlp"], int) or data["d_mlp"] < 1):
        raise bad("d_mlp", "a positive int or null")
    if "normalization_type" in data and data["normalization_type"] not in _NORMS:
        raise bad("normalization_type", "one of " + ", ".join(repr(v) if v else "null" for v in _NORMS))
    if "positional_embedding_type" in data and data["positional_embedding_type"] not in _POSITIONS:
        raise bad("positional_embedding_type", "one of " + ", ".join(map(repr, _POSITIONS)))
    if data.get("seed") is not None and _type_ok(data["seed"], int) and abs(data["seed"]) > 2 ** 62:
        raise bad("seed", "an int in -2**62..2**62 (torch's generators take no larger seed)")
    if "dtype" in data and data["dtype"] not in _DTYPES:
        raise bad("dtype", "one of " + ", ".join(map(repr, _DTYPES)))
    if not data.get("attn_only", False):
        from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

        if "act_fn" in data and data["act_fn"] not in SUPPORTED_ACTIVATIONS:
            raise bad("act_fn", "one of " + ", ".join(map(repr, SUPPORTED_ACTIVATIONS)))
    try:
        hints = typing.get_type_hints(HookedTransformerConfig)
    except Exception:  # pragma: no cover - an annotation TransformerLens cannot resolve itself
        hints = {}
    for name, value in data.items():
        if name in fields and name != "dtype" and name in hints and not _type_ok(value, hints[name]):
            hint = getattr(hints[name], "__name__", None) or str(hints[name]).replace("typing.", "")
            raise bad(name, f"of type {hint}")


def _read_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``config.json``, checked; errors name the file and what is wrong."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ModelNotAvailableError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelNotAvailableError(f"{str(path)!r} is not UTF-8 text (corrupted?): rewrite the directory "
                                     "with lensarith.save_model") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelNotAvailableError(
            f"{str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); it is "
            "truncated or corrupted: rewrite the directory with lensarith.save_model") from None
    if not isinstance(data, dict):
        raise ModelNotAvailableError(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object of "
                                     "HookedTransformerConfig fields: rewrite the directory with lensarith.save_model")
    _check_config(data, path)
    return data


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _read_weights(path: Path, device: str, model, cfg_path: Path) -> dict:
    """The tensors in ``model.safetensors``, checked against ``model``'s state dict (in 3.x
    ``HookedTransformer`` names: a 4.x bridge's converted). Buffers the file lacks (the causal
    mask and rotary tables, which 4.x does not write) are taken from the freshly built model;
    buffers a 3.x file has are not needed on 4.x."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=device)
    except Exception as exc:  # SafetensorError (truncated header, bad offsets), OSError
        raise ModelNotAvailableError(
            f"{str(path)!r} cannot be read ({first_line(exc)}): it is truncated or corrupted; rewrite the "
            "directory with lensarith.save_model") from None
    if is_bridge(model):
        from ._tl4 import tl3_state_dict

        expected = tl3_state_dict(model)
        state = {k: v for k, v in state.items() if not k.endswith((".mask", ".IGNORE", ".rotary_sin", ".rotary_cos"))}
    else:
        expected = model.state_dict()
        for name, buffer in model.named_buffers():
            if name not in state and name in expected:
                state[name] = buffer.detach().clone()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} tensor(s) have another shape than {cfg_path.name} implies "
                        f"({_examples(shapes)}; {k!r} is {tuple(state[k].shape)} in the file, "
                        f"{tuple(expected[k].shape)} for the config)")
    if missing:
        problems.append(f"{len(missing)} tensor(s) the config needs are missing ({_examples(missing)})")
    if extra:
        problems.append(f"{len(extra)} tensor(s) have no place in the model ({_examples(extra)})")
    if problems:
        raise ModelNotAvailableError(
            f"{str(path)!r} does not fit {str(cfg_path)!r}: " + "; ".join(problems)
            + ". The weights and the config come from different models: save them together with "
            "lensarith.save_model")
    return state


def load_local(directory: Path, device: str | None):
    """A model in lensarith's format (or a Hugging Face ``save_pretrained`` folder); every problem
    with its files is a ``ModelNotAvailableError``."""
    import torch

    from ._hf import is_hf_directory, load_hf_directory

    if is_hf_directory(directory):
        return load_hf_directory(directory, device, build=new_hooked_transformer, offline=hub_offline,
                                 quiet=_quiet_deprecation)

    cfg_path = directory / "config.json"
    weights = directory / "model.safetensors"
    lacking = [p.name for p in (cfg_path, weights) if not p.is_file()]
    if lacking:
        raise ModelNotAvailableError(
            f"model directory {str(directory)!r} is not in lensarith's format: it needs "
            f"config.json and model.safetensors and lacks {' and '.join(lacking)} "
            "(write one with lensarith.save_model)"
        )
    data = _read_config(cfg_path)
    try:
        cfg = cfg_from_json(data)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError) as exc:
        raise ModelNotAvailableError(
            f"{str(cfg_path)!r} is not a config TransformerLens accepts: {first_line(exc)}") from None
    if device is not None:
        cfg.device = device
    if getattr(cfg, "model_name", "custom") in ("custom", "", None):
        cfg.model_name = Path(os.path.abspath(directory)).name  # provenance records the folder, not 'custom'
    if not (directory / "tokenizer.json").is_file() and (directory / "tokenizer_config.json").is_file():
        raise ModelNotAvailableError(
            f"model directory {str(directory)!r} has tokenizer_config.json but no tokenizer.json: the tokenizer is "
            "incomplete; copy tokenizer.json back or rewrite the directory with lensarith.save_model")
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    if tokenizer is not None and cfg.d_vocab > 0 and (len(tokenizer) > cfg.d_vocab or (
            len(tokenizer) != cfg.d_vocab and _is_word_level(tokenizer))):
        raise ModelNotAvailableError(
            f"the tokenizer in {str(directory)!r} has {len(tokenizer)} tokens but {str(cfg_path)!r} says "
            f"d_vocab={cfg.d_vocab}: they come from different models; save them together with lensarith.save_model")
    if tl_major() >= 4:
        from ._tl4 import native_problems

        problems = native_problems(data)
        if problems:
            raise ModelNotAvailableError(
                f"{str(cfg_path)!r} describes a model TransformerLens {tl_version()}'s native TransformerBridge does "
                f"not compute like TransformerLens 3.9's HookedTransformer that wrote it ({'; '.join(problems)}): "
                "load it with TransformerLens 3.9 (`make setup` installs it), or save the model in Hugging Face "
                "format and load that folder")
    try:
        model = new_hooked_transformer(cfg, tokenizer)
    except torch.cuda.OutOfMemoryError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError, IndexError) as exc:
        raise ModelNotAvailableError(
            f"TransformerLens cannot build the model {str(cfg_path)!r} describes: {first_line(exc)}") from None
    state = _read_weights(weights, str(cfg.device), model, cfg_path)
    if is_bridge(model):
        from ._tl4 import load_tl3_state

        load_tl3_state(model, state, where=repr(str(weights)))
        if getattr(cfg, "model_name", None):
            model.cfg.model_name = cfg.model_name
        model.eval()
        return model
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - _read_weights checks keys and shapes first
        raise ModelNotAvailableError(f"{str(weights)!r} does not fit {str(cfg_path)!r}: {first_line(exc)}") from None
    model.eval()
    return model


def load_bundled(name: str, device: str | None):
    """A bundled model (``BUNDLED_MODELS``: ``data/<name>``), or a ``ModelNotAvailableError`` saying how to make it."""
    directory = data_dir() / name
    if not (directory / "model.safetensors").is_file():
        how = "`lensarith organism-train`" if name == "organism" else "`python -m lensarith.organism.train --planted`"
        raise ModelNotAvailableError(
            f"the {name} is not bundled in {str(directory)!r}: train it with "
            f"{how} or point $LENSARITH_DATA at a data folder holding it"
        )
    return load_local(directory, device)
