"""The reproduction's steps: one function per figure, typed inputs -> typed result.

Each step takes the model, the ``ReproduceConfig``, the run's ``Outputs`` (where it writes its
results and PNG) and the results of the steps it reads, and returns a frozen dataclass: the
numbers for ``summary.json`` (``numbers``; the verdicts read them), a ``line`` for the log, and
``render(report)``, its section of the report, drawn from its own fields. ``lensarith.paper.reproduce``
calls them in order and lists their sections in the report's order.
"""

from ._extras import Extras as Extras
from ._extras import extras as extras
from ._fig2 import Fig2 as Fig2
from ._fig2 import fig2 as fig2
from ._fig3 import Fig3 as Fig3
from ._fig3 import TaskData as TaskData
from ._fig3 import fig3 as fig3
from ._fig4 import Fig4 as Fig4
from ._fig4 import fig4 as fig4
from ._fig5 import FIG5_SETS as FIG5_SETS
from ._fig5 import Fig5 as Fig5
from ._fig5 import fig5 as fig5
from ._fig6 import Fig6 as Fig6
from ._fig6 import fig6 as fig6
from ._fig7 import Fig7 as Fig7
from ._fig7 import fig7 as fig7
from ._layers import Layers as Layers
from ._layers import choose_layers as choose_layers
from ._layers import layers as layers
from ._outputs import Outputs as Outputs
from ._outputs import Step as Step
from ._scoring import ScoredItems as ScoredItems
from ._word2vec import Word2vec as Word2vec
from ._word2vec import word2vec as word2vec

__all__ = ["Outputs", "Step", "ScoredItems", "TaskData", "Fig2", "Fig3", "Fig4", "Fig5", "Fig6", "Fig7", "Layers",
           "Word2vec", "Extras", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "layers", "word2vec", "extras",
           "choose_layers", "FIG5_SETS"]
