"""Where a reproduction's steps write (``Outputs``) and what every step returns (``Step``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["Outputs", "Step"]


@dataclass
class Outputs:
    """The staging folder a run writes into, and the paths its summary records.

    Steps save their ``Result`` objects under ``results``, draw their PNGs with ``png`` and
    pass ``progress`` on to the recipes; nothing else passes between them through here.

    Attributes:
        out: the staging folder (it replaces ``final`` as a whole at the end of the run).
        final: the output folder the summary's paths point into.
        progress: show progress bars.
        files: every figure written so far, ``{name: final path}`` (``summary["files"]``).
    """

    out: Path
    final: Path
    progress: bool | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def figs(self) -> Path:
        return self.out / "figures"

    @property
    def results(self) -> Path:
        return self.out / "results"

    def png(self, fig, name: str) -> Path:
        """Write ``fig`` as ``figures/<name>.png``, record it in ``files``, return the staged path."""
        from ...viz import plots

        path = plots.save_png(fig, self.figs / f"{name}.png")
        self.files[name] = str(self.final / path.relative_to(self.out))
        return path


@runtime_checkable
class Step(Protocol):
    """What a step returns: a frozen dataclass with the step's numbers for ``summary.json``, a
    line for the log, and a section of the report drawn from its own fields."""

    name: ClassVar[str]  # its key in summary["timings_s"] (and summary["figures"] for a figure)
    numbers: dict[str, Any]

    def line(self) -> str: ...  # one line for the log ("" for none)

    def render(self, report) -> None: ...

