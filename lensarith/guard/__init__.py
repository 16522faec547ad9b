"""The operator's loop: locate the FFN a relation needs, watch it, switch it off, measure the cost, hand it off."""
from ._locate import LocateConfig as LocateConfig
from ._locate import LocateResult as LocateResult
from ._locate import locate as locate
from ._monitor import Monitor as Monitor
from ._monitor import MonitorConfig as MonitorConfig
from ._monitor import MonitorResult as MonitorResult
from ._monitor import fit_monitor as fit_monitor
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
