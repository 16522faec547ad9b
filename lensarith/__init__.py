"""lensarith: residual-stream recipes on TransformerLens for "how does the model turn Poland into Warsaw?".

The public surface: the names a notebook needs, each documented in the README's API table.
Result classes and helpers live in their subpackages (``lensarith.lens``,
``lensarith.patching``, ``lensarith.vectors``, ``lensarith.core`` ...).

Names load on first use (a module ``__getattr__``), so ``import lensarith`` and the command
line's ``--help`` start without torch; touching a recipe imports torch, and TransformerLens
loads only when a model is built or loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "LensarithError": "._errors",
    "ModelNotAvailableError": "._errors",
    "LensarithWarning": "._errors",
    # types
    "Model": "._types",
    # models
    "load_model": ".models",
    "save_model": ".models",
    "tiny_model": ".models",
    # tasks
    "TASKS": ".tasks",
    "Example": ".tasks",
    "load_pairs": ".tasks",
    "build_prompts": ".tasks",
    "random_token_contexts": ".tasks",
    # core
    "Batch": ".core",
    "tokenize": ".core",
    "as_batch": ".core",
    "Site": ".core",
    "Replace": ".core",
    "Add": ".core",
    "Ablate": ".core",
    "Patch": ".core",
    "intervene": ".core",
    "collect": ".core",
    "run_with_interventions": ".core",
    "Result": ".core",
    "register_recipe": ".core",
    "run_recipe": ".core",
    "list_recipes": ".core",
    # recipe families
    "logit_lens": ".lens",
    "decompose_resid": ".decompose",
    "direct_logit_attribution": ".attribution",
    "ffn_ablation": ".ablation",
    "activation_patch": ".patching",
    "attribution_patch": ".patching",
    "make_pairs": ".patching",
    "pair_examples": ".patching",
    "PatchConfig": ".patching",
    "OVector": ".vectors",
    "extract_o_vector": ".vectors",
    "transplant": ".vectors",
    "transplant_contexts": ".vectors",
    "find_layers": ".vectors",
    "SearchConfig": ".vectors",
    "transplant_experiment": ".vectors",
    "TransplantConfig": ".vectors",
}

__all__ = list(_EXPORTS)

#: subpackages reachable as attributes (``la.patching.PatchResult``), imported on first use
_SUBMODULES = ("core", "models", "tasks", "lens", "decompose", "attribution", "ablation", "patching", "vectors", "viz",
               "paper", "organism")

#: the built-in recipes register themselves when their module is imported
_RECIPE_MODULES = (".lens", ".decompose", ".attribution", ".ablation", ".patching", ".vectors")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name], __name__)
        if name in ("run_recipe", "list_recipes", "register_recipe"):
            for mod in _RECIPE_MODULES:
                importlib.import_module(mod, __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lensarith' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; at run time names load on first use
    from ._errors import LensarithError, LensarithWarning, ModelNotAvailableError
    from ._types import Model
    from .ablation import ffn_ablation
    from .attribution import direct_logit_attribution
    from .core import (Ablate, Add, Batch, Patch, Replace, Result, Site, as_batch, collect, intervene, list_recipes,
                       register_recipe, run_recipe, run_with_interventions, tokenize)
    from .decompose import decompose_resid
    from .lens import logit_lens
    from .models import load_model, save_model, tiny_model
    from .patching import PatchConfig, activation_patch, attribution_patch, make_pairs, pair_examples
    from .tasks import TASKS, Example, build_prompts, load_pairs, random_token_contexts
    from .vectors import (OVector, SearchConfig, TransplantConfig, extract_o_vector, find_layers, transplant,
                          transplant_contexts, transplant_experiment)
