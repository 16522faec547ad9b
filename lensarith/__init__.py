"""lensarith: residual-stream recipes on TransformerLens for "how does the model turn Poland into Warsaw?".

The public surface; every name here is documented in the README.
"""

from ._errors import LensarithError as LensarithError
from ._errors import ModelNotAvailableError as ModelNotAvailableError
from ._run import collect as collect
from .ablation import AblationResult as AblationResult
from .ablation import ffn_ablation as ffn_ablation
from .ablation import removal_counts as removal_counts
from .attribution import DLAResult as DLAResult
from .attribution import direct_logit_attribution as direct_logit_attribution
from .decompose import DecompositionResult as DecompositionResult
from .decompose import decompose_resid as decompose_resid
from .interventions import Ablate as Ablate
from .interventions import Add as Add
from .interventions import Capture as Capture
from .interventions import Patch as Patch
from .interventions import Replace as Replace
from .interventions import intervene as intervene
from .interventions import run_with_interventions as run_with_interventions
from .lens import LensResult as LensResult
from .lens import logit_lens as logit_lens
from .models import load_model as load_model
from .models import save_model as save_model
from .models import tiny_model as tiny_model
from .models import word_tokenizer as word_tokenizer
from .metrics import AnswerProb as AnswerProb
from .metrics import CallableMetric as CallableMetric
from .metrics import LogitDiff as LogitDiff
from .metrics import Metric as Metric
from .metrics import ReciprocalRank as ReciprocalRank
from .metrics import Recovery as Recovery
from .patching import AttributionPatchResult as AttributionPatchResult
from .patching import PatchConfig as PatchConfig
from .patching import PatchResult as PatchResult
from .patching import PromptPairs as PromptPairs
from .patching import activation_patch as activation_patch
from .patching import attribution_patch as attribution_patch
from .patching import make_pairs as make_pairs
from .patching import pair_examples as pair_examples
from .recipes import get_recipe as get_recipe
from .recipes import list_recipes as list_recipes
from .recipes import register_recipe as register_recipe
from .recipes import run_recipe as run_recipe
from .result import Result as Result
from .sites import Site as Site
from .tasks import TASKS as TASKS
from .tasks import Batch as Batch
from .tasks import Example as Example
from .tasks import as_batch as as_batch
from .tasks import build_prompts as build_prompts
from .tasks import load_pairs as load_pairs
from .tasks import random_token_contexts as random_token_contexts
from .tasks import tokenize as tokenize

from .transplant import AnalogyResult as AnalogyResult
from .transplant import ConsistencyResult as ConsistencyResult
from .transplant import DecodeResult as DecodeResult
from .transplant import LayerSearchResult as LayerSearchResult
from .transplant import OVector as OVector
from .transplant import SearchConfig as SearchConfig
from .transplant import TransplantConfig as TransplantConfig
from .transplant import TransplantResult as TransplantResult
from .transplant import decode_o_vector as decode_o_vector
from .transplant import extract_o_vector as extract_o_vector
from .transplant import find_layers as find_layers
from .transplant import o_vector_analogy as o_vector_analogy
from .transplant import o_vector_consistency as o_vector_consistency
from .transplant import transplant as transplant
from .transplant import transplant_contexts as transplant_contexts
from .transplant import transplant_experiment as transplant_experiment
from .transplant import transplant_interventions as transplant_interventions

__version__ = "0.1.0"
