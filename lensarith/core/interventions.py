"""Interventions at sites, compiled to TransformerLens ``(hook_name, hook_fn)`` pairs.

Every intervention is a frozen dataclass with a ``site``. ``compile_hooks`` turns a list of
them into forward hooks for one batch (per-row positions resolved against the batch's
lengths); ``intervene`` is a context manager that adds them and always removes them, also
when the forward raises; ``Capture`` records only the slices a readout needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from .backends import backend_of
from .batch import Batch
from .sites import Site

__all__ = ["Intervention", "Replace", "Add", "Ablate", "Patch", "Hook", "Capture", "compile_hooks", "intervene"]

HookFn = Callable[..., Tensor | None]


def _positions(site: Site, batch: Batch | None, act: Tensor) -> Tensor | None:
    """Per-row positions of the site for this activation, or None for all positions."""
    if site.position is None:
        return None
    if batch is None:
        if site.position == "last" or site.position < 0:
            pos = act.shape[1] + (-1 if site.position == "last" else site.position)
        else:
            pos = site.position
        if not 0 <= pos < act.shape[1]:
            raise LensarithError(f"{site}: position {site.position} is out of range for {act.shape[1]} positions")
        return torch.full((act.shape[0],), pos, dtype=torch.long, device=act.device)
    if len(batch) != act.shape[0]:
        raise LensarithError(f"{site}: the activation has {act.shape[0]} rows but the batch has {len(batch)}")
    return batch.positions(site.position).to(act.device)


def _index(site: Site, pos: Tensor | None, act: Tensor) -> tuple:
    rows = torch.arange(act.shape[0], device=act.device)
    if site.kind == "pattern":
        if pos is not None:
            raise LensarithError("pattern sites take position=None (they are [batch, head, query, key])")
        return (slice(None), site.head) if site.head is not None else (slice(None),)
    if pos is None:
        return (slice(None), slice(None), site.head) if site.head is not None else (slice(None),)
    return (rows, pos, site.head) if site.head is not None else (rows, pos)


def _edit(site: Site, batch: Batch | None, fn: Callable[[Tensor], Tensor]) -> tuple[str, HookFn]:
    def hook(act: Tensor, hook) -> Tensor:
        idx = _index(site, _positions(site, batch, act), act)
        out = act.clone()
        current = out[idx]
        try:
            new = fn(current)
            out[idx] = new.to(out.dtype).expand_as(current) if new.shape != current.shape else new.to(out.dtype)
        except RuntimeError as exc:
            raise LensarithError(
                f"cannot apply the intervention at {site.hook_name}: slice shape {tuple(current.shape)}, "
                f"value shape {tuple(new.shape) if 'new' in locals() else '?'}"
            ) from exc
        return out

    return site.hook_name, hook


def _check_site(site, what: str) -> None:
    if not isinstance(site, Site):
        raise LensarithError(f"{what} needs a lensarith.Site as its site, e.g. Site('mlp_out', 5, 'last'); got {site!r}")


def _check_tensor(t, what: str) -> None:
    if not isinstance(t, Tensor) or not t.is_floating_point():
        got = f"a {t.dtype} tensor" if isinstance(t, Tensor) else type(t).__name__
        raise LensarithError(f"{what} must be a float tensor (broadcastable to the site's slice), got {got}")


class Intervention:
    """Base class: subclasses define ``site`` and ``hook(batch)``."""

    site: Site

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Replace(Intervention):
    """Replace the site's slice with ``value`` (broadcast, e.g. a ``[d_model]`` vector)."""

    site: Site
    value: Tensor

    def __post_init__(self) -> None:
        _check_site(self.site, "Replace")
        _check_tensor(self.value, "Replace value")

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        return _edit(self.site, batch, lambda cur: self.value.to(cur.device))


@dataclass(frozen=True)
class Add(Intervention):
    """Add ``scale * vector`` to the site's slice (a negative scale subtracts)."""

    site: Site
    vector: Tensor
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_site(self.site, "Add")
        _check_tensor(self.vector, "Add vector")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or not math.isfinite(self.scale):
            raise LensarithError(f"Add scale must be a finite number, got {self.scale!r}")

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        return _edit(self.site, batch, lambda cur: cur + self.scale * self.vector.to(cur.device))


@dataclass(frozen=True)
class Ablate(Intervention):
    """Zero-ablate the slice, or mean-ablate it with a given ``mean`` (broadcastable)."""

    site: Site
    mode: str = "zero"  # "zero" or "mean"
    mean: Tensor | None = None

    def __post_init__(self) -> None:
        _check_site(self.site, "Ablate")
        if self.mode not in ("zero", "mean") or isinstance(self.mode, bool):
            raise LensarithError(f"Ablate mode must be 'zero' or 'mean', got {self.mode!r}")
        if self.mode == "mean" and self.mean is None:
            raise LensarithError("Ablate(mode='mean') needs mean=<tensor>, e.g. the activation averaged over a dataset")
        if self.mean is not None:
            _check_tensor(self.mean, "Ablate mean")

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        if self.mode == "zero":
            return _edit(self.site, batch, torch.zeros_like)
        return _edit(self.site, batch, lambda cur: self.mean.to(cur.device))


@dataclass(frozen=True)
class Patch(Intervention):
    """Copy the site's slice from another run's activation ``source`` (same shape as the hook's)."""

    site: Site
    source: Tensor

    def __post_init__(self) -> None:
        _check_site(self.site, "Patch")
        _check_tensor(self.source, "Patch source")

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        site = self.site

        def hook(act: Tensor, hook) -> Tensor:
            if self.source.shape != act.shape:
                raise LensarithError(
                    f"Patch at {site.hook_name}: source shape {tuple(self.source.shape)} differs from the "
                    f"activation's {tuple(act.shape)}; clean and corrupted prompts must align token by token"
                )
            idx = _index(site, _positions(site, batch, act), act)
            out = act.clone()
            out[idx] = self.source.to(act.device, act.dtype)[idx]
            return out

        return site.hook_name, hook


@dataclass(frozen=True)
class Hook(Intervention):
    """A raw TransformerLens hook function at a site, ``fn(act, hook) -> new act | None``.

    For engines that patch many rows at once (``lensarith.patching``); recipes use the
    typed interventions above.
    """

    site: Site
    fn: HookFn

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        return self.site.hook_name, self.fn


@dataclass
class Capture:
    """Record the slices of some sites during a forward (only what a readout needs).

    After the forward, ``captured[site]`` holds the slice: ``[batch, d]`` for a positioned
    site, the whole activation otherwise. ``detach=False`` keeps the graph (for gradients).
    """

    sites: Sequence[Site]
    detach: bool = True
    captured: dict[Site, Tensor] = field(default_factory=dict)

    def hooks(self, batch: Batch | None) -> list[tuple[str, HookFn]]:
        out = []
        for site in self.sites:
            def hook(act: Tensor, hook, site: Site = site) -> Tensor | None:
                idx = _index(site, _positions(site, batch, act), act)
                # the whole activation is kept as itself: a view of it would not be in the graph
                value = act if idx == (slice(None),) else act[idx]
                self.captured[site] = value.detach() if self.detach else value
                # With gradients, hand the activation back: a bridge passes hooks a reshaped view
                # (e.g. hook_z as [batch, pos, head, d_head]) and continues with what the hook
                # returns, so the captured tensor is the one the rest of the forward uses.
                return None if self.detach else act
            out.append((site.hook_name, hook))
        return out


def compile_hooks(model: Model, interventions: Sequence[Intervention], batch: Batch | None = None) -> list[tuple[str, HookFn]]:
    """Validate interventions against the model (or its backend) and compile them to forward hooks."""
    hooks = []
    backend = backend_of(model)
    for item in interventions:
        if not isinstance(item, Intervention):
            raise LensarithError(f"interventions must be lensarith interventions (Replace, Add, Ablate, Patch, Hook), got {type(item).__name__}")
        site = item.site.resolve(backend.cfg)
        if not backend.has_hook(site.hook_name):
            raise LensarithError(backend.why_no_hook(site.hook_name))
        resolved = type(item)(**{**item.__dict__, "site": site})
        hooks.append(resolved.hook(batch))
    return hooks


@contextmanager
def intervene(model: Model, interventions: Sequence[Intervention] = (), batch: Batch | None = None,
              extra_hooks: Sequence[tuple[str, HookFn]] = ()) -> Iterator:
    """Add interventions (and any raw hooks) for the duration of a ``with`` block.

    Hooks are removed on exit, also when the block raises; hooks the user added before
    are kept.

    Example:
        >>> with intervene(model, [Ablate(Site("mlp_out", 1))]):
        ...     n_hooks = len(model.blocks[1].hook_mlp_out._forward_hooks)
        >>> n_hooks, len(model.blocks[1].hook_mlp_out._forward_hooks)
        (1, 0)
    """
    backend = backend_of(model)
    hooks = compile_hooks(backend, interventions, batch) + list(extra_hooks)
    with backend.hooks(hooks):
        yield model
