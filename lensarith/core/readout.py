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
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError
from .backends import backend_of

__all__ = ["final_norm", "frozen_final_norm", "unembed", "logits", "directions", "vocab_vectors", "rank",
           "reciprocal_rank", "check_finite", "soft_cap"]

_NORMS = ("LN", "LNPre", "RMS", "RMSPre")


def _norm_type(model) -> str | None:
    norm = model.cfg.normalization_type
    if norm is not None and norm not in _NORMS:
        raise LensarithError(f"unsupported final normalization {norm!r}; lensarith reads {', '.join(_NORMS)} or None")
    return norm


def final_norm(model, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
    """The model's final norm (``ln_final``) on residuals of any leading shape; identity without one."""
    if _norm_type(model) is None:
        return x
    backend = backend_of(model)
    if x.ndim == 3:
        return backend.final_norm(x)
    flat = x.reshape(-1, 1, x.shape[-1])
    return backend.final_norm(flat).reshape(x.shape)


def frozen_final_norm(model, stack: Float[Tensor, "component batch d_model"], resid: Float[Tensor, "batch d_model"]
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


def soft_cap(model, logits: Tensor) -> Tensor:
    """``cap * tanh(logits / cap)`` where the model has an output soft cap (Gemma-style)."""
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    if cap is None or cap <= 0:
        return logits
    return cap * torch.tanh(logits / cap)


def unembed(model, x: Float[Tensor, "*rows d_model"], columns: Int[Tensor, "batch k"] | None = None, *,
            capped: bool = True) -> Tensor:
    """Logits of normed residuals: ``[*rows, d_vocab]``, or ``[..., batch, k]`` for per-row ``columns``.

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
    if x.ndim == 2:
        out = backend.unembed(x[:, None])[:, 0]
    elif x.ndim == 3:
        out = backend.unembed(x)
    else:
        out = backend.unembed(x.reshape(-1, 1, x.shape[-1])).reshape(*x.shape[:-1], -1)
    return cap(out)


def logits(model, resid: Float[Tensor, "*rows d_model"], columns: Int[Tensor, "batch k"] | None = None) -> Tensor:
    """``unembed(final_norm(resid))``: what the model outputs for residuals after its last block."""
    return unembed(model, final_norm(model, resid), columns)


def directions(model, ids: Int[Tensor, " n"]) -> tuple[Float[Tensor, "n d_model"], Float[Tensor, " n"]]:
    """Unembedding columns ``[n, d_model]`` and biases ``[n]`` of token ids (soft cap not applied)."""
    backend = backend_of(model)
    W_U = backend.W_U
    ids = ids.to(W_U.device)
    return W_U[:, ids].T, backend.b_U[ids]


def vocab_vectors(model, space: str = "unembed") -> Float[Tensor, "d_vocab d_model"]:
    """Every token's vector: unembedding columns (``"unembed"``) or embedding rows (``"embed"``)."""
    if space == "unembed":
        return backend_of(model).W_U.T
    if space == "embed":
        return backend_of(model).W_E
    raise LensarithError(f"space must be 'unembed' or 'embed', got {space!r}")


def check_finite(t: Tensor, where: str) -> None:
    """Raise ``LensarithError`` naming ``where`` and the first rows when ``t`` holds NaN or inf."""
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
    out = (logits > target).sum(-1)
    return torch.where(ids >= 0, out, torch.full_like(out, -1))


def reciprocal_rank(ranks: Int[Tensor, "*rows"]) -> Float[Tensor, "*rows"]:
    """The paper's metric ``1 / (rank + 1)``."""
    return 1.0 / (ranks.float() + 1.0)
