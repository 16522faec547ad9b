"""Vectors that make a model perform a relation: o-vectors (Merullo, Eickhoff & Pavlick 2023),
function vectors and task vectors, and the one operator that puts any of them into a model.

- extract o-vectors with provenance (``extract_o_vector`` -> ``OVector``, saved and loaded
  as safetensors + JSON; ``_ovector``);
- function vectors (Todd et al. 2024: ``head_effects`` -> ``HeadEffects``,
  ``function_vector`` / ``extract_function_vector`` -> ``FunctionVector``) and task vectors
  (Hendel et al. 2023: ``extract_task_vector`` -> ``TaskVector``) from ``few_shot_prompts``
  (``_function_task``, ``_fewshot``);
- one operator for every kind (``_apply_vector``): ``Application`` says where and how a vector
  goes in, ``vector_interventions`` builds its interventions, ``apply_vector`` /
  ``apply_vectors`` -> ``VectorResult`` run it (control, vectors and same-norm random baselines in
  shared forwards); ``same_norm_random``, ``bootstrap_ci``; layer sweeps on it (``sweep_layers`` ->
  ``SweepResult``; ``_sweep``);
- transplant (``_transplant``): the paper's recipe as that operator with an o-vector at
  ``mlp_out`` (``transplant`` -> ``TransplantResult``: replace a range of MLP outputs, add, or
  subtract; ``transplant_interventions``; ``transplant_contexts``); every run is scored by the
  same logit-lens rank readout (``_scoring``);
- find the application layer and the replaced range for a new model (``find_layers``);
- explain a vector (``decode_o_vector``, ``o_vector_consistency``, ``o_vector_analogy``);
- run the whole recipe for a task (``transplant_experiment``, recipe ``"transplant"``);
- the comparison bench (``vector_bench`` -> ``BenchResult``, recipe ``"vector_bench"``;
  ``compare_vectors``, ``bench_table``; its figures ``bench_figure`` and ``sweep_figure`` live in
  ``lensarith.viz.vectors`` and are re-exported here).
"""

from ._apply_vector import Application as Application
from ._apply_vector import VectorResult as VectorResult
from ._apply_vector import apply_vector as apply_vector
from ._apply_vector import apply_vectors as apply_vectors
from ._apply_vector import bootstrap_ci as bootstrap_ci
from ._apply_vector import same_norm_random as same_norm_random
from ._apply_vector import vector_interventions as vector_interventions
from ._bench import BenchConfig as BenchConfig
from ._bench import BenchResult as BenchResult
from ._bench import bench_table as bench_table
from ._bench import compare_vectors as compare_vectors
from ._bench import single_token_counts as single_token_counts
from ._bench import vector_bench as vector_bench
from ._experiment import TransplantConfig as TransplantConfig
from ._experiment import transplant_experiment as transplant_experiment
from ._explain import AnalogyResult as AnalogyResult
from ._explain import ConsistencyResult as ConsistencyResult
from ._explain import DecodeResult as DecodeResult
from ._explain import decode_o_vector as decode_o_vector
from ._explain import o_vector_analogy as o_vector_analogy
from ._explain import o_vector_consistency as o_vector_consistency
from ._fewshot import few_shot_prompts as few_shot_prompts
from ._function_task import FunctionVector as FunctionVector
from ._function_task import HeadEffects as HeadEffects
from ._function_task import TaskVector as TaskVector
from ._function_task import extract_function_vector as extract_function_vector
from ._function_task import extract_task_vector as extract_task_vector
from ._function_task import function_vector as function_vector
from ._function_task import head_effects as head_effects
from ._ovector import OVector as OVector
from ._ovector import extract_o_vector as extract_o_vector
from ._search import LayerSearchResult as LayerSearchResult
from ._search import SearchConfig as SearchConfig
from ._search import find_layers as find_layers
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep_layers as sweep_layers
from ._transplant import TransplantResult as TransplantResult
from ._transplant import transplant as transplant
from ._transplant import transplant_contexts as transplant_contexts
from ._transplant import transplant_interventions as transplant_interventions
from ..viz.vectors import bench_figure as bench_figure
from ..viz.vectors import sweep_figure as sweep_figure

__all__ = ["OVector", "extract_o_vector", "transplant_interventions", "transplant", "TransplantResult",
           "transplant_contexts", "SearchConfig", "LayerSearchResult", "find_layers", "DecodeResult", "decode_o_vector",
           "ConsistencyResult", "o_vector_consistency", "AnalogyResult", "o_vector_analogy", "TransplantConfig",
           "transplant_experiment", "few_shot_prompts", "HeadEffects", "head_effects", "FunctionVector", "function_vector",
           "extract_function_vector", "TaskVector", "extract_task_vector", "Application", "vector_interventions",
           "apply_vector", "apply_vectors", "VectorResult", "sweep_layers", "SweepResult", "same_norm_random",
           "bootstrap_ci", "BenchConfig", "BenchResult", "vector_bench", "compare_vectors", "bench_table", "bench_figure",
           "sweep_figure", "single_token_counts"]
