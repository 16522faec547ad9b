"""The real pretrained models shipped in PyPI packages (``REAL_MODELS``) by name, with the placement
options of ``load_model`` (one device, ``device_map``, nnsight); the packages, checksums and
conversion are ``lensarith.models._pypi``'s."""

from __future__ import annotations

from typing import Any

from .._errors import LensarithError
from ._build import new_hooked_transformer
from ._local import load_local
from ._pypi import RealModel, ensure_converted, load_real, torch_dtype
from ._quiet import quiet_hf

__all__ = ["load_real_by_name"]


def load_real_by_name(spec: RealModel, device: str | None, backend: str | None, device_map: Any, n_devices: Any,
                       remote: bool, kwargs: dict[str, Any]):
    """A real model shipped in PyPI packages (``REAL_MODELS``), from its converted cache folder."""
    unknown = sorted(set(kwargs) - {"dtype"})
    if unknown:
        raise LensarithError(
            f"load_model({spec.name!r}) takes device=, dtype=, backend= and device_map= (TransformerLens 4 or "
            f"nnsight); it does not use {', '.join(unknown)}")
    if remote:
        raise LensarithError(f"remote=True runs a model NDIF hosts by its hub id ({spec.official!r}), not the "
                             f"packaged {spec.name!r}")
    if n_devices is not None:
        raise LensarithError(f"{spec.name} loads on one device (device=) or split with device_map= on "
                             "TransformerLens 4 or backend='nnsight'; n_devices= is for hub names")
    if backend == "nnsight":
        from ._nnsight import load_nnsight

        folder = ensure_converted(spec)
        with quiet_hf():
            model = load_nnsight(str(folder), local=lambda d: load_local(d, device), device=device,
                                 device_map=device_map, remote=False,
                                 **({"dtype": torch_dtype(kwargs["dtype"])} if "dtype" in kwargs else {}))
        model.cfg.model_name = spec.name
        model.cfg.default_prepend_bos = spec.prepend_bos
        return model
    if device_map is not None:
        from ._hf import load_hf_split

        model = load_hf_split(ensure_converted(spec), device_map, None)
        model.cfg.model_name = spec.name
        model.cfg.default_prepend_bos = spec.prepend_bos
        return model
    return load_real(spec, device, dtype=kwargs.get("dtype"), build=new_hooked_transformer)
