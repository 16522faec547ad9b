"""The one execution path: chunked, batched forwards with interventions, captures and read positions.

Every recipe runs the model through ``run`` (``collect`` and ``run_with_interventions`` are
thin wrappers). One call

- splits the batch into chunks of ``batch_size`` rows, fewer where the chunk would pass the
  token budget ``max_tokens`` (rows x copies x padded width; sorted by length, so a chunk
  carries little padding; results come back in the batch's order);
- lays *groups* of interventions along the batch axis: each group gets its own copy of the
  chunk in the same forward, and its hooks touch only its rows; a group with
  ``start_layer`` starts at that layer from the unmodified run's residual, so removing the
  top k of n MLPs costs k/n of a forward;
- captures only the sites asked for (a slice per row for positioned sites, the whole
  activation, zero-padded to the batch's width, otherwise);
- reads the residual after the last block (or ``stop_at_layer``) at one position per row;
- runs with gradients on or off, and can start from a given residual at a given layer;
- hands each chunk to an optional ``keep`` function, so a readout keeps only what it needs
  (ranks, sums) instead of every captured vector.

Hooks are always removed, also when the forward raises; the model is left unchanged. The
model's backend is resolved once per call (a recipe may pass the backend itself, ``backend_of``)
and asked for what it supports (``Capability``): starting mid-stack, gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError, check_int
from .._types import Model
from .backends import Backend, Capability, backend_of
from .batch import Batch
from .interventions import Capture, HookFn, Intervention, compile_hooks
from .progress import progress_bar
from .readout import logits as readout_logits
from .sites import Site

__all__ = ["Group", "Outputs", "run", "collect", "run_with_interventions", "can_resume", "has_hooks", "MAX_TOKENS"]

#: token positions one forward holds by default (rows x copies x padded width): the memory
#: budget every recipe runs under (Gemma 3 270M at 8192 tokens: a few hundred MB of activations)
MAX_TOKENS = 8192


@dataclass(frozen=True)
class Group:
    """The interventions of one copy of the batch in a shared forward.

    Attributes:
        interventions: applied to this copy's rows only.
        start_layer: start this copy at that layer from the unmodified run's residual
            (valid when the interventions touch only that layer and later ones).
    """

    interventions: Sequence[Intervention] = ()
    start_layer: int | None = None


@dataclass
class Outputs:
    """What a run returns, rows in the batch's order.

    Attributes:
        captured: site -> slice ``[batch, ...]`` (``[group, batch, ...]`` with groups).
        final: the residual where the forward stopped, at the read positions:
            ``[batch, d_model]`` (``[group, batch, d_model]`` with groups), or None.
        kept: what the ``keep`` function returned, concatenated over chunks.
    """

    captured: dict[Site, Tensor] = field(default_factory=dict)
    final: Tensor | None = None
    kept: dict[str, Tensor] = field(default_factory=dict)


Keep = Callable[[Outputs, Batch], dict[str, Tensor]]


def has_hooks(model: Model) -> bool:
    """Whether any hook (TransformerLens's or a plain PyTorch one) is attached to the model (or
    its backend's model), other than those the backend itself owns (a bridge's capture hooks on
    its norm modules)."""
    return backend_of(model).has_user_hooks()


def can_resume(model: Model) -> bool:
    """Whether a run may start mid-stack from a cached residual: only where that saves compute
    (``Capability.START_MID_STACK``: ``HookedTransformer``; a bridge runs every block anyway), not
    for shortformer positional embeddings (which ``start_at_layer`` cannot rebuild), nor when hooks
    are already on the model (a hook at the start layer would apply twice)."""
    backend = backend_of(model)
    return (backend.supports(Capability.START_MID_STACK) and backend.cfg.positional_embedding_type != "shortformer"
            and not backend.has_user_hooks())


def _as_group(g) -> Group:
    if isinstance(g, Group):
        return g
    if isinstance(g, Intervention):
        raise LensarithError("groups must be a list of intervention lists (or Group), one per copy of the batch")
    return Group(tuple(g))


def _row_hooks(backend: Backend, groups: Sequence[Group], chunk: Batch) -> list[tuple[str, HookFn]]:
    """One hook per hook point; group ``g``'s interventions edit rows ``g*b:(g+1)*b`` only."""
    b = len(chunk)
    per_name: dict[str, list[tuple[int, HookFn]]] = {}
    for g, group in enumerate(groups):
        for name, fn in compile_hooks(backend, group.interventions, chunk):
            per_name.setdefault(name, []).append((g, fn))

    def make(items: list[tuple[int, HookFn]]) -> HookFn:
        def hook(act: Tensor, hook) -> Tensor:
            out = act.clone()
            for g, fn in items:
                new = fn(out[g * b:(g + 1) * b], hook)
                if new is not None:
                    out[g * b:(g + 1) * b] = new
            return out

        return hook

    return [(name, make(items)) for name, items in per_name.items()]


def _leaf(act: Tensor, hook) -> Tensor:
    return act.detach().requires_grad_(True)


def _forward(backend: Backend, chunk: Batch, groups: Sequence[Group], sites: Sequence[Site], *, x0: Tensor | None,
             start_layer: int | None, stop: int, read: Tensor | None, grad: bool) -> tuple[dict[Site, Tensor], Tensor | None]:
    """One forward of ``len(groups)`` copies of ``chunk``; returns captures and read residuals (tiled rows)."""
    k = len(groups)
    tiled = chunk if k == 1 else chunk.tile(k)
    if k == 1:
        hooks = compile_hooks(backend, groups[0].interventions, chunk)
    else:
        hooks = _row_hooks(backend, groups, chunk)
    cap = Capture(sites, detach=not grad)
    extra = list(hooks) + cap.hooks(tiled)
    if grad:
        extra.insert(0, (Site("resid_pre", start_layer or 0).hook_name, _leaf))
    device = backend.cfg.device
    with torch.set_grad_enabled(grad), backend.hooks(extra):
        if x0 is None:
            out = backend.forward(tiled.tokens.to(device), stop=stop)
        else:
            x = x0 if k == 1 else x0.repeat(k, *([1] * (x0.ndim - 1)))
            out = backend.forward_from(x.to(device), start=start_layer, stop=stop)
    final = None
    if read is not None:
        pos = (read if k == 1 else read.repeat(k)).to(out.device)
        final = out[torch.arange(out.shape[0], device=out.device), pos]
    # split over devices (device_map), each slice comes to the model's first device: read, not the model
    return {s: cap.captured[s].to(device) for s in sites}, final


def _stream_sites(backend: Backend) -> list[Site]:
    """The residual stream's writers and states in forward order (for locating a non-finite value)."""
    cfg = backend.cfg
    sites = [Site("embed")]
    if cfg.positional_embedding_type == "standard":
        sites.append(Site("pos_embed"))
    for layer in range(cfg.n_layers):
        sites += [Site("resid_pre", layer), Site("attn_out", layer), Site("resid_mid", layer)]
        if not cfg.attn_only:
            sites += [Site("mlp_out", layer)]
        sites.append(Site("resid_post", layer))
    return [s for s in sites if backend.has_hook(s.hook_name)]


def _raise_non_finite(backend: Backend, chunk: Batch, group: Group, g: int, x0: Tensor | None, start_layer: int | None,
                      row_ids: list[int]) -> None:
    """Rerun one group of a chunk capturing the whole residual stream; raise naming the first
    site, layer and rows where a NaN or inf appears."""
    where = "the model's output"
    rows: list[int] = []
    if x0 is not None and not bool(torch.isfinite(x0).all()):
        where = f"the starting residual (layer {start_layer})"
        rows = (~torch.isfinite(x0)).flatten(1).any(-1).nonzero().flatten().tolist()
    else:
        sites = [s for s in _stream_sites(backend) if start_layer is None or s.layer is None or s.layer >= start_layer]
        if start_layer is not None:
            sites = [s for s in sites if s.layer is not None]
        with torch.no_grad():
            got, _ = _forward(backend, chunk, [group], sites, x0=x0, start_layer=start_layer, stop=backend.cfg.n_layers,
                              read=None, grad=False)
        for site in sites:
            t = got[site]
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                where = f"{site.hook_name}" + (f" (layer {site.layer})" if site.layer is not None else "")
                rows = bad.flatten(1).any(-1).nonzero().flatten().tolist()
                break
    names = [chunk.examples[r].prompt[-40:] for r in rows[:3]] if chunk.examples else []
    raise LensarithError(
        f"non-finite values (NaN or inf) first appear at {where}"
        + (f" in group {g}" if g else "") + (f" for examples {[row_ids[r] for r in rows[:8]]}" if rows else "")
        + (f" (e.g. {names})" if names else "")
        + ": no score is computed from them; check the vectors and values put in there, the model's weights, and "
        "the dtype (fp16 overflows)"
    )


def _pos_dims(site: Site) -> tuple[int, ...]:
    """The position axes of a whole activation at ``site`` (padded across chunks)."""
    return (2, 3) if site.kind == "pattern" else (1,)


def _pad(t: Tensor, dims: tuple[int, ...], width: int) -> Tensor:
    pad: list[int] = []
    for d in range(t.ndim - 1, -1, -1):
        pad += [0, width - t.shape[d]] if d in dims else [0, 0]
    return torch.nn.functional.pad(t, pad) if any(pad) else t


def _cat(parts: list[Tensor], dim: int, inverse: Tensor | None) -> Tensor:
    out = torch.cat(parts, dim=dim) if len(parts) > 1 else parts[0]
    if inverse is None:
        return out
    return out.index_select(dim, inverse.to(out.device))


def _run_chunk(backend: Backend, chunk: Batch, gs: Sequence[Group], sites: Sequence[Site], late: set[int], *,
               x0: Tensor | None, start, stop: int, read: Tensor | None, grad: bool, row_ids: list[int]
               ) -> tuple[dict[Site, Tensor], list[Tensor | None]]:
    """Every group on one chunk: the groups that start at the embedding share one forward (an
    untouched one also caches the residuals where later groups start), then one forward per start
    layer. Returns the captures (tiled rows) and each group's read residuals; raises on NaN/inf."""
    b, k = len(chunk), len(gs)
    plain = [i for i, g in enumerate(gs) if g.start_layer is None]
    base_in_plain = next((i for i in plain if not gs[i].interventions), None)
    cap: dict[Site, Tensor] = {}
    fin: list[Tensor | None] = [None] * k
    starts: dict[int, Tensor] = {}
    need = [Site("resid_pre", layer) for layer in sorted(late)]
    if plain:
        extra = need if base_in_plain is not None else []
        got, f = _forward(backend, chunk, [gs[i] for i in plain], list(sites) + extra, x0=x0,
                          start_layer=None if start is None else start[0], stop=stop, read=read, grad=grad)
        j = plain.index(base_in_plain) if extra else 0
        for s in extra:
            starts[s.layer] = got.pop(s)[j * b:(j + 1) * b]
        cap = got
        for j, i in enumerate(plain):
            fin[i] = None if f is None else f[j * b:(j + 1) * b]
    if late and not starts:
        # resid_pre of a layer fires inside that block: run through the deepest start layer's block
        got, _ = _forward(backend, chunk, [Group()], need, x0=None, start_layer=None,
                          stop=min(max(late) + 1, backend.cfg.n_layers), read=None, grad=grad)
        starts = {s.layer: got[s] for s in need}
    for layer in sorted(late):
        members = [i for i, g in enumerate(gs) if g.start_layer == layer]
        _, f = _forward(backend, chunk, [gs[i] for i in members], [], x0=starts[layer], start_layer=layer, stop=stop,
                        read=read, grad=grad)
        for j, i in enumerate(members):
            fin[i] = None if f is None else f[j * b:(j + 1) * b]
    for i, f in enumerate(fin):
        rows = slice(plain.index(i) * b, (plain.index(i) + 1) * b) if i in plain else None
        bad_capture = rows is not None and any(not bool(torch.isfinite(t[rows]).all())
                                               for t in cap.values() if t.is_floating_point())
        if bad_capture or (f is not None and not bool(torch.isfinite(f).all())):
            layer = gs[i].start_layer
            _raise_non_finite(backend, chunk, gs[i], i, starts.get(layer) if layer is not None else x0,
                              layer if layer is not None else (start[0] if start else None), row_ids)
    return cap, fin


def run(
    model: Model,
    batch: Batch,
    *,
    capture: Sequence[Site] = (),
    interventions: Sequence[Intervention] = (),
    groups: Sequence[Group | Sequence[Intervention]] | None = None,
    start: tuple[int, Float[Tensor, "batch pos d_model"]] | None = None,
    stop_at_layer: int | None = None,
    read: int | str | Tensor | None = None,
    grad: bool = False,
    keep: Keep | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = MAX_TOKENS,
    progress: bool | None = None,
    desc: str = "forward",
) -> Outputs:
    """Run ``batch`` through the model in chunks: the one forward every recipe uses.

    Args:
        model: a HookedTransformer (TransformerLens 3.x), a TransformerBridge (4.x), any model
            with a backend, or its backend (``backend_of(model)``, which a recipe resolves once).
        batch: the prompts (``as_batch``/``tokenize``).
        capture: sites to record (positioned sites give ``[batch, ...]`` slices).
        interventions: applied to every row (a single copy of the batch).
        groups: instead of ``interventions``, one copy of the batch per group; outputs get a
            leading ``group`` axis.
        start: ``(layer, resid [batch, pos, d_model])``: start every row at ``layer`` from
            this residual instead of the tokens.
        stop_at_layer: stop before this block (default: after the last block).
        read: the position read per row for ``Outputs.final`` (``"last"``, an offset, an
            absolute position or a ``[batch]`` tensor); None reads nothing.
        grad: keep the graph (captures are then not detached).
        keep: ``fn(chunk_outputs, chunk) -> {name: per-row tensor}`` run on every chunk;
            its results are concatenated over rows (dimension 1 with groups, else 0). It sees
            the chunk's activations at the chunk's own width (``chunk.tokens.shape[1]``), as
            the forward made them (gradients flow to them with ``grad=True``).
        batch_size: rows per forward before tiling (None: the whole batch at once, within
            ``max_tokens``).
        max_tokens: token positions per forward (rows x groups x the batch's padded width),
            the memory budget; a chunk has at least one row. None: no budget.
        progress: show a progress bar (default: more than 4 chunks, on a terminal, after 1 s).
        desc: the progress bar's label.

    Returns:
        ``Outputs`` (``captured``, ``final``, ``kept``), rows in the batch's order.
    """
    backend = backend_of(model)
    cfg = backend.cfg
    stop = cfg.n_layers if stop_at_layer is None else stop_at_layer
    grouped = groups is not None
    if grouped and interventions:
        raise LensarithError("give interventions or groups, not both")
    gs = [_as_group(g) for g in groups] if grouped else [Group(tuple(interventions))]
    if not gs:
        raise LensarithError("groups is empty: give at least one group of interventions")
    sites = [s.resolve(cfg) for s in capture]
    late = {g.start_layer for g in gs if g.start_layer is not None}
    if late and (sites or start is not None):
        raise LensarithError("internal: groups with a start layer take no captures and no explicit start")
    if late and not can_resume(backend):  # run them from the tokens: the layers before the start are unmodified anyway
        gs = [Group(g.interventions) for g in gs]
        late = set()
    read_pos = None if read is None else (read if isinstance(read, Tensor) else batch.positions(read))
    size = len(batch) if batch_size is None else batch_size
    check_int(size, "batch_size", minimum=1)
    if max_tokens is not None:
        check_int(max_tokens, "max_tokens", minimum=1)
        size = min(size, max(1, max_tokens // (batch.tokens.shape[1] * len(gs))))
    if grad and not backend.supports(Capability.GRADIENTS):
        raise LensarithError(backend.why_not(Capability.GRADIENTS))
    order = torch.argsort(batch.lengths, stable=True) if size < len(batch) else None
    index = [order[i:i + size] for i in range(0, len(batch), size)] if order is not None else [None]
    width = batch.tokens.shape[1]
    dim = 1 if grouped else 0
    parts: dict[Site, list[Tensor]] = {s: [] for s in sites}
    finals: list[Tensor] = []
    kept: dict[str, list[Tensor]] = {}
    for idx in progress_bar(index, desc=desc, show=progress, enough=len(index) > 4):
        chunk = batch if idx is None else batch.take(idx)
        b, w = len(chunk), chunk.tokens.shape[1]
        rd = None if read_pos is None else (read_pos if idx is None else read_pos[idx])
        x0 = None
        if start is not None:
            x0 = start[1] if idx is None else start[1][idx.to(start[1].device)]
            x0 = x0[:, :w]
        cap, fin = _run_chunk(backend, chunk, gs, sites, late, x0=x0, start=start, stop=stop, read=rd, grad=grad,
                              row_ids=list(range(b)) if idx is None else idx.tolist())
        k = len(gs)
        chunk_out = Outputs()
        for s, t in cap.items():
            t = t.view(k, b, *t.shape[1:]) if grouped else t
            if s.position is None and keep is None:  # ``keep`` reads the chunk's own tensors
                t = _pad(t, tuple(d + dim for d in _pos_dims(s)), width)
            chunk_out.captured[s] = t
        if read_pos is not None:
            chunk_out.final = torch.stack(fin) if grouped else fin[0]
        if keep is not None:
            for name, t in keep(chunk_out, chunk).items():
                kept.setdefault(name, []).append(t)
            continue
        for s, t in chunk_out.captured.items():
            parts[s].append(t)
        if chunk_out.final is not None:
            finals.append(chunk_out.final)
    inverse = None
    if order is not None:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
    out = Outputs()
    out.kept = {name: _cat(v, dim, inverse) for name, v in kept.items()}
    out.captured = {s: _cat(v, dim, inverse) for s, v in parts.items() if v}
    out.final = _cat(finals, dim, inverse) if finals else None
    return out


def collect(
    model: Model,
    batch: Batch,
    sites: Sequence[Site],
    *,
    interventions: Sequence[Intervention] = (),
    stop_at_layer: int | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    desc: str = "forward",
) -> dict[Site, Tensor]:
    """Run ``batch`` in chunks and return the captured slices, concatenated over rows.

    Positioned sites give ``[batch, ...]`` slices; whole activations (``position=None``) come
    zero-padded to the batch's width when prompts differ in length. The forward stops at
    ``stop_at_layer`` (default: after the last block, before the unembedding).

    Example:
        >>> batch = tokenize(model, build_prompts("capitals", n=3))
        >>> got = collect(model, batch, [Site("mlp_out", 1, "last")])
        >>> got[Site("mlp_out", 1, "last")].shape
        torch.Size([3, 32])
    """
    sites = [s.resolve(model.cfg) for s in sites]
    stop = model.cfg.n_layers if stop_at_layer is None else stop_at_layer
    return run(model, batch, capture=sites, interventions=interventions, stop_at_layer=stop, batch_size=batch_size,
               progress=progress, desc=desc).captured


def run_with_interventions(model: Model, batch: Batch, interventions: Sequence[Intervention] = (), *,
                           positions: Int[Tensor, " batch"] | None = None, batch_size: int | None = None,
                           max_tokens: int | None = MAX_TOKENS) -> Float[Tensor, "batch d_vocab"]:
    """Run the model with interventions and return the logits at per-row ``positions``
    (default: each row's last real token), through the final norm and the unembedding.

    The batch runs in chunks of ``batch_size`` rows within ``max_tokens`` token positions per
    forward (see ``run``); chunked and whole-batch results agree to float rounding.

    Example:
        >>> batch = tokenize(model, build_prompts("capitals", n=2))
        >>> plain = run_with_interventions(model, batch)
        >>> ablated = run_with_interventions(model, batch, [Ablate(Site("mlp_out", 1))])
        >>> plain.shape == (2, model.cfg.d_vocab), bool((plain != ablated).any())
        (True, True)
    """
    out = run(model, batch, interventions=interventions, read="last" if positions is None else positions,
              batch_size=batch_size, max_tokens=max_tokens)
    with torch.no_grad():
        return readout_logits(model, out.final)
