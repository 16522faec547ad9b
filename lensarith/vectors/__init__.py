"""Vectors that make a model perform a relation: o-vectors (Merullo, Eickhoff & Pavlick 2023).

- extract o-vectors with provenance (``extract_o_vector`` -> ``OVector``, saved and loaded
  as safetensors + JSON);
- transplant them (``transplant``: replace a range of MLP outputs, add, or subtract) and
  score control and transplanted runs with the logit lens in one batched pass;
- find the application layer and the replaced range for a new model (``find_layers``);
- explain a vector (``decode_o_vector``, ``o_vector_consistency``, ``o_vector_analogy``);
- run the whole recipe for a task (``transplant_experiment``, recipe ``"transplant"``).
"""

from ._apply import TransplantResult as TransplantResult
from ._apply import transplant as transplant
from ._apply import transplant_contexts as transplant_contexts
from ._apply import transplant_interventions as transplant_interventions
from ._experiment import TransplantConfig as TransplantConfig
from ._experiment import transplant_experiment as transplant_experiment
from ._explain import AnalogyResult as AnalogyResult
from ._explain import ConsistencyResult as ConsistencyResult
from ._explain import DecodeResult as DecodeResult
from ._explain import decode_o_vector as decode_o_vector
from ._explain import o_vector_analogy as o_vector_analogy
from ._explain import o_vector_consistency as o_vector_consistency
from ._ovector import OVector as OVector
from ._ovector import extract_o_vector as extract_o_vector
from ._search import LayerSearchResult as LayerSearchResult
from ._search import SearchConfig as SearchConfig
from ._search import find_layers as find_layers

__all__ = ["OVector", "extract_o_vector", "transplant_interventions", "transplant", "TransplantResult",
           "transplant_contexts", "SearchConfig", "LayerSearchResult", "find_layers", "DecodeResult", "decode_o_vector",
           "ConsistencyResult", "o_vector_consistency", "AnalogyResult", "o_vector_analogy", "TransplantConfig",
           "transplant_experiment"]
