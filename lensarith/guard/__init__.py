"""The operator's loop: locate the FFN a relation needs, watch it, switch it off, measure the cost, hand it off."""
from ._locate import LocateConfig as LocateConfig
from ._locate import LocateResult as LocateResult
from ._locate import locate as locate
