"""Context managers that keep loading quiet and offline: TransformerLens 3.9's deprecation warnings,
huggingface_hub's offline switch, transformers' progress bars. Each restores what it changed."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_deprecation", "hub_offline", "quiet_hf"]


@contextmanager
def quiet_deprecation() -> Iterator[None]:
    """TransformerLens 3.9 warns that ``HookedTransformer`` and ``transformer_lens.utils``
    are deprecated; lensarith knows (its backends cover 4.x), so users are not told again."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        warnings.filterwarnings("ignore", message=".*HookedTransformer.from_pretrained is deprecated.*")
        warnings.filterwarnings("ignore", message=".*transformer_lens.utils.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*'utils' module has been deprecated.*")
        yield


@contextmanager
def hub_offline() -> Iterator[None]:
    """Switch huggingface_hub (and transformers) to offline mode for the block only.

    Sets ``huggingface_hub.constants.HF_HUB_OFFLINE`` and ``$HF_HUB_OFFLINE``; both are
    restored on exit, also when the block raises.
    """
    import huggingface_hub.constants

    saved_flag = huggingface_hub.constants.HF_HUB_OFFLINE
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


@contextmanager
def quiet_hf() -> Iterator[None]:
    """transformers' progress bars off for the block (restored after)."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            hf_logging.enable_progress_bar()
