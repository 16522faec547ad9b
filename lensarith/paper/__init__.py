"""The paper's figures (Merullo, Eickhoff & Pavlick 2023) on any model: ``reproduce``."""

from .reproduce import ReproduceConfig as ReproduceConfig
from .reproduce import format_summary as format_summary
from .reproduce import reproduce as reproduce
