"""The execution core: batches, sites, interventions, the one chunked forward, the one readout,
results and the recipe registry. Recipe families use only this package to run a model."""

from .._types import Model as Model
from .batch import Batch as Batch
from .batch import as_batch as as_batch
from .batch import resolve_ids as resolve_ids
from .batch import token_ids as token_ids
from .batch import tokenize as tokenize
from .interventions import Ablate as Ablate
from .interventions import Add as Add
from .interventions import Capture as Capture
from .interventions import Hook as Hook
from .interventions import Intervention as Intervention
from .interventions import Patch as Patch
from .interventions import Replace as Replace
from .interventions import compile_hooks as compile_hooks
from .interventions import intervene as intervene
from .recipes import get_recipe as get_recipe
from .recipes import list_recipes as list_recipes
from .recipes import register_recipe as register_recipe
from .recipes import run_recipe as run_recipe
from .result import Result as Result
from .result import provenance as provenance
from .run import Group as Group
from .run import Outputs as Outputs
from .run import collect as collect
from .run import run as run
from .run import run_with_interventions as run_with_interventions
from .sites import Site as Site
from .sites import check_layer as check_layer
from .sites import check_layers as check_layers

__all__ = ["Batch", "as_batch", "resolve_ids", "token_ids", "tokenize", "Ablate", "Add", "Capture", "Hook",
           "Intervention", "Patch", "Replace", "compile_hooks", "intervene", "get_recipe", "list_recipes",
           "register_recipe", "run_recipe", "Result", "provenance", "Group", "Outputs", "collect", "run",
           "run_with_interventions", "Site", "check_layer", "check_layers", "Model"]
