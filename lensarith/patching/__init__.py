"""Activation patching between clean and corrupted prompts: exact, batched; and attribution patching.

``activation_patch`` moves one activation from a source run into a base run, for every site
of a sweep (layer x position, layer x head, layer x head x position), and scores the
patched runs with a metric read at each example's last real token. Denoising patches
clean activations into the corrupted run; noising patches corrupted activations into the
clean run.

Two engines compute the same numbers:

- ``"fast"`` (the default where the architecture allows it) puts many sites on the batch
  axis and recomputes only what a patch can change. A patch at layer ``L`` and position
  ``p`` leaves every position before ``p`` and every layer before ``L`` as in the base run,
  so a patched run starts at layer ``L`` from the base run's residual, computes positions
  ``p..`` only (their attention reads the base run's keys and values for earlier
  positions), runs the last layer for the read position only (other positions contribute
  keys and values), and unembeds only the logit columns the metric reads. Sites that
  start at different layers share forwards: a site joins the batch at its layer.
  Patches after the attention of layer ``L`` (``attn_out``, ``resid_mid``, ``mlp_out``,
  ``resid_post``, heads) change only their own positions in that layer, so they enter as
  a patched residual at layer ``L + 1``.
  The fast engine covers learned, rotary and ALiBi positions, sequential and parallel
  blocks, grouped-query attention, LayerNorm/LNPre/RMS/RMSPre, plain and gated MLPs and soft
  caps (``_fast.fast_unsupported`` names what it refuses; ``engine="fast"`` raises then).
- ``"hooks"``: a patching hook on a batch of sites per forward, started at the patched
  layer; it works for every TransformerLens architecture and honours hooks already on the
  model (``"auto"`` falls back to it when the fast engine does not apply).

``attribution_patch`` estimates a whole sweep in at most 5 forward-equivalents. ``method="atp"``
is the gradient approximation (two forwards and one backward):
``metric(patched) ~ metric(base) + (source - base) . d metric / d activation``;
``"atp+qk"``, ``"atp*"``, ``"relp"`` and ``"relp+qk"`` (AtP*'s QK fix, AtP* with GradDrop,
relevance patching, both) recompute the base run and are described in ``_atp``.
"""

from ._grid import HEAD_SITES as HEAD_SITES
from ._grid import PATCH_SITES as PATCH_SITES
from ._grid import POSITION_SITES as POSITION_SITES
from ._grid import PatchConfig as PatchConfig
from ._metrics import METRICS as METRICS
from ._metrics import AnswerProb as AnswerProb
from ._metrics import BoundMetric as BoundMetric
from ._metrics import CallableMetric as CallableMetric
from ._metrics import LogitDiff as LogitDiff
from ._metrics import Metric as Metric
from ._metrics import ReciprocalRank as ReciprocalRank
from ._metrics import Recovery as Recovery
from ._metrics import TokenSpec as TokenSpec
from ._metrics import resolve_metric as resolve_metric
from ._pairs import PromptPairs as PromptPairs
from ._pairs import make_pairs as make_pairs
from ._pairs import pair_examples as pair_examples
from ._sweep import AttributionPatchResult as AttributionPatchResult
from ._sweep import PatchResult as PatchResult
from ._sweep import activation_patch as activation_patch
from ._sweep import attribution_patch as attribution_patch

__all__ = ["PatchConfig", "PatchResult", "AttributionPatchResult", "activation_patch", "attribution_patch",
           "PromptPairs", "make_pairs", "pair_examples", "Metric", "BoundMetric", "LogitDiff", "Recovery", "AnswerProb",
           "ReciprocalRank", "CallableMetric", "resolve_metric", "METRICS", "TokenSpec", "PATCH_SITES", "POSITION_SITES",
           "HEAD_SITES"]
