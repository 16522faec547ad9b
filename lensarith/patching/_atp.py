"""Attribution patching that holds where the plain gradient breaks: AtP* and RelP.

Both recompute the base run from its residual at the first swept layer with autograd (the
values equal the model's; blocks from the backend's weights, as in the fast engine) and
estimate each site's patching effect from one backward pass:

- ``"atp+qk"`` and ``"atp*"`` (Kramar et al. 2024, arXiv 2403.00745). *QK fix*: the
  attention block that a patched activation feeds first (block ``L`` for ``resid_pre``,
  block ``L + 1`` for the others) is recomputed exactly with the patch's direct residual
  change ``D`` (through ``ln1`` into its queries, keys and values: AtP*'s fix for a
  saturated softmax, extended to the values the same residual feeds), and only its
  output change is linearised: ``effect ~ delta . grad - D . grad_attn_in + (z' - z) . grad_z``
  where ``grad_attn_in`` is the share of the gradient that flows into that block's
  attention. ``"atp*"`` adds *GradDrop*:
  the backward is repeated with the gradient through groups of downstream blocks dropped
  (a dropped group passes the gradient along the residual only), and the estimate is
  ``sign(effect) * mean_k |effect_k|`` over the groups, which exposes effects that cancel
  along different paths. The groups are as many as the budget of 5 forward-equivalents
  allows (``meta["graddrop_groups"]``); a dropped backward runs only below its group.
- ``"relp"`` (relevance patching, arXiv 2508.21258): the gradient replaced by LRP's
  propagation coefficients through a modified backward: every norm's scale is a constant
  (LayerNorm centring stays), MLP activations pass relevance by the identity rule
  (``act(x) / x``), attention patterns are frozen (relevance flows through the values),
  and a gated MLP's product splits relevance in half between its factors.
- ``"relp+qk"``: relevance patching with the QK fix's exact first attention block.

``meta["forward_equivalents"]`` counts the work in forwards of the whole model on the batch
(a backward without weight gradients costs about one forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from ..core import readout
from ..core.backends import backend_of
from ..core.backends._activations import ACTIVATIONS
from ._fast import alibi_slopes, block_extras, fast_unsupported, rotate, score_cap
from ._grid import HEAD_SITES, Grid

__all__ = ["METHODS", "BUDGET", "method_unsupported", "Trace", "estimate", "qk_costs", "node_key", "qk_block"]

METHODS = ("atp", "atp+qk", "atp*", "relp", "relp+qk")
#: forward-equivalents a method may spend (the issue's budget)
BUDGET = 5.0
#: elements of a recomputed attention pattern chunk (QK fix)
_PATTERN_BUDGET = 1 << 22


def method_unsupported(model: Model) -> str | None:
    """Why ``atp*`` / ``relp`` cannot recompute this model's blocks, or None."""
    why = fast_unsupported(model, hooks=False)
    cfg = model.cfg
    extra = []
    extra += block_extras(model)  # the traces below do not recompute Gemma 2/3's extra norms and windows
    if not cfg.attn_only and cfg.act_fn not in ACTIVATIONS:  # (solu_ln and other norm activations are not there)
        extra.append(f"the MLP activation {cfg.act_fn!r}")
    found = ([why] if why else []) + extra
    return ", ".join(found) if found else None


def _grad_as(value: Tensor, path: Tensor) -> Tensor:
    """``value`` forward, ``path``'s gradient backward (``path - path.detach()`` is exactly zero)."""
    return value.detach() + (path - path.detach())


def _identity_rule(pre: Tensor, post: Tensor, act) -> Tensor:
    """``post = act(pre)`` with the backward ``act(pre) / pre`` (LRP's identity rule)."""
    tiny = 1e-4
    at_zero = float(act(torch.tensor(tiny, dtype=torch.float64)) / tiny)
    ratio = torch.where(pre.abs() > 1e-6, post / pre, torch.full_like(pre, at_zero))
    return pre * ratio.detach()


@dataclass
class _Block:
    """Detached base values of one block that the QK fix recomputes from."""

    x: Tensor        # resid_pre [B, W, d]
    q: Tensor        # rotated queries [B, W, H, dh]
    k: Tensor        # rotated keys [B, W, G, dh]
    v: Tensor        # values [B, W, G, dh]
    pattern: Tensor  # [B, H, W, W]
    z: Tensor        # [B, W, H, dh]


class Trace:
    """The base run from ``resid_pre`` of layer ``lo`` on, with autograd and the nodes the
    estimates read: ``nodes[(kind, layer)]`` for ``resid_pre`` (``layer == n_layers``: the
    final residual), ``resid_mid``, ``attn_out``, ``mlp_out``, ``z``, and for the QK fix
    ``xq`` and ``xv`` (the residual as the queries and keys, and the values, read it)."""

    def __init__(self, model, x0: Tensor, lo: int, *, relp: bool, qk: bool) -> None:
        self.model, self.cfg, self.backend = model, model.cfg, backend_of(model)
        cfg = self.cfg
        self.n, self.lo, self.relp, self.qk = cfg.n_layers, lo, relp, qk
        self.H, self.dh = cfg.n_heads, cfg.d_head
        self.W = x0.shape[1]
        self.G = self.backend.kv_weights(lo)[0].shape[0]
        self.alibi = alibi_slopes(self.H).to(x0.device) if cfg.positional_embedding_type == "alibi" else None
        self.pos = torch.arange(self.W, device=x0.device)
        self.nodes: dict[tuple[str, int], Tensor] = {}
        self.blocks: dict[int, _Block] = {}
        x = x0.detach().requires_grad_(True)
        for layer in range(lo, self.n):
            self.nodes["resid_pre", layer] = x
            x = self._block(layer, x)
        self.nodes["resid_pre", self.n] = x

    # ---- pieces
    def norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        value = self.backend.block_norm(layer, which, x.reshape(-1, x.shape[-1])).view(x.shape)
        kind = self.cfg.normalization_type
        if not self.relp or kind is None:
            return value
        w, eps = self.backend.norm_params(layer, which)
        c = x - x.mean(-1, keepdim=True) if kind in ("LN", "LNPre") else x
        scale = (c.detach().pow(2).mean(-1, keepdim=True) + eps).sqrt()  # LRP: the scale is a constant
        lin = c / scale if w is None else c / scale * w.detach()
        return _grad_as(value, lin)

    def mlp(self, layer: int, h: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        value = self.backend.mlp(layer, h.reshape(-1, h.shape[-1])).view(h.shape)
        if not self.relp:
            return value
        w = self.backend.block(layer)
        act = ACTIVATIONS[self.cfg.act_fn]
        if w.W_gate is not None:  # act(h W_gate) * (h W_in) + b_in: half the relevance to each factor
            pre = h @ w.W_gate.detach()
            a = act(pre)
            lin = h @ w.W_in.detach()
            a_rel = _identity_rule(pre, a, act)
            post = 0.5 * (a_rel * lin.detach() + a.detach() * lin)
        else:
            pre = h @ w.W_in.detach() + w.b_in.detach()
            post = _identity_rule(pre, act(pre), act)
        return _grad_as(value, post @ w.W_out.detach())

    def project_qk(self, layer: int, h: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotated queries ``[..., H, dh]`` and keys ``[..., G, dh]`` of normed rows ``h [..., d]``
        at absolute ``positions`` (broadcastable to ``h.shape[:-1]``)."""
        w = self.backend.block(layer)
        W_K, _, b_K, _ = self.backend.kv_weights(layer)
        q = torch.einsum("...d,hde->...he", h, w.W_Q.detach()) + w.b_Q.detach()
        k = torch.einsum("...d,hde->...he", h, W_K.detach()) + b_K.detach()
        if self.cfg.positional_embedding_type == "rotary":
            sin, cos = self.backend.rotary_tables(layer)
            s, c = sin[positions].unsqueeze(-2), cos[positions].unsqueeze(-2)
            q, k = rotate(self.cfg, q, s, c), rotate(self.cfg, k, s, c)
        return q, k

    def project_v(self, layer: int, h: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows kv_head d_head"]:
        _, W_V, _, b_V = self.backend.kv_weights(layer)
        return torch.einsum("...d,hde->...he", h, W_V.detach()) + b_V.detach()

    def attend(self, pattern: Tensor, v: Tensor) -> Tensor:
        """``z [..., Q, H, dh]`` of ``pattern [..., H, Q, W]`` over ``v [..., W, G, dh]``."""
        G, W, Q = v.shape[-2], v.shape[-3], pattern.shape[-2]
        pg = pattern.reshape(*pattern.shape[:-3], G, self.H // G, Q, W)
        z = torch.einsum("...grqk,...kgd->...qgrd", pg, v)
        return z.reshape(*z.shape[:-3], self.H, self.dh)

    def pattern(self, layer: int, q: Tensor, k: Tensor, q_start: int = 0) -> Tensor:
        """Causal attention pattern ``[..., H, Q, W]`` of queries ``q [..., Q, H, dh]`` at positions
        ``q_start..`` over keys ``k [..., W, G, dh]`` at ``0..W-1``."""
        G, r, Q, W = k.shape[-2], self.H // k.shape[-2], q.shape[-3], k.shape[-3]
        qg = q.reshape(*q.shape[:-2], G, r, self.dh)
        s = torch.einsum("...qgrd,...kgd->...grqk", qg, k)
        s = s.reshape(*s.shape[:-4], self.H, Q, W) / self.backend.attn_scale(layer)
        s = score_cap(s, self.cfg.attn_scores_soft_cap)
        key, query = self.pos[None, :W], self.pos[q_start : q_start + Q, None]
        if self.alibi is not None:
            s = s + (self.alibi.view(-1, 1, 1) * (key - query).clamp(max=0).float()).to(s.dtype)
        return s.masked_fill(key > query, float("-inf")).softmax(-1)

    def _block(self, layer: int, x: Tensor) -> Tensor:
        if self.qk:  # their own nodes: the gradients of the query/key path and of the value path alone
            xq, xv = x.view_as(x), x.view_as(x)
            self.nodes["xq", layer], self.nodes["xv", layer] = xq, xv
            hq, h = self.norm(layer, "ln1", xq), self.norm(layer, "ln1", xv)
        else:
            hq = h = self.norm(layer, "ln1", x)
        cfg, w = self.cfg, self.backend.block(layer)
        q, k = self.project_qk(layer, hq, self.pos[None, :].expand(hq.shape[0], -1))
        v = self.project_v(layer, h)
        pattern = self.pattern(layer, q, k)
        if self.relp:
            pattern = pattern.detach()  # LRP: relevance flows through the values only
        z = self.attend(pattern, v)
        self.nodes["z", layer] = z
        if self.qk:
            self.blocks[layer] = _Block(x.detach(), q.detach(), k.detach(), v.detach(), pattern.detach(), z.detach())
        attn_out = torch.einsum("bwhe,hed->bwd", z, w.W_O.detach()) + w.b_O.detach()
        self.nodes["attn_out", layer] = attn_out
        if cfg.attn_only:
            return x + attn_out
        if cfg.parallel_attn_mlp:
            mlp_out = self.mlp(layer, self.norm(layer, "ln2", x))
            self.nodes["mlp_out", layer] = mlp_out
            return x + attn_out + mlp_out
        mid = x + attn_out
        self.nodes["resid_mid", layer] = mid
        mlp_out = self.mlp(layer, self.norm(layer, "ln2", mid))
        self.nodes["mlp_out", layer] = mlp_out
        return mid + mlp_out

    def final(self, read: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_model"]:
        x = self.nodes["resid_pre", self.n]
        return x[torch.arange(x.shape[0], device=x.device), read]

    # ---- cost, in multiply-adds x 2 per token row
    def token_flops(self) -> float:
        cfg = self.cfg
        proj = 2 * cfg.d_model * self.dh * (2 * self.H + 2 * self.G)
        mlp = 0 if cfg.attn_only else 2 * (3 if cfg.gated_mlp else 2) * cfg.d_model * cfg.d_mlp
        return float(proj + mlp + 4 * self.W * self.H * self.dh)  # attention over about W keys


def node_key(site: str, layer: int) -> tuple[str, int]:
    if site == "resid_post":
        return ("resid_pre", layer + 1)
    return ("z" if site in HEAD_SITES else site, layer)


def qk_block(site: str, layer: int) -> int:
    """The block whose attention the patched activation feeds first."""
    return layer if site == "resid_pre" else layer + 1


def qk_costs(trace: Trace, grid: Grid, src: dict[tuple[str, int], Tensor]) -> Tensor:
    """FLOPs of the QK fix per job ``[job]``: recomputed queries, keys, values and attention rows
    (zero where the patch changes nothing, e.g. positions before the first differing token)."""
    cfg, W = trace.cfg, trace.W
    out = torch.zeros(len(grid.jobs), dtype=torch.float64)
    proj = 2 * cfg.d_model * trace.dh * (trace.H + 2 * trace.G)
    for layer, ids, hs, ps, delta in _layers(trace, grid, src):
        if qk_block(grid.site, layer) >= trace.n:
            continue
        live = _live(grid, delta, hs, ps).cpu()
        B = delta.shape[0]
        if grid.site in HEAD_SITES and grid.all_positions:
            rows = W - _first_moved(delta)
            cost = B * rows * (proj + 4 * trace.H * W * trace.dh)
        else:
            cost = B * (proj + 16 * trace.H * W * trace.dh)
        out[ids] = live.double() * cost
    return out


def _first_moved(delta: Tensor) -> int:
    """The first position where the patch is non-zero for some example."""
    moved = (delta.abs().flatten(2).amax(-1) > 0).any(0).nonzero()
    return int(moved[0]) if len(moved) else delta.shape[1]


def _layers(trace: Trace, grid: Grid, src: dict[tuple[str, int], Tensor]):
    """Per swept layer: job indices, heads, positions, and the patch ``source - base`` at the node."""
    by_layer: dict[int, list[int]] = {}
    for i, job in enumerate(grid.jobs):
        by_layer.setdefault(job[0], []).append(i)
    dev = trace.pos.device
    for layer, ids in by_layer.items():
        key = node_key(grid.site, layer)
        base = trace.nodes[key].detach()
        hs = torch.tensor([grid.jobs[i][1] or 0 for i in ids], device=dev)
        ps = torch.tensor([grid.jobs[i][2] or 0 for i in ids], device=dev)
        yield layer, ids, hs, ps, src[key].to(base.dtype) - base


def _live(grid: Grid, delta: Tensor, hs: Tensor, ps: Tensor) -> Tensor:
    """``[job]``: whether the job's patch changes anything (a zero patch has a zero QK term)."""
    moved = delta.abs().amax(0) > 0  # [W, d] or [W, H, dh]
    if grid.site not in HEAD_SITES:
        return moved.any(-1)[ps]
    per = moved.any(-1)  # [W, H]
    return per.any(0)[hs] if grid.all_positions else per[ps, hs]


def _one_position_terms(trace: Trace, L2: int, blk: _Block, qp: Tensor, kp: Tensor, vp: Tensor, p: Tensor,
                        gzs: list[Tensor | None]) -> list[Tensor]:
    """``sum (z' - z) * grad_z`` ``[J, B]`` per gradient set when each job changes the query, key
    and value at one position ``p_j`` of block ``L2``: row ``p_j`` is recomputed, and every later
    row changes only through column ``p_j`` (the softmax renormalised in closed form)."""
    J, B = qp.shape[:2]
    H, G, dh, W = trace.H, trace.G, trace.dh, trace.W
    r = H // G
    f = lambda x: score_cap(x / trace.backend.attn_scale(L2), trace.cfg.attn_scores_soft_cap)  # noqa: E731
    heads = lambda t: t.repeat_interleave(r, dim=-2)  # noqa: E731 - [.., G, dh] -> [.., H, dh]
    qg = blk.q.reshape(B, W, G, r, dh)
    new_col = f(torch.einsum("btgrd,jbgd->jbgrt", qg, kp)).reshape(J, B, H, W)  # query t, key p_j
    old_k = blk.k[:, p].transpose(0, 1)  # [J, B, G, dh]
    old_col = f(torch.einsum("btgrd,jbgd->jbgrt", qg, old_k)).reshape(J, B, H, W)
    jj = torch.arange(J, device=p.device)
    A_col = blk.pattern.permute(3, 0, 1, 2)[p]  # [J, B, H, W]: column p_j over queries t
    later = (trace.pos[None, :] > p[:, None])[:, None, None, :]  # [J, 1, 1, W]
    logA = torch.log(A_col)
    logZ = torch.logaddexp(torch.log1p(-A_col), logA + (new_col - old_col))
    inv_m1 = torch.where(later, torch.expm1(-logZ), 0.0)            # 1 / Z' - 1
    old_share = torch.where(later, torch.exp(logA - logZ), 0.0)     # A_tp / Z'
    new_share = torch.where(later, torch.exp(logA + (new_col - old_col) - logZ), 0.0)  # A'_tp
    row = f(torch.einsum("jbgrd,bkgd->jbgrk", qp.reshape(J, B, G, r, dh), blk.k)).reshape(J, B, H, W)
    row[jj, :, :, p] = f(torch.einsum("jbgrd,jbgd->jbgr", qp.reshape(J, B, G, r, dh), kp)).reshape(J, B, H)
    if trace.alibi is not None:
        row = row + (trace.alibi.view(1, 1, H, 1) * (trace.pos[None, :] - p[:, None]).clamp(max=0)[:, None, None, :]
                     ).to(row.dtype)
    row = row.masked_fill((trace.pos[None, :] > p[:, None])[:, None, None, :], float("-inf")).softmax(-1)
    z_row = torch.einsum("jbgrk,bkgd->jbgrd", row.reshape(J, B, G, r, W), blk.v).reshape(J, B, H, dh)
    v_old = heads(blk.v[:, p].transpose(0, 1))  # [J, B, H, dh]
    v_new = heads(vp)
    z_row = z_row + row[jj, :, :, p][..., None] * (v_new - v_old)
    dz_row = z_row - blk.z[:, p].transpose(0, 1)  # [J, B, H, dh]
    out = []
    for gz in gzs:
        if gz is None:
            out.append(torch.zeros(J, B, device=qp.device))
            continue
        zg = (blk.z * gz).sum(-1).permute(0, 2, 1)[None]  # [1, B, H, W]
        vg_old = torch.einsum("jbhd,bthd->jbht", v_old, gz)
        vg_new = torch.einsum("jbhd,bthd->jbht", v_new, gz)
        col = (inv_m1 * zg - old_share * vg_old + new_share * vg_new).sum((2, 3))
        out.append(col + (dz_row * gz[:, p].transpose(0, 1)).sum((2, 3)))
    return out


def estimate(trace: Trace, grid: Grid, src: dict[tuple[str, int], Tensor], grads: list[dict], affected: list,
             read: Tensor, fix: Tensor | None = None) -> Tensor:
    """Effect estimates ``[grad_set, job, batch]`` for each set of gradients.

    ``grads[s]`` maps node keys to gradients; ``affected[s]`` the node keys whose gradient
    that set changed (the others keep set 0's estimate; None: every key); ``fix [job]``: the
    jobs that get the QK fix (default all, where the trace has it)."""
    n, site = trace.n, grid.site
    S, B = len(grads), read.shape[0]
    out = torch.zeros(S, len(grid.jobs), B, device=read.device)
    heads, all_pos = site in HEAD_SITES, grid.all_positions
    for layer, ids, hs, ps, delta in _layers(trace, grid, src):
        key = node_key(site, layer)
        ids_t = torch.tensor(ids, device=read.device)
        for s in range(S):
            g = grads[s].get(key)
            if g is None:
                continue
            prod = (delta * g).sum(-1)  # [B, W] or [B, W, H]
            if not heads:
                out[s, ids_t] = prod[:, ps].T
            elif all_pos:
                out[s, ids_t] = prod.sum(1)[:, hs].T
            else:
                out[s, ids_t] = prod[:, ps, hs].T
        L2 = qk_block(site, layer)
        if not trace.qk or L2 >= n:
            continue
        live = _live(grid, delta, hs, ps)
        if fix is not None:
            live = live & fix.to(live.device)[ids_t]
        live = live.nonzero().flatten()
        blk = trace.blocks[L2]
        W_O = trace.backend.block(layer).W_O.detach() if heads else None
        W = trace.W
        step = max(1, _PATTERN_BUDGET // (B * trace.H * W * (W if heads and all_pos else 4)))
        for c in range(0, len(live), step):
            sel = live[c : c + step]
            J, h_, p_ = len(sel), hs[sel], ps[sel]
            Vs = [None if grads[s].get(("xq", L2)) is None else grads[s]["xq", L2] + grads[s]["xv", L2]
                  for s in range(S)]
            gzs = [grads[s].get(("z", L2)) for s in range(S)]
            if heads and all_pos:  # the head's direct write to the residual, at every position from p0 on
                p0 = _first_moved(delta)
                D = torch.einsum("bwje,jed->jbwd", delta[:, p0:, h_], W_O[h_])
                h1 = trace.norm(L2, "ln1", blk.x[None, :, p0:] + D)
                q, k = trace.project_qk(L2, h1, trace.pos[None, None, p0:])
                k = torch.cat([blk.k[None, :, :p0].expand(J, -1, -1, -1, -1), k], 2)
                v = torch.cat([blk.v[None, :, :p0].expand(J, -1, -1, -1, -1), trace.project_v(L2, h1)], 2)
                dz = trace.attend(trace.pattern(L2, q, k, p0), v) - blk.z[None, :, p0:]
                terms = [torch.zeros(J, B, device=read.device) if gz is None else
                         (dz * gz[None, :, p0:]).sum((2, 3, 4)) for gz in gzs]
                terms = [t if V is None else t - (D * V[None, :, p0:]).sum((2, 3)) for t, V in zip(terms, Vs)]
            else:
                if heads:  # the head's direct write at the job's position
                    Dp = torch.einsum("bje,jed->jbd", delta[:, p_, h_], W_O[h_])
                else:
                    Dp = delta[:, p_].transpose(0, 1)  # [J, B, d]
                h1 = trace.norm(L2, "ln1", blk.x[:, p_].transpose(0, 1) + Dp)
                qp, kp = trace.project_qk(L2, h1, p_[:, None].expand(J, B))
                terms = _one_position_terms(trace, L2, blk, qp, kp, trace.project_v(L2, h1), p_, gzs)
                terms = [t if V is None else t - (Dp * V[:, p_].transpose(0, 1)).sum(-1) for t, V in zip(terms, Vs)]
            rows = ids_t[sel]
            for s in range(S):
                if grads[s].get(key) is not None:
                    out[s, rows] += terms[s]
    for s in range(1, S):  # sets that did not change a node's gradient keep the full estimate
        if affected[s] is None:
            continue
        keep = torch.tensor([node_key(site, job[0]) not in affected[s] for job in grid.jobs], device=read.device)
        out[s, keep] = out[0, keep]
    return out


def check_method(method: str) -> None:
    if method not in METHODS:
        raise LensarithError(f"method must be one of {', '.join(repr(m) for m in METHODS)} (plain attribution "
                             f"patching, AtP*'s QK fix, AtP* with the QK fix and GradDrop, relevance patching, relevance patching with the QK fix), "
                             f"got {method!r}")
