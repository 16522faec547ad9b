"""Reduced precision: run a loaded model in bfloat16 or float16 (``load_model(..., dtype=)``).

The weights are cast once after loading and the config's ``dtype`` follows (TransformerLens's
RMS norms compute in float32 and cast back by it). Readouts upcast: the logit lens reads the
vocabulary with float32 products. What the precision costs is measured, not assumed
(``benchmarks/patching.py`` and ``benchmarks/logit_lens.py`` print it against float32).
"""

from __future__ import annotations

from typing import Any

from .._errors import LensarithError
from .._types import Model

__all__ = ["DTYPES", "check_dtype", "with_dtype"]

#: accepted names -> torch dtype attribute
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def check_dtype(dtype: Any):
    """``dtype`` as a torch dtype (None stays None), or a ``LensarithError`` saying what is valid."""
    if dtype is None:
        return None
    import torch

    valid = "None, 'float32', 'bfloat16' ('bf16'), 'float16' ('fp16') or the torch dtype"
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise LensarithError(f"dtype must be {valid}; got {dtype!r}")
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPES:
        return getattr(torch, DTYPES[dtype.lower().removeprefix("torch.")])
    raise LensarithError(f"dtype must be {valid}; got {dtype!r}")


def with_dtype(model: Model, dtype):
    """Cast a TransformerLens model's weights and config to ``dtype`` (in place; returns it).

    Example:
        >>> half = with_dtype(la.tiny_model(n_layers=1, d_model=16, n_heads=2), "bf16")
        >>> half.cfg.dtype, half.W_U.dtype
        (torch.bfloat16, torch.bfloat16)
    """
    dtype = check_dtype(dtype)
    if dtype is None or model.cfg.dtype == dtype:
        return model
    if not hasattr(model, "cfg") or type(model).__name__ not in ("HookedTransformer", "TransformerBridge"):
        raise LensarithError(f"dtype= casts TransformerLens models; got a {type(model).__name__} (for "
                             "backend='nnsight', pass torch_dtype= to the Hugging Face loader)")
    if type(model).__name__ == "HookedTransformer":
        model.to(dtype, print_details=False)
    else:
        model.to(dtype)
    model.cfg.dtype = dtype
    return model
