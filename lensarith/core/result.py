"""Results: tensors with named axes, axis labels and provenance; saved atomically.

A result directory holds ``tensors.safetensors`` and ``result.json`` (kind, axes, labels,
metadata). ``Result.load`` returns the subclass registered for the saved kind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from safetensors.torch import load_file, save_file
from torch import Tensor

from .._errors import LensarithError
from .._io import atomic_directory, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)
from ..models import config_hash

__all__ = ["Result", "atomic_write_text", "atomic_write_bytes", "provenance"]

_KINDS: dict[str, type[Result]] = {}


def provenance(model, **extra: Any) -> dict[str, Any]:
    """Model name, architecture hash and any extra fields, for ``Result.meta``."""
    return {"model": getattr(model.cfg, "model_name", "unknown"), "config_hash": config_hash(model),
            "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model, **extra}


@dataclass
class Result:
    """Named tensors with axis names, labels and metadata.

    Attributes:
        tensors: name -> tensor.
        axes: name -> axis names, one per dimension (e.g. ``("layer", "batch")``).
        labels: axis name -> labels (e.g. ``"component" -> ["embed", "L0H1", ...]``).
        meta: provenance (model, config hash, hook names, dataset, seed, ...).
    """

    kind: ClassVar[str] = "result"
    tensors: dict[str, Tensor]
    axes: dict[str, tuple[str, ...]]
    labels: dict[str, list] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _KINDS[cls.kind] = cls

    def __post_init__(self) -> None:
        for name, t in self.tensors.items():
            dims = self.axes.get(name)
            if dims is None or len(dims) != t.ndim:
                raise LensarithError(f"tensor {name!r} of shape {tuple(t.shape)} needs one axis name per dimension, got {dims!r}")

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to a directory (replaced atomically); returns the directory."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(tmp / "tensors.safetensors"))
            doc = {"kind": self.kind, "axes": {k: list(v) for k, v in self.axes.items()},
                   "labels": self.labels, "meta": self.meta}
            (tmp / "result.json").write_text(json.dumps(doc, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Load a saved result as the subclass registered for its kind."""
        path = Path(path)
        if not (path / "result.json").is_file():
            raise LensarithError(f"{str(path)!r} is not a saved lensarith result (no result.json)")
        doc = json.loads((path / "result.json").read_text())
        tensors = load_file(str(path / "tensors.safetensors"))
        klass = _KINDS.get(doc["kind"], Result)
        if cls is not Result and not issubclass(klass, cls):
            raise LensarithError(f"{str(path)!r} holds a {doc['kind']!r} result, not {cls.kind!r}")
        return klass(tensors=tensors, axes={k: tuple(v) for k, v in doc["axes"].items()},
                     labels=doc.get("labels", {}), meta=doc.get("meta", {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python view (lists) for JSON reports."""
        return {"kind": self.kind, "meta": self.meta, "labels": self.labels,
                "tensors": {k: v.tolist() for k, v in self.tensors.items()},
                "axes": {k: list(v) for k, v in self.axes.items()}}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(self.axes[k])}" for k in self.tensors)
        return f"{type(self).__name__}({shapes})"

