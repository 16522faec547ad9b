"""The one readout: final norm (every ``normalization_type``), unembedding, logit soft cap, ranks.

Every recipe reads logits through these functions, so a model without a final norm
(``normalization_type=None``), a folded one (``LNPre``), an RMS one and one with an output
soft cap are all read the same way, and a non-finite logit is never scored as a rank.

- ``final_norm``: the model's final norm (identity when it has none), any leading shape.
- ``frozen_final_norm``: the final norm as a linear map with the scale frozen from a
  residual (for attributions that must sum to the logit).
- ``unembed``: normed residuals -> logits, all columns or chosen ones per row, soft cap applied.
- ``logits``: ``unembed(final_norm(resid))``.
- ``directions`` / ``vocab_vectors``: unembedding columns and embedding rows of tokens.
- ``rank`` / ``reciprocal_rank``: how many tokens score higher, checked for finite logits.
- ``scan``: every per-row statistic a readout asks for (ranks, logits and log-probs of given
  tokens, top-k) in one pass over the vocabulary, in column chunks of bounded memory.

Each function takes the model or its backend (``backend_of(model)``, which a recipe resolves
once and passes down).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from .backends import backend_of

__all__ = ["final_norm", "frozen_final_norm", "unembed", "logits", "directions", "vocab_vectors", "rank",
           "reciprocal_rank", "check_finite", "soft_cap", "scan", "Scan", "SCAN_ELEMENTS"]

_NORMS = ("LN", "LNPre", "RMS", "RMSPre")


def _norm_type(model) -> str | None:
    norm = model.cfg.normalization_type
    if norm is not None and norm not in _NORMS:
        raise LensarithError(f"unsupported final normalization {norm!r}; lensarith reads {', '.join(_NORMS)} or None")
    return norm


def final_norm(model: Model, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
    """The model's final norm (``ln_final``) on residuals of any leading shape; identity without one."""
    if _norm_type(model) is None:
        return x
    backend = backend_of(model)
    if x.ndim == 3:
        return backend.final_norm(x)
    flat = x.reshape(-1, 1, x.shape[-1])
    return backend.final_norm(flat).reshape(x.shape)


def frozen_final_norm(model: Model, stack: Float[Tensor, "component batch d_model"], resid: Float[Tensor, "batch d_model"]
                      ) -> tuple[Float[Tensor, "component batch d_model"], Float[Tensor, "batch d_model"]]:
    """The final norm as a linear map, its scale frozen from ``resid``.

    Returns ``(normed_stack, bias)`` with ``normed_stack.sum(0) + bias == final_norm(resid)``
    when ``stack`` sums to ``resid``: LayerNorm centres each component, divides by the
    residual's scale and applies the weight; the bias is the LayerNorm bias (zero for
    LNPre, RMS, RMSPre and no norm).
    """
    norm = _norm_type(model)
    if norm is None:
        return stack, torch.zeros_like(resid)
    if norm in ("LN", "LNPre"):
        centred = stack - stack.mean(-1, keepdim=True)
        r = resid - resid.mean(-1, keepdim=True)
    else:
        centred, r = stack, resid
    scale = (r.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    normed = centred / scale
    bias = torch.zeros_like(resid)
    if norm in ("LN", "RMS"):
        w, b = backend_of(model).final_norm_weights()
        normed = normed * w
        if norm == "LN" and b is not None:
            bias = bias + b
    return normed, bias


def soft_cap(model: Model, logits: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """``cap * tanh(logits / cap)`` where the model has an output soft cap (Gemma-style)."""
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    if cap is None or cap <= 0:
        return logits
    return cap * torch.tanh(logits / cap)


def unembed(model: Model, x: Float[Tensor, "*rows d_model"], columns: Int[Tensor, "batch k"] | None = None, *,
            capped: bool = True) -> Float[Tensor, "*rows vocab"]:
    """Logits of normed residuals: ``[*rows, d_vocab]``, or ``[..., batch, k]`` for per-row ``columns``
    (``vocab`` is ``d_vocab``, or ``k`` with ``columns``).

    With ``columns`` (ids ``[batch, k]``), ``x`` is ``[batch, d_model]`` or
    ``[variant, batch, d_model]`` and only those logits are computed. ``capped=False``
    leaves out the output soft cap (for attributions, which are linear before it).
    """
    cap = (lambda t: soft_cap(model, t)) if capped else (lambda t: t)  # noqa: E731
    backend = backend_of(model)
    if columns is not None:
        squeeze = x.ndim == 2
        x3 = x[None] if squeeze else x
        W_U = backend.W_U  # on the unembedding's device (a split model's last one); x comes to it and back
        cols = columns.to(W_U.device)
        out = torch.einsum("vbd,dbk->vbk", x3.to(W_U.device), W_U[:, cols]) + backend.b_U[cols].to(W_U.device)
        out = cap(out).to(x.device)
        return out[0] if squeeze else out
    if x.dtype != backend.W_U.dtype:  # e.g. float32 residuals kept by a result, bf16 weights
        x = x.to(backend.W_U.dtype)
    if x.ndim == 2:
        out = backend.unembed(x[:, None])[:, 0]
    elif x.ndim == 3:
        out = backend.unembed(x)
    else:
        out = backend.unembed(x.reshape(-1, 1, x.shape[-1])).reshape(*x.shape[:-1], -1)
    return cap(out)


def logits(model: Model, resid: Float[Tensor, "*rows d_model"], columns: Int[Tensor, "batch k"] | None = None
           ) -> Float[Tensor, "*rows vocab"]:
    """``unembed(final_norm(resid))``: what the model outputs for residuals after its last block."""
    backend = backend_of(model)
    return unembed(backend, final_norm(backend, resid), columns)


def directions(model: Model, ids: Int[Tensor, " n"]) -> tuple[Float[Tensor, "n d_model"], Float[Tensor, " n"]]:
    """Unembedding columns ``[n, d_model]`` and biases ``[n]`` of token ids (soft cap not applied)."""
    backend = backend_of(model)
    W_U = backend.W_U
    ids = ids.to(W_U.device)
    return W_U[:, ids].T, backend.b_U[ids]


def vocab_vectors(model: Model, space: str = "unembed") -> Float[Tensor, "d_vocab d_model"]:
    """Every token's vector: unembedding columns (``"unembed"``) or embedding rows (``"embed"``)."""
    if space == "unembed":
        return backend_of(model).W_U.T
    if space == "embed":
        return backend_of(model).W_E
    raise LensarithError(f"space must be 'unembed' or 'embed', got {space!r}")


def check_finite(t: Tensor, where: str) -> None:
    """Raise ``LensarithError`` naming ``where`` and the first rows when ``t`` holds NaN or inf."""
    if t.is_floating_point() and t.numel() and bool(torch.isfinite(t.sum())):
        return  # a NaN or inf anywhere makes the sum non-finite; one pass instead of a mask (logits: 40x faster)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        rows = bad.reshape(bad.shape[0], -1).any(-1).nonzero().flatten().tolist() if t.ndim else []
        raise LensarithError(
            f"non-finite values (NaN or inf) in {where}" + (f" for rows {rows[:8]}" if rows else "")
            + ": a rank or score of them would be meaningless; check the model's weights, the vectors put in, "
            "and the dtype (fp16 overflows)"
        )


def rank(logits: Float[Tensor, "*rows d_vocab"], ids: Int[Tensor, "*rows"], *, where: str = "the logits"
         ) -> Int[Tensor, "*rows"]:
    """How many tokens score strictly higher than each row's ``ids`` (0 = top-1; -1 where an id is -1).

    Raises:
        LensarithError: some logit is NaN or infinite (a NaN would otherwise rank first).
    """
    check_finite(logits, where)
    ids = ids.to(logits.device)
    safe = ids.clamp_min(0)
    target = logits.gather(-1, safe[..., None])
    out = (logits > target).sum(-1, dtype=torch.int32).long()  # int32 counts: exact below 2**31 tokens, ~2x faster
    return torch.where(ids >= 0, out, torch.full_like(out, -1))


def reciprocal_rank(ranks: Int[Tensor, "*rows"]) -> Float[Tensor, "*rows"]:
    """The paper's metric ``1 / (rank + 1)``."""
    return 1.0 / (ranks.float() + 1.0)


#: safety factor on the rounding bound of ``scan``'s estimated logits (a test sets 0 to exercise the guard)
_BOUND = 4.0
#: logits held at once by ``scan`` (rows x vocabulary columns): 8M float32 values, 32 MiB
SCAN_ELEMENTS = 1 << 23


@dataclass
class Scan:
    """What one pass over the vocabulary gives for rows ``[batch]``.

    Attributes:
        ranks / logits: per id set, ``[batch]`` ranks (how many tokens score strictly higher;
            -1 where the id is -1) and logits of the ids (soft cap applied).
        probs: per id set, the softmax probability of the ids.
        logsumexp: ``[batch]``, the softmax's normaliser (log-probs are ``logits - logsumexp``).
        top: ``[batch, k]`` ids of the k highest logits, highest first (None if not asked).
    """

    ranks: list[Tensor] = field(default_factory=list)
    logits: list[Tensor] = field(default_factory=list)
    probs: list[Tensor] = field(default_factory=list)
    logsumexp: Tensor | None = None
    top: Tensor | None = None


def _slice_logits(model, x: Tensor, lo: int, hi: int) -> Tensor:
    backend = backend_of(model)
    W_U = backend.W_U
    out = torch.matmul(x, W_U[:, lo:hi].float()) + backend.b_U[lo:hi].float()  # float32 for bf16/fp16 weights
    return soft_cap(model, out)


def scan(model: Model, x: Float[Tensor, "batch d_model"], ids: list[Int[Tensor, " batch"]], *, k: int = 0,
         where: str = "the logits", elements: int | None = None) -> Scan:
    """Ranks, logits and probabilities of each row's ``ids`` (one tensor per id set), the
    softmax normaliser and the top ``k`` ids of normed residuals ``x``, in one pass over the
    vocabulary.

    When ``batch x d_vocab`` fits in ``elements`` (default ``SCAN_ELEMENTS``) the logits are
    computed at once, exactly as ``unembed`` and ``rank`` compute them. Otherwise the vocabulary is read in column chunks
    of ``elements // batch`` columns: each id's logit is first estimated from its own column
    (with a bound on the rounding difference from the chunked product), tokens clearly above
    the estimate are counted, and the few logits within the bound are kept and compared with
    the id's logit from the chunked product once it is known; so ranks count exactly the
    logits of the product that are strictly higher, as ``rank`` does on full logits, in
    memory that does not grow with the vocabulary. Reduced-precision (bf16/fp16) weights are
    always read this way, with the products in float32. A row whose logit falls outside its bound
    (never seen; a guard) is recounted in a second pass.

    Raises:
        LensarithError: some logit is NaN or infinite.

    Example:
        >>> x = final_norm(model, torch.randn(3, model.cfg.d_model))
        >>> ids = torch.tensor([1, 2, 3])
        >>> full = unembed(model, x)
        >>> small = scan(model, x, [ids], k=2, elements=3 * 7)  # chunks of 7 columns
        >>> bool((small.ranks[0] == rank(full, ids)).all()), bool((small.top == full.topk(2).indices).all())
        (True, True)
    """
    rows, V = x.shape[0], model.cfg.d_vocab
    width = max(1, (SCAN_ELEMENTS if elements is None else elements) // max(rows, 1))
    safe = [i.clamp_min(0) for i in ids]
    out = Scan()
    backend = backend_of(model)
    W_U, b_U = backend.W_U, backend.b_U
    if width >= V and W_U.dtype in (torch.float32, torch.float64):  # all at once: the historical computation
        full = unembed(backend, x).float()
        check_finite(full, where)
        r = torch.arange(rows, device=full.device)
        probs = full.softmax(-1)
        for i in ids:
            out.ranks.append(rank(full, i, where=where))
            out.logits.append(full[r, i.clamp_min(0).to(full.device)])
            out.probs.append(probs[r, i.clamp_min(0).to(full.device)])
        out.logsumexp = full.logsumexp(-1)
        if k:
            out.top = full.topk(min(k, V), dim=-1).indices
        return out
    dev = W_U.device
    xd = x.to(dev, torch.float32)  # reduced-precision weights are read in float32 here
    r = torch.arange(rows, device=dev)
    safe = [i.to(dev) for i in safe]
    approx, bound, above, exact, band_rows, band_vals = [], [], [], [], [], []
    for i in safe:
        cols = W_U[:, i].float()  # [d_model, batch]
        est = soft_cap(model, (xd * cols.T).sum(-1) + b_U[i].float())
        mag = (xd.abs() * cols.T.abs()).sum(-1) + b_U[i].abs().float()
        eps = torch.finfo(torch.float32).eps
        # products and sums of d_model terms on both sides, the cap's tanh, in W_U's precision
        approx.append(est)
        bound.append(_BOUND * (x.shape[-1] * eps * mag + 2 * eps * est.abs()) + 1e-30)
        above.append(torch.zeros(rows, dtype=torch.long, device=dev))
        exact.append(torch.full((rows,), float("nan"), device=dev))
        band_rows.append([])
        band_vals.append([])
    m = torch.full((rows,), float("-inf"), device=dev)
    s = torch.zeros(rows, device=dev)
    top_v = top_i = None
    for lo in range(0, V, width):
        hi = min(V, lo + width)
        chunk = _slice_logits(backend, xd, lo, hi).float()
        check_finite(chunk, where)
        for j, i in enumerate(safe):
            upper = (approx[j] + bound[j])[:, None]
            lower = (approx[j] - bound[j])[:, None]
            gt = chunk > upper
            above[j] += gt.sum(-1)
            near = (chunk > lower) & ~gt
            br, bc = near.nonzero(as_tuple=True)
            band_rows[j].append(br)
            band_vals[j].append(chunk[br, bc])
            inside = (i >= lo) & (i < hi)
            exact[j] = torch.where(inside, chunk[r, (i - lo).clamp(0, hi - lo - 1)], exact[j])
        cm = chunk.max(-1).values
        new = torch.maximum(m, cm)
        s = s * torch.exp(m - new) + torch.exp(chunk - new[:, None]).sum(-1)
        m = new
        if k:
            kk = min(k, hi - lo)
            v, ix = chunk.topk(kk, dim=-1)
            ix = ix + lo
            if top_v is not None:
                v, ix = torch.cat([top_v, v], -1), torch.cat([top_i, ix], -1)
            top_v, pick = v.topk(min(k, v.shape[-1]), dim=-1)
            top_i = ix.gather(-1, pick)
    out.logsumexp = (m + s.log()).cpu()
    for j, (orig, i) in enumerate(zip(ids, safe)):
        t = exact[j]
        br, bv = torch.cat(band_rows[j]), torch.cat(band_vals[j])
        count = above[j] + torch.zeros_like(above[j]).index_add_(0, br, (bv > t[br]).long())
        off = (t - approx[j]).abs() > bound[j]
        if bool(off.any()):  # outside its bound: recount those rows against their exact logit
            bad = off.nonzero().flatten()
            recount = torch.zeros(len(bad), dtype=torch.long, device=dev)
            for lo in range(0, V, width):
                chunk = _slice_logits(backend, xd[bad], lo, min(V, lo + width)).float()
                recount += (chunk > t[bad, None]).sum(-1)
            count[bad] = recount
        o = orig.to(dev)
        out.ranks.append(torch.where(o >= 0, count, torch.full_like(count, -1)).cpu())
        out.logits.append(t.cpu())
        out.probs.append(torch.exp(t - (m + s.log())).cpu())
    out.top = None if top_i is None else top_i.cpu()
    return out
