"""Loading and saving models: hub names, lensarith's local format, the bundled organism.

lensarith's local format is a directory holding

- ``config.json``: the ``HookedTransformerConfig`` fields (dtype as a string),
- ``model.safetensors``: the ``HookedTransformer`` state dict,
- ``tokenizer.json`` (+ the files ``PreTrainedTokenizerFast.save_pretrained`` writes).

Hub names never wait on the network: one HTTP(S) request to the hub's API (through the
proxies in the environment, about 1.5 s at most) decides whether the hub is reachable; when
it is not, a model in the local Hugging Face cache loads with offline mode switched on for
the duration of the call only, and anything else fails with ``ModelNotAvailableError``.

TransformerLens is imported on first use, so ``import lensarith`` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import typing
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .._errors import LensarithError, ModelNotAvailableError
from .._io import atomic_directory, check_replaceable
from .._paths import BUNDLED_MODELS, data_dir
from ._config import TL3_FIELDS, cfg_from_json, cfg_to_json
from ._pypi import BY_OFFICIAL, REAL_MODELS, RealModel, ensure_converted, load_real, real_model_spec, torch_dtype
from ._quiet import hub_offline, quiet_hf
from ._quiet import quiet_deprecation as _quiet_deprecation
from ._rng import keeps_global_rng
from ._tokenizer import TEMP_PREFIX, load_tokenizer
from ._version import tl_major, tl_version

__all__ = ["load_model", "save_model", "new_hooked_transformer"]

#: Seconds the reachability probe may take in all (connect, proxy, TLS, answer).
PROBE_TIMEOUT = 1.5
_PROBE_MAX_BYTES = 1 << 20
_TRUE = ("1", "on", "true", "yes")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_NORMS = (None, "LN", "LNPre", "RMS", "RMSPre")
_POSITIONS = ("standard", "rotary", "shortformer", "alibi", "relative_positional_bias")
_DTYPES = ("float32", "float16", "bfloat16", "float64")
_WHAT_TO_DO = ("Use load_model('organism') for the bundled model, a real model shipped on PyPI ("
               + ", ".join(map(repr, REAL_MODELS)) + "), a directory written by lensarith.save_model, "
               "or download the model where the hub can be reached first (then HF_HUB_OFFLINE=1 loads it "
               "from the complete cache).")


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


def save_model(model, path: str | os.PathLike[str], *, extra: dict | None = None) -> Path:
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
    if _is_bridge(model):
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


# --------------------------------------------------------------------------- arguments


def _is_word_level(tokenizer) -> bool:
    """lensarith's word-level tokenizer (tiny models, the organism): its vocabulary is the model's, exactly."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(getattr(backend, "model", None)).__name__ == "WordLevel"


def _is_bridge(model) -> bool:
    return any(c.__name__ == "TransformerBridge" for c in type(model).__mro__)


def _check_device(device: Any) -> str | None:
    """``device`` as a string TransformerLens accepts, or a ``LensarithError`` saying what is valid."""
    if device is None:
        return None
    import torch

    valid = "None, a str such as 'cpu', 'cuda' or 'cuda:1', or a torch.device"
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, str):
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise LensarithError(f"device must be {valid}; got {device!r}, which torch does not know") from None
    else:
        raise LensarithError(f"device must be {valid}; got {device!r} ({type(device).__name__})")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LensarithError(f"device={device!r} but CUDA is not available on this machine; use device='cpu'")
        if parsed.index is not None and parsed.index >= count:
            raise LensarithError(f"device={device!r} but this machine has {count} CUDA device(s) "
                                 f"(cuda:0 to cuda:{count - 1})")
    elif parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LensarithError(f"device={device!r} but MPS is not available on this machine; use device='cpu'")
    elif parsed.type == "meta":
        raise LensarithError(f"device={device!r} holds shapes, not weights: a model there cannot run; use device='cpu' "
                             "or a GPU ('cuda')")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        backend = getattr(torch, parsed.type, None)
        available = getattr(backend, "is_available", None)
        if not (callable(available) and available()):
            raise LensarithError(f"device={device!r} but this torch build or machine has no {parsed.type} device; "
                                 "use device='cpu' (or 'cuda' where there is a GPU)")
    return str(parsed)


def _check_placement(backend: Any, device: str | None, device_map: Any, n_devices: Any, remote: Any) -> None:
    """``backend``, ``device_map``, ``n_devices`` and ``remote`` fit together, or a ``LensarithError``."""
    if backend not in (None, "nnsight"):
        raise LensarithError(f"backend must be None (TransformerLens) or 'nnsight', got {backend!r}")
    if not isinstance(remote, bool):
        raise LensarithError(f"remote must be True or False, got {remote!r}")
    if remote and backend != "nnsight":
        raise LensarithError("remote=True runs the model on NDIF through nnsight: pass backend='nnsight'")
    if device_map is not None and not isinstance(device_map, (str, dict)):
        raise LensarithError(f"device_map must be None, a str such as 'auto' or a dict, got {device_map!r}")
    if device_map is not None and device is not None:
        raise LensarithError("give device or device_map, not both (device_map places every module itself)")
    if n_devices is not None:
        if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 1:
            raise LensarithError(f"n_devices must be a positive int, got {n_devices!r}")
        if backend == "nnsight":
            raise LensarithError("n_devices is TransformerLens's; with backend='nnsight' give device_map='auto'")


def _check_name(name_or_path: Any) -> str:
    """``name_or_path`` as text, or a ``LensarithError`` saying what is valid."""
    valid = ("a TransformerLens hub name such as 'gpt2-medium', 'organism', or a directory written by "
             "lensarith.save_model (str or os.PathLike)")
    if isinstance(name_or_path, (str, os.PathLike)):
        text = os.fspath(name_or_path)
        text = os.fsdecode(text) if isinstance(text, bytes) else text
        if text.strip():
            return text
        raise LensarithError(f"name_or_path is empty ({name_or_path!r}); give {valid}")
    raise LensarithError(f"name_or_path must be {valid}; got {name_or_path!r} ({type(name_or_path).__name__})")


# --------------------------------------------------------------------------- local directories


def _first_line(exc: BaseException) -> str:
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
            f"{str(path)!r} cannot be read ({_first_line(exc)}): it is truncated or corrupted; rewrite the "
            "directory with lensarith.save_model") from None
    if _is_bridge(model):
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


def _load_local(directory: Path, device: str | None):
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
            f"{str(cfg_path)!r} is not a config TransformerLens accepts: {_first_line(exc)}") from None
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
            f"TransformerLens cannot build the model {str(cfg_path)!r} describes: {_first_line(exc)}") from None
    state = _read_weights(weights, str(cfg.device), model, cfg_path)
    if _is_bridge(model):
        from ._tl4 import load_tl3_state

        load_tl3_state(model, state, where=repr(str(weights)))
        if getattr(cfg, "model_name", None):
            model.cfg.model_name = cfg.model_name
        model.eval()
        return model
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - _read_weights checks keys and shapes first
        raise ModelNotAvailableError(f"{str(weights)!r} does not fit {str(cfg_path)!r}: {_first_line(exc)}") from None
    model.eval()
    return model


# --------------------------------------------------------------------------- the hub


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` in the environment, or huggingface_hub's switch."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _hub_endpoint() -> str:
    """The hub's URL: ``$HF_ENDPOINT`` now, else what huggingface_hub read at import."""
    env = os.environ.get("HF_ENDPOINT", "").strip()
    if env:
        return env.rstrip("/")
    import huggingface_hub.constants

    return str(huggingface_hub.constants.ENDPOINT).rstrip("/")


def _cache_dir(kwargs: dict[str, Any]) -> str:
    """The Hugging Face cache folder ``from_pretrained`` would use."""
    if kwargs.get("cache_dir"):
        return str(kwargs["cache_dir"])
    import huggingface_hub.constants

    return str(huggingface_hub.constants.HF_HUB_CACHE)


def _cache_state(official: str, cache_dir: str | None = None) -> tuple[str, str]:
    """``("complete" | "partial" | "absent", the model's cache folder)``.

    Complete means config.json and a weights file are cached (the tokenizer is checked by
    loading); partial means config.json only.
    """
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.file_download import repo_folder_name

    import huggingface_hub.constants

    root = cache_dir or str(huggingface_hub.constants.HF_HUB_CACHE)
    folder = os.path.join(root, repo_folder_name(repo_id=official, repo_type="model"))

    def hit(filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(official, filename, cache_dir=root), str)
        except (OSError, ValueError):
            return False

    if not hit("config.json"):
        return "absent", folder
    return ("complete" if any(hit(f) for f in _WEIGHT_FILES) else "partial"), folder


def _hub_cached(official: str, cache_dir: str | None = None) -> bool:
    """Whether ``official`` is completely in the local Hugging Face cache."""
    try:
        return _cache_state(official, cache_dir)[0] == "complete"
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return False


def _looks_like_hub(status: int, content_type: str, body: bytes) -> bool:
    """A hub API answer: JSON with the model's ``id``, or the hub's JSON error for a repo."""
    if "json" not in content_type.lower():
        return False
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    if 200 <= status < 300:
        return isinstance(data.get("id") or data.get("modelId"), str)
    return status in (401, 403, 404) and isinstance(data.get("error"), str)


def _probe_once(url: str, timeout: float) -> str | None:
    """None when ``url`` answers like the hub, else why not (one line)."""
    import http.client
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener()  # a fresh ProxyHandler reads the proxies in the environment now
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "lensarith"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            body = resp.read(_PROBE_MAX_BYTES)
            if _looks_like_hub(resp.status, resp.headers.get("Content-Type", ""), body):
                return None
            return (f"{url} answered HTTP {resp.status} with {resp.headers.get('Content-Type') or 'no content type'}, "
                    "not the hub's JSON (a captive portal or a proxy's page?)")
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                body = exc.read(_PROBE_MAX_BYTES)
            except (OSError, http.client.HTTPException):
                body = b""
            if _looks_like_hub(exc.code, exc.headers.get("Content-Type", "") if exc.headers else "", body):
                return None
            return f"{url} answered HTTP {exc.code} ({exc.reason}), not the hub (a proxy error?)"
    except urllib.error.URLError as exc:
        return f"{url} cannot be reached ({exc.reason})"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{url} cannot be reached ({type(exc).__name__}: {_first_line(exc)})"


def _probe_hub(official: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Ask the hub's API about ``official`` through the environment's proxies, within ``timeout``.

    Args:
        official: the model's official hub name.
        timeout: seconds in all; DNS lookups (which socket timeouts do not bound) included.

    Returns:
        None when the hub answered like the hub, else why it counts as unreachable.
    """
    import threading
    import urllib.parse

    url = f"{_hub_endpoint()}/api/models/{urllib.parse.quote(official, safe='/')}"
    if not url.startswith(("http://", "https://")):
        return f"HF_ENDPOINT={_hub_endpoint()!r} is not an http(s) URL"
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(_probe_once(url, timeout)), daemon=True,
                              name="lensarith-hub-probe")
    worker.start()
    worker.join(timeout)
    return result[0] if result else f"{url} did not answer within {timeout:g} s"


def _from_pretrained(name: str, device: str | None, kwargs: dict[str, Any]):
    if tl_major() >= 4:
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_transformers(_official_name(name), device=device, **kwargs)
        if model.tokenizer is not None:
            model.tokenizer.padding_side = "right"
        model.eval()
        return model
    with _quiet_deprecation():
        from transformer_lens import HookedTransformer

        return HookedTransformer.from_pretrained(name, device=device, **kwargs)


def _load_errors() -> tuple[type[BaseException], ...]:
    """What a missing, partial or damaged download raises inside ``from_pretrained``."""
    import pickle

    errors: list[type[BaseException]] = [OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - transformers always brings safetensors
        pass
    return tuple(errors)


def _is_load_error(exc: BaseException, *, offline: bool = False) -> bool:
    """A problem with the files (not out-of-memory, not a LensarithError raised on purpose).

    Offline, everything ``from_pretrained`` reads comes from the cache, so a damaged cache can
    surface as any error (a config without ``architectures`` is a ``TypeError``).
    """
    if isinstance(exc, LensarithError):
        return False
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return False
    if offline or isinstance(exc, _load_errors()):
        return True
    # torch.load of a truncated pytorch_model.bin raises a bare RuntimeError
    return type(exc) is RuntimeError


def _official_name(name: str) -> str:
    """The hub repository of a TransformerLens model name (raises ValueError for unknown ones on 3.x)."""
    if tl_major() >= 4:  # 4.x loads any Hugging Face repository; aliases map to their repository
        from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

        return resolve_model_alias(name) or name
    from transformer_lens.loading_from_pretrained import get_official_model_name

    return get_official_model_name(name)


def _load_hub(name: str, device: str | None, **kwargs: Any):
    packaged = BY_OFFICIAL.get(name)
    if packaged is None:
        return _load_hub_checked(name, device, **kwargs)
    hint = (f" The {packaged.quantization} quantization of {name} shipped on PyPI loads offline: "
            f"load_model({packaged.name!r}).")
    try:
        return _load_hub_checked(name, device, **kwargs)
    except ModelNotAvailableError as exc:
        raise ModelNotAvailableError(str(exc) + hint) from None


def _hub_folder(official: str, device: str | None, kwargs: dict[str, Any]):
    """A hub repository TransformerLens has no name for (SmolLM2), downloaded with transformers into a
    ``save_pretrained`` folder of lensarith's cache and loaded from there like the packaged models."""
    from huggingface_hub.file_download import repo_folder_name

    from ._hf import load_hf_directory
    from ._pypi import cache_root

    folder = cache_root() / "hub" / repo_folder_name(repo_id=official, repo_type="model")
    if not (folder / "config.json").is_file():
        state, cached = _cache_state(official, _cache_dir(kwargs))
        why = "HF_HUB_OFFLINE is set" if _offline_requested() else _probe_hub(official)
        if why is not None and state != "complete":
            raise ModelNotAvailableError(
                f"cannot load {official!r}: it is not in the local Hugging Face cache (looked in {cached!r}) and {why}.")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with (hub_offline() if why is not None else nullcontext()):
            try:
                hf = AutoModelForCausalLM.from_pretrained(official, attn_implementation="eager")
                tokenizer = AutoTokenizer.from_pretrained(official)
            except Exception as exc:
                if not _is_load_error(exc, offline=why is not None):
                    raise
                raise ModelNotAvailableError(
                    f"cannot load {official!r} ({type(exc).__name__}: {_first_line(exc)}).") from None
        with atomic_directory(folder) as stage:
            hf.save_pretrained(str(stage), safe_serialization=True)
            tokenizer.save_pretrained(str(stage))
    model = load_hf_directory(folder, device, build=new_hooked_transformer, offline=hub_offline,
                              quiet=_quiet_deprecation)
    model.cfg.model_name = official
    return model


def _load_hub_checked(name: str, device: str | None, **kwargs: Any):
    try:
        official = _official_name(name)
    except ValueError:
        if name in BY_OFFICIAL:
            return _hub_folder(name, device, kwargs)
        raise ModelNotAvailableError(
            f"model {name!r} is neither a local directory, 'organism', nor a TransformerLens "
            "hub name (e.g. 'gpt2', 'gpt2-medium', 'EleutherAI/gpt-j-6b')"
        ) from None
    state, folder = _cache_state(official, _cache_dir(kwargs))
    why = "HF_HUB_OFFLINE is set" if _offline_requested() else _probe_hub(official)
    if why is None:  # the hub answers: TransformerLens downloads or revalidates as usual
        try:
            return _from_pretrained(name, device, kwargs)
        except Exception as exc:
            if not _is_load_error(exc):
                raise
            raise ModelNotAvailableError(
                f"cannot load {name!r} from the hub {_hub_endpoint()} ({type(exc).__name__}: {_first_line(exc)}); "
                f"the cache folder is {folder!r}. " + _WHAT_TO_DO) from None
    if state == "absent":
        raise ModelNotAvailableError(
            f"cannot load {name!r}: it is not in the local Hugging Face cache (looked in {folder!r}) "
            f"and {why}. " + _WHAT_TO_DO)
    if state == "partial":
        raise ModelNotAvailableError(
            f"cannot load {name!r} offline ({why}): the Hugging Face cache folder {folder!r} is incomplete "
            f"(config.json but no weights: none of {', '.join(_WEIGHT_FILES)}). Finish the download where the "
            "hub can be reached, or delete that folder. " + _WHAT_TO_DO)
    with hub_offline():
        try:
            return _from_pretrained(name, device, kwargs)
        except Exception as exc:  # OSError (= EnvironmentError), ValueError, SafetensorError, ...
            if not _is_load_error(exc, offline=True):
                raise
            raise ModelNotAvailableError(
                f"cannot load {name!r} offline ({why}) from the Hugging Face cache folder {folder!r}: "
                f"{type(exc).__name__}: {_first_line(exc)}. The cached copy is incomplete or damaged: download "
                "it again where the hub can be reached. " + _WHAT_TO_DO) from None


def _load_real_by_name(spec: RealModel, device: str | None, backend: str | None, device_map: Any, n_devices: Any,
                       remote: bool, kwargs: dict[str, Any]):
    """A real model shipped in PyPI packages (``REAL_MODELS``), from its converted cache folder."""
    unknown = sorted(set(kwargs) - {"dtype"})
    if unknown:
        raise LensarithError(
            f"load_model({spec.name!r}) takes device=, dtype=, backend= and device_map= (TransformerLens 4 or "
            f"nnsight); it does not use {', '.join(unknown)}")
    if remote:
        raise LensarithError(f"remote=True runs a model NDIF hosts by its hub id ({spec.official!r}), not the "
                             f"packaged {spec.name!r}")
    if n_devices is not None:
        raise LensarithError(f"{spec.name} loads on one device (device=) or split with device_map= on "
                             "TransformerLens 4 or backend='nnsight'; n_devices= is for hub names")
    if backend == "nnsight":
        from ._nnsight import load_nnsight

        folder = ensure_converted(spec)
        with quiet_hf():
            model = load_nnsight(str(folder), local=lambda d: _load_local(d, device), device=device,
                                 device_map=device_map, remote=False,
                                 **({"dtype": torch_dtype(kwargs["dtype"])} if "dtype" in kwargs else {}))
        model.cfg.model_name = spec.name
        model.cfg.default_prepend_bos = spec.prepend_bos
        return model
    if device_map is not None:
        from ._hf import load_hf_split

        model = load_hf_split(ensure_converted(spec), device_map, None)
        model.cfg.model_name = spec.name
        model.cfg.default_prepend_bos = spec.prepend_bos
        return model
    return load_real(spec, device, dtype=kwargs.get("dtype"), build=new_hooked_transformer)


@keeps_global_rng
def load_model(name_or_path: str | os.PathLike[str], *, device: str | None = None, backend: str | None = None,
               device_map: str | dict | None = None, n_devices: int | None = None, remote: bool = False,
               dtype: Any = None, **kwargs: Any):
    """Load a HookedTransformer by hub name, local directory, ``"organism"`` or ``"organism-planted"``.

    Args:
        name_or_path: ``"organism"`` (the small trained model in ``data/organism``),
            ``"organism-planted"`` (the same model fine-tuned so that a known mechanism is
            there, ``data/organism-planted``; its card says what was imposed), a
            directory in lensarith's format or a Hugging Face ``save_pretrained`` folder
            (loaded without weight processing), or a TransformerLens hub name such as
            ``"gpt2-medium"``. Without network a hub name fails (or loads from a complete
            local cache) within about two seconds, and global state is left as it was.
        device: e.g. ``"cpu"``, ``"cuda"`` or a ``torch.device``; defaults to
            TransformerLens's choice.
        backend: ``None`` (TransformerLens: ``HookedTransformer`` on 3.x, ``TransformerBridge`` on
            4.x) or ``"nnsight"``: the Hugging Face model behind nnsight (``NNsightModel``; the
            organism is exported with ``to_hf_gpt2``; forward-only recipes; ``pip install
            'lensarith[nnsight]'``).
        device_map: split the model over devices (``"auto"``, ``"balanced"`` or a Hugging Face
            map): TransformerLens 4's ``boot_transformers(device_map=...)``, or Hugging Face's
            for ``backend="nnsight"``; not with ``device``.
        n_devices: split over this many GPUs (TransformerLens 3's ``from_pretrained(n_devices=)``,
            4's ``boot_transformers(n_devices=)``); hub names only.
        remote: with ``backend="nnsight"`` and a hub repository id: run every trace on NDIF
            (``NDIF_API_KEY`` in the environment); nothing is downloaded but config and tokenizer.
        dtype: ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``, ``"float32"`` or a torch
            dtype: cast the loaded model's weights (CPU or CUDA); None keeps what was saved.
            Readouts upcast to float32; the precision's cost is measured by the benchmarks.
        **kwargs: passed to ``HookedTransformer.from_pretrained`` for hub names.

    Returns:
        The model in eval mode, tokenizer attached, right padding. Models from a directory
        whose config says ``model_name="custom"`` get the directory's name, so results
        record e.g. ``model='organism'``. The torch, numpy and ``random`` generators are left as
        they were (TransformerLens seeds them from a config's ``seed``).

    Raises:
        LensarithError: ``name_or_path`` or ``device`` of the wrong type or value.
        ModelNotAvailableError: the model cannot be loaded; the message names the file,
            folder or hub and what to do.

    Example:
        >>> model = load_model("organism")
        >>> model.cfg.n_layers, model.cfg.model_name, model.to_str_tokens(" Poland", prepend_bos=False)
        (8, 'organism', ['Poland'])
    """
    text = _check_name(name_or_path)
    device = _check_device(device)
    _check_placement(backend, device, device_map, n_devices, remote)
    if dtype is not None:  # validated first: a typo fails before the load
        from ._dtype import check_dtype, with_dtype

        dtype = check_dtype(dtype)
        if real_model_spec(name_or_path) is not None:
            kwargs["dtype"] = dtype  # the real models load in it directly
        elif backend == "nnsight":
            raise LensarithError("dtype= casts TransformerLens models; with backend='nnsight' pass torch_dtype=")
        else:  # load as saved, then cast
            return with_dtype(load_model(name_or_path, device=device, backend=backend, device_map=device_map,
                                         n_devices=n_devices, remote=remote, **kwargs), dtype)
    if backend == "nnsight" and real_model_spec(name_or_path) is None:
        from ._nnsight import load_nnsight

        return load_nnsight(text, local=lambda d: _load_local(d, device), device=device, device_map=device_map,
                            remote=remote, **kwargs)
    if n_devices is not None:
        kwargs["n_devices"] = n_devices
    if device_map is not None:
        if tl_major() < 4:
            raise LensarithError(
                "device_map needs TransformerLens 4 (TransformerBridge) or backend='nnsight'; TransformerLens 3 "
                "splits a hub model's layers over GPUs with n_devices=")
        kwargs["device_map"] = device_map
    spec = real_model_spec(name_or_path)
    if spec is not None:
        return _load_real_by_name(spec, device, backend, device_map, n_devices, remote, kwargs)
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_MODELS:
        directory = data_dir() / name_or_path
        if not (directory / "model.safetensors").is_file():
            how = "`lensarith organism-train`" if name_or_path == "organism" else \
                "`python -m lensarith.organism.train --planted`"
            raise ModelNotAvailableError(
                f"the {name_or_path} is not bundled in {str(directory)!r}: train it with "
                f"{how} or point $LENSARITH_DATA at a data folder holding it"
            )
        return _load_local(directory, device)
    path = Path(text).expanduser()
    if path.is_dir():
        if "device_map" in kwargs or "n_devices" in kwargs:
            from ._hf import is_hf_directory, load_hf_split

            if not is_hf_directory(path):
                raise LensarithError("device_map / n_devices split Hugging Face folders and hub models; a lensarith "
                                     "folder loads on one device (device=)")
            return load_hf_split(path, kwargs.pop("device_map", None), kwargs.pop("n_devices", None))
        return _load_local(path, device)
    if path.exists():
        raise ModelNotAvailableError(
            f"name_or_path {text!r} is a file, not a model directory: give the folder holding config.json and "
            "model.safetensors (written by lensarith.save_model)")
    if not isinstance(name_or_path, str) or text.startswith((".", "/", "~", os.sep)):
        raise ModelNotAvailableError(
            f"model directory {text!r} does not exist or is not a directory"
        )
    return _load_hub(text, device, **kwargs)
