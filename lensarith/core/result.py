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
from .._io import atomic_directory, atomic_write_bytes, atomic_write_text, check_replaceable, recover  # noqa: F401 (re-exported)
from .._types import Model
from ..models import config_hash

__all__ = ["Result", "atomic_write_text", "atomic_write_bytes", "provenance"]

_KINDS: dict[str, type[Result]] = {}


def weights_id(model: Model) -> str | None:
    """A short hash of the model's first parameter (its first 4096 values): tells two models of one
    architecture apart (None for weights on the meta device, e.g. a remote model)."""
    import hashlib

    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if first is None or first.device.type == "meta":
        return None
    import torch

    with torch.no_grad():
        data = first.detach().flatten()[:4096].float().cpu().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:12]


def provenance(model: Model, **extra: Any) -> dict[str, Any]:
    """Model name, architecture hash, weights hash and any extra fields, for ``Result.meta``."""
    return {"model": getattr(model.cfg, "model_name", "unknown"), "config_hash": config_hash(model),
            "weights": weights_id(model), "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model, **extra}


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
        if not isinstance(self.tensors, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                          for k, v in self.tensors.items()):
            raise LensarithError(f"tensors must be a dict of name -> torch.Tensor, got {type(self.tensors).__name__}")
        if not isinstance(self.axes, dict):
            raise LensarithError(f"axes must be a dict of name -> axis names, got {type(self.axes).__name__}")
        for name, t in self.tensors.items():
            dims = self.axes.get(name)
            if dims is None or len(dims) != t.ndim:
                raise LensarithError(f"tensor {name!r} of shape {tuple(t.shape)} needs one axis name per dimension, got {dims!r}")

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to a directory (replaced atomically); returns the directory.

        Refuses a path that is a file, or a folder holding anything but a saved result's own
        two files (``result.json``, ``tensors.safetensors``): a save never deletes what it
        did not write."""
        if not isinstance(path, (str, os.PathLike)):
            raise LensarithError(f"path must be a folder path (str or Path), got {type(path).__name__}")
        path = Path(path)
        check_replaceable(path, lambda name: name in ("result.json", "tensors.safetensors"), f"a {self.kind} result",
                          error=LensarithError)
        with atomic_directory(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(tmp / "tensors.safetensors"))
            doc = {"kind": self.kind, "axes": {k: list(v) for k, v in self.axes.items()},
                   "labels": self.labels, "meta": self.meta}
            (tmp / "result.json").write_text(json.dumps(doc, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Load a saved result as the subclass registered for its kind."""
        if not isinstance(path, (str, os.PathLike)):
            raise LensarithError(f"path must be a folder path (str or Path), got {type(path).__name__}")
        path = Path(path)
        if not path.exists():
            recover(path)  # a save killed mid-swap (on filesystems without an atomic exchange) is restored
        doc_file, tensor_file = path / "result.json", path / "tensors.safetensors"
        if not doc_file.is_file():
            raise LensarithError(f"{str(path)!r} is not a saved lensarith result (no result.json); save one with result.save(path)")
        try:
            doc = json.loads(doc_file.read_text(encoding="utf-8"))
            kind, axes = doc["kind"], {str(k): tuple(v) for k, v in doc["axes"].items()}
            labels, meta = doc.get("labels", {}), doc.get("meta", {})
            if not isinstance(kind, str) or not isinstance(labels, dict) or not isinstance(meta, dict):
                raise TypeError("kind, labels or meta has the wrong type")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise LensarithError(f"{str(doc_file)!r} is corrupted or not a lensarith result file "
                                 f"({type(exc).__name__}: {exc}); save the result again") from None
        if not tensor_file.is_file():
            raise LensarithError(f"{str(tensor_file)!r} is missing: the result folder is incomplete; save it again")
        try:
            tensors = load_file(str(tensor_file))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
            raise LensarithError(f"{str(tensor_file)!r} is corrupted or truncated ({type(exc).__name__}: {exc}); "
                                 "save the result again") from None
        if set(tensors) != set(axes):
            raise LensarithError(f"{str(path)!r} is inconsistent: tensors {sorted(tensors)} but axes for {sorted(axes)}; "
                                 "save the result again")
        klass = _KINDS.get(kind, Result)
        if cls is not Result and not issubclass(klass, cls):
            raise LensarithError(f"{str(path)!r} holds a {kind!r} result, not {cls.kind!r}")
        out = klass(tensors=tensors, axes=axes, labels=labels, meta=meta)
        out.validate(repr(str(path)))
        return out

    def validate(self, where: str) -> None:
        """Raise a ``LensarithError`` naming ``where`` if a loaded result lacks what its methods read
        (subclasses that read fixed fields override this); the base class accepts any result."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python view (lists) for JSON reports."""
        return {"kind": self.kind, "meta": self.meta, "labels": self.labels,
                "tensors": {k: v.tolist() for k, v in self.tensors.items()},
                "axes": {k: list(v) for k, v in self.axes.items()}}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(self.axes[k])}" for k in self.tensors)
        return f"{type(self).__name__}({shapes})"

