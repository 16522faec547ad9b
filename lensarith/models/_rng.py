"""Building a model leaves the process's random generators as they were.

TransformerLens seeds torch, numpy and ``random`` process-wide when a config carries a
``seed`` (``HookedTransformerConfig.__post_init__``), so loading a model whose config records
one would re-seed the caller's experiment. ``keeps_global_rng`` restores all three.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["keeps_global_rng"]

F = TypeVar("F", bound=Callable[..., Any])


def keeps_global_rng(fn: F) -> F:
    """Decorate ``fn`` so the torch (CPU and initialised CUDA devices), numpy and ``random``
    generators are restored after it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import numpy as np
        import torch

        py_state, np_state = random.getstate(), np.random.get_state()
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        try:
            with torch.random.fork_rng(devices=devices):
                return fn(*args, **kwargs)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    return wrapper  # type: ignore[return-value]
