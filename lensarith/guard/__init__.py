"""The operator's loop: find, watch and switch off the FFN that carries a relation, measured end to end.

``locate`` (necessity next to sufficiency, per MLP) -> ``fit_monitor`` (a wrong-answer detector
at that FFN, on held-out arguments) -> policies (``Policy``, ``make_policy``, gates) in
``score_policy`` and ``generate`` -> ``side_effects`` and ``generation_overhead`` ->
``export_spec`` / ``replay_spec``; ``guard`` runs it all and ``guard_report`` writes the page.
"""

from ._effects import EffectsConfig as EffectsConfig
from ._effects import SideEffectResult as SideEffectResult
from ._effects import generation_overhead as generation_overhead
from ._effects import held_out_text as held_out_text
from ._effects import known_tasks as known_tasks
from ._effects import lm_loss as lm_loss
from ._effects import side_effects as side_effects
from ._locate import LocateConfig as LocateConfig
from ._locate import LocateResult as LocateResult
from ._locate import locate as locate
from ._locate import locate_figure as locate_figure
from ._loop import GuardConfig as GuardConfig
from ._loop import GuardResult as GuardResult
from ._loop import guard as guard
from ._metrics import auroc as auroc
from ._metrics import detection_metrics as detection_metrics
from ._monitor import Monitor as Monitor
from ._monitor import MonitorConfig as MonitorConfig
from ._monitor import MonitorResult as MonitorResult
from ._monitor import fit_monitor as fit_monitor
from ._monitor import monitor_figure as monitor_figure
from ._policies import Generation as Generation
from ._policies import MonitorGate as MonitorGate
from ._policies import Policy as Policy
from ._policies import PolicyEdit as PolicyEdit
from ._policies import RelationGate as RelationGate
from ._policies import generate as generate
from ._policies import make_policy as make_policy
from ._policies import policy_logits as policy_logits
from ._policies import relation_gate as relation_gate
from ._policies import score_policy as score_policy
from ._report import effects_figure as effects_figure
from ._report import guard_report as guard_report
from ._spec import export_spec as export_spec
from ._spec import load_spec as load_spec
from ._spec import replay_spec as replay_spec
from ._spec import save_spec as save_spec
from ._spec import spec_policy as spec_policy

__all__ = ["EffectsConfig", "SideEffectResult", "generation_overhead", "held_out_text", "known_tasks", "lm_loss",
           "side_effects", "LocateConfig", "LocateResult", "locate", "locate_figure", "GuardConfig", "GuardResult", "guard",
           "auroc", "detection_metrics", "Monitor", "MonitorConfig", "MonitorResult", "fit_monitor", "monitor_figure",
           "Generation", "MonitorGate", "Policy", "PolicyEdit", "RelationGate", "generate", "make_policy", "policy_logits",
           "relation_gate", "score_policy", "effects_figure", "guard_report", "export_spec", "load_spec", "replay_spec",
           "save_spec", "spec_policy"]
