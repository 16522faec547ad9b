"""The operator's loop: locate the FFN a relation needs, watch it, switch it off, measure the cost, hand it off."""
from ._locate import LocateConfig as LocateConfig
from ._locate import LocateResult as LocateResult
from ._locate import locate as locate
from ._monitor import Monitor as Monitor
from ._monitor import MonitorConfig as MonitorConfig
from ._monitor import MonitorResult as MonitorResult
from ._monitor import fit_monitor as fit_monitor
