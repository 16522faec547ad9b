"""The fast engine: exact patching that recomputes only the layers and positions a patch reaches.

It puts many sites on the batch axis (see ``lensarith.patching`` for the scheme) and,
for a chunk of jobs ``(layer, head, pos)`` of a ``Grid``, returns the final residual at
each example's read position. ``fast_unsupported`` says why a model cannot use it.

Blocks are recomputed from the backend's weights, for every family TransformerLens's
recipes build: learned positions, rotary embeddings (adjacent or split pairs, partial
``rotary_dim``; the layer's own sin/cos tables), ALiBi; sequential or parallel attention and
MLP; grouped-query attention (queries grouped over the unexpanded key/value heads, never
expanded copies of K/V); LayerNorm, LNPre, RMS, RMSPre norms; Gemma 2/3 blocks (RMS norms
after attention and MLP, per-head RMS norms of queries and keys, sliding-window local layers
with their own rotary base); plain or gated MLPs; attention score soft caps (the logit soft
cap is the readout's). Weights are flattened for one layer
at a time (one layer's Q/K/V matrix, never a copy per layer).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from ..core import Batch, Site
from ..core.backends import Backend, Capability, backend_of
from ..core.run import has_hooks
from ._grid import HEAD_SITES, Grid, chunk_jobs
from ._grid import hook as _hook
from ._runs import Run

# --------------------------------------------------------------------------- the fast engine

#: positional embeddings the engine recomputes (``standard`` is in the residual already)
POSITIONAL = ("standard", "rotary", "alibi")


_WHOLE_QK_NORM = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def block_extras(model: Model) -> list[str]:
    """The Gemma 2/3 block pieces a model uses (post-norms, per-head QK norms, sliding-window
    layers): the fast engine recomputes them, the attribution methods' traces do not."""
    cfg = model.cfg
    return [why for bad, why in (
        (cfg.use_normalization_before_and_after, "norms after attention and MLP"),
        (getattr(cfg, "use_qk_norm", False), "QK norms"),
        (getattr(cfg, "use_local_attn", False), "sliding-window layers"),
    ) if bad]


def fast_unsupported(model: Model, *, hooks: bool = True) -> str | None:
    """Why the fast engine cannot run this model (or its backend), or None (``hooks=False``: leaving
    out hooks already on the model, for computations that recompute blocks without the model's hooks)."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    backend = backend_of(model)
    cfg = backend.cfg
    pe = cfg.positional_embedding_type
    reasons = [
        (pe not in POSITIONAL, f"{pe} positional embeddings"),
        (pe == "rotary" and backend.rotary_tables(0) is None, "rotary tables the backend does not expose"),
        (getattr(cfg, "use_dynamic_ntk_rope", False), "dynamic NTK rotary scaling"),
        (cfg.use_attn_in or cfg.use_split_qkv_input, "split attention inputs"),
        (bool(block_extras(backend)) and not backend.supports(Capability.GEMMA_BLOCKS),
         f"{', '.join(block_extras(backend))} on this backend"),
        (cfg.use_normalization_before_and_after and cfg.normalization_type not in ("RMS", "RMSPre"),
         "normalisation after blocks without RMS norms"),
        (cfg.original_architecture in POST_NORM_ARCHITECTURES, "post-norm blocks"),
        (cfg.original_architecture in _WHOLE_QK_NORM, "QK norm over whole projections"),
        (getattr(cfg, "clip_qkv", None) is not None, "QK clipping"),
        (getattr(cfg, "use_logn_attn", False) or getattr(cfg, "use_attention_sinks", False), "attention scaling or sinks"),
        (cfg.attention_dir != "causal", "bidirectional attention"),
        (getattr(cfg, "load_in_4bit", False), "4-bit weights"),
        (getattr(cfg, "n_devices", 1) > 1, "several devices"),
        *((True, why) for why in backend.fast_unsupported()),
        (hooks and has_hooks(backend), "hooks already on the model"),
    ]
    found = [why for bad, why in reasons if bad]
    return ", ".join(found) if found else None


@dataclass
class _Start:
    """A patched run entering the stack at ``layer`` with positions ``pos..`` in ``x`` ``[batch, S, d]``."""

    job: int
    layer: int
    pos: int
    vec: Tensor | None = None   # [batch, d_model]: the patched residual at ``pos``
    full: Tensor | None = None  # [batch, width, d_model]: a whole patched residual (pos 0)


@dataclass
class _Group:
    """Patched runs sharing a start position: ``x`` ``[jobs, batch, S, d_model]``."""

    pos: int
    jobs: list[int]
    x: Tensor


def alibi_slopes(n_heads: int) -> Float[Tensor, " n_heads"]:
    """ALiBi's per-head multipliers, as TransformerLens computes them (``2^(-8/n)`` geometric)."""
    start = 2 ** (-8 / n_heads)
    return start * (start ** torch.arange(n_heads))


def rotate(cfg, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotary embedding of ``x [..., head, d_head]`` with ``sin``/``cos`` broadcastable to
    ``x[..., :rotary_dim]``, as TransformerLens's ``apply_rotary`` computes it."""
    rd = cfg.rotary_dim
    rot, keep = x[..., :rd], x[..., rd:]
    if cfg.rotary_adjacent_pairs:
        flip = torch.stack([-rot[..., 1::2], rot[..., ::2]], -1).flatten(-2)
    else:
        half = rd // 2
        flip = torch.cat([-rot[..., half:], rot[..., :half]], -1)
    out = rot * cos + flip * sin
    return torch.cat([out, keep], -1) if keep.shape[-1] else out


def score_cap(scores: Float[Tensor, "*shape"], cap: float | None) -> Float[Tensor, "*shape"]:
    """Attention-score soft cap ``cap * tanh(scores / cap)`` (Gemma-2), identity when off."""
    if cap is None or cap <= 0:
        return scores
    return cap * torch.tanh(scores / cap)


class FastEngine:
    """Exact patching that recomputes only the layers and positions a patch reaches."""

    #: what ``activation_patch`` records in ``meta["engine"]``
    name = "fast"

    def __init__(self, backend: Backend, grid: Grid, base_batch: Batch, base: Run, src: Run, read: Tensor) -> None:
        self.grid, self.base, self.src = grid, base, src
        self.cfg = cfg = backend.cfg
        self.read = read.to(cfg.device)
        self.width = base_batch.tokens.shape[1]
        self.n, self.H, self.dh = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.parallel = bool(cfg.parallel_attn_mlp)
        self.backend = backend
        self._w: tuple[int, dict[str, Tensor]] | None = None  # one layer's flattened weights at a time
        self._scale = [self.backend.attn_scale(layer) for layer in range(self.n)]
        self.rotary = cfg.positional_embedding_type == "rotary"
        self.alibi = alibi_slopes(self.H).to(self.read.device) if cfg.positional_embedding_type == "alibi" else None
        self.post = bool(cfg.use_normalization_before_and_after)  # Gemma 2/3: norms after attention and MLP
        self.qk_norm = bool(getattr(cfg, "use_qk_norm", False))
        self.window = [self.backend.attn_window(layer) if self.backend.supports(Capability.GEMMA_BLOCKS) else None
                       for layer in range(self.n)]
        lo = min(grid.layers)
        self.G = self.backend.kv_weights(lo)[0].shape[0]
        # keys the base run's earlier positions offer to patched queries (rotated once, where rotary)
        self._k0 = {}
        for layer in range(lo, self.n):
            k = base.acts[_hook("k", layer)]  # hook_k comes before the QK norm
            if self.qk_norm:
                k = self.backend.qk_norm(layer, "k", k)
            if self.rotary:
                sin, cos = self._tables(layer)
                k = self._rotate(k, sin[: k.shape[1], None], cos[: k.shape[1], None])
            self._k0[layer] = k

    @staticmethod
    def sites(backend: Backend, grid: Grid) -> tuple[list[Site], list[Site]]:
        """Sites to record in the base run and in the source run."""
        n, site = backend.cfg.n_layers, grid.site
        lo = min(grid.layers)
        base = [Site("resid_pre", layer) for layer in range(lo, n)]
        base += [Site(kv, layer) for layer in range(lo, n) for kv in ("k", "v")]
        if backend.cfg.parallel_attn_mlp:  # the other branch's output of a patched layer, unchanged
            extra = {"attn_out": ["mlp_out"], "mlp_out": ["attn_out"], "z": ["z", "mlp_out"],
                     "result": ["z", "mlp_out"]}.get(site, [])
        else:
            extra = {"mlp_out": ["resid_mid"], "z": ["z"], "result": ["z"]}.get(site, [])
        base += [Site(k, layer) for layer in grid.layers for k in extra]
        src_site = "z" if site in HEAD_SITES else site
        return base, [Site(src_site, layer) for layer in grid.layers]

    def weights(self, layer: int) -> dict[str, Tensor]:
        """``layer``'s attention weights flattened for matmuls (only the latest layer is kept)."""
        if self._w is None or self._w[0] != layer:
            self._w = None  # release the previous layer's first
            attn = self.backend.block(layer)
            W_K, W_V, b_K, b_V = self.backend.kv_weights(layer)
            d, hd, kd = self.cfg.d_model, self.H * self.dh, W_K.shape[0] * self.dh
            flat = lambda w: w.permute(1, 0, 2).reshape(d, -1)  # noqa: E731 - [head, d_model, d_head] -> [d_model, head*d_head]
            W_qkv = torch.cat([flat(attn.W_Q), flat(W_K), flat(W_V)], 1).contiguous()
            b_qkv = torch.cat([attn.b_Q.reshape(hd), b_K.reshape(kd), b_V.reshape(kd)])
            self._w = (layer, {"W_qkv": W_qkv, "b_qkv": b_qkv, "W_q": W_qkv[:, :hd], "b_q": b_qkv[:hd],
                               "W_kv": W_qkv[:, hd:], "b_kv": b_qkv[hd:],
                               "W_O": attn.W_O.reshape(hd, d), "b_O": attn.b_O})
        return self._w[1]

    # ---- rotary embeddings
    def _tables(self, layer: int) -> tuple[Tensor, Tensor]:
        tables = self.backend.rotary_tables(layer)
        if tables is None:  # pragma: no cover - fast_unsupported refuses such models
            raise LensarithError(f"internal: no rotary tables for layer {layer}")
        return tables

    def _rotate(self, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        return rotate(self.cfg, x, sin, cos)

    # ---- pieces of a block on flat token lists ``[tokens, d_model]``, in cache-sized row blocks
    _ROWS = 1024

    def _mlp(self, layer: int, x: Tensor) -> Tensor:
        out = self.backend.mlp(layer, self.backend.block_norm(layer, "ln2", x))
        return self.backend.post_norm(layer, "ln2_post", out) if self.post else out

    def _attn_out(self, layer: int, z: Tensor) -> Tensor:
        """Flat ``z [n, head*d_head]`` -> the attention output added to the residual."""
        w = self.weights(layer)
        out = torch.addmm(w["b_O"], z, w["W_O"])
        return self.backend.post_norm(layer, "ln1_post", out) if self.post else out

    def _block_rows(self, layer: int, pre: Tensor, attn: Tensor, mlp: Tensor | None = None) -> Tensor:
        """resid_pre and the attention output -> resid_post, for rows ``[n, d_model]``.

        ``mlp``: the MLP's output where it is known (a parallel block's patched attention)."""
        if self.cfg.attn_only:
            return pre + attn
        if self.parallel:
            return pre + attn + (self._mlp(layer, pre) if mlp is None else mlp)
        mid = pre + attn
        return mid + self._mlp(layer, mid)

    def _rows(self, fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
        """``fn`` on aligned row blocks of ``xs`` (any leading shape, the same for all)."""
        shape = xs[0].shape
        flat = [x.reshape(-1, x.shape[-1]) for x in xs]
        first = fn(*(x[: self._ROWS] for x in flat))
        if flat[0].shape[0] <= self._ROWS:
            return first.view(*shape[:-1], first.shape[-1])
        out = first.new_empty(flat[0].shape[0], first.shape[-1])
        out[: self._ROWS] = first
        for i in range(self._ROWS, flat[0].shape[0], self._ROWS):
            out[i : i + self._ROWS] = fn(*(x[i : i + self._ROWS] for x in flat))
        return out.view(*shape[:-1], out.shape[-1])

    def _after_attn(self, layer: int, pre: Tensor, attn: Tensor, mlp: Tensor | None = None) -> Tensor:
        """``_block_rows`` for any leading shape."""
        if mlp is None:
            return self._rows(lambda p, a: self._block_rows(layer, p, a), pre, attn)
        return self._rows(lambda p, a, m: self._block_rows(layer, p, a, m), pre, attn, mlp)

    def _project(self, layer: int, x: Tensor, weight: str) -> Tensor:
        """ln1 then a Q/K/V projection, in row blocks."""
        w = self.weights(layer)
        W, b = w["W_" + weight], w["b_" + weight]
        return self._rows(lambda r: torch.addmm(b, self.backend.block_norm(layer, "ln1", r), W), x)

    def _finish(self, layer: int, x: Tensor, z: Tensor) -> Tensor:
        """resid_pre + attention output, then the MLP, in row blocks."""
        return self._rows(lambda r, zr: self._block_rows(layer, r, self._attn_out(layer, zr)), x, z)

    def _attn_from_z(self, layer: int, z: Tensor) -> Tensor:
        flat = z.reshape(-1, self.H * self.dh)
        return self._attn_out(layer, flat).reshape(*z.shape[:-2], -1)

    # ---- patched starting residuals
    def start_layer(self, job: tuple[int, int | None, int | None]) -> int:
        return job[0] if self.grid.site == "resid_pre" else job[0] + 1

    def starts(self, ids: Sequence[int]) -> list[_Start]:
        site, grid, base, src = self.grid.site, self.grid, self.base.acts, self.src.acts
        out: list[_Start] = []
        by_layer: dict[int, list[int]] = {}
        for i in ids:
            by_layer.setdefault(grid.jobs[i][0], []).append(i)
        for layer, js in by_layer.items():
            heads = [grid.jobs[i][1] for i in js]
            pos = [grid.jobs[i][2] for i in js]
            other_mlp = base.get(_hook("mlp_out", layer)) if self.parallel else None
            if site in HEAD_SITES and grid.all_positions:
                z = base[_hook("z", layer)].unsqueeze(0).repeat(len(js), 1, 1, 1, 1)  # [J, B, W, H, dh]
                sz = src[_hook("z", layer)]
                for j, h in enumerate(heads):
                    z[j, :, :, h] = sz[:, :, h]
                pre = base[_hook("resid_pre", layer)].unsqueeze(0).expand(len(js), -1, -1, -1)
                mlp = None if other_mlp is None else other_mlp.unsqueeze(0).expand_as(pre)
                post = self._after_attn(layer, pre, self._attn_from_z(layer, z), mlp)
                out += [_Start(i, layer + 1, 0, full=post[j]) for j, i in enumerate(js)]
                continue
            p = torch.tensor(pos, device=self.read.device)
            at = lambda name: base[_hook(name, layer)][:, p]  # noqa: E731 - the base run at the jobs' positions
            if site in ("resid_pre", "resid_post"):
                vec = src[_hook(site, layer)][:, p]
            elif site == "resid_mid":  # sequential blocks only (build_grid refuses parallel ones)
                vec = self._rows(lambda m: m + self._mlp(layer, m), src[_hook(site, layer)][:, p])
            elif site == "attn_out":
                vec = self._after_attn(layer, at("resid_pre"), src[_hook(site, layer)][:, p],
                                       at("mlp_out") if self.parallel else None)
            elif site == "mlp_out":
                if self.parallel:
                    vec = at("resid_pre") + at("attn_out") + src[_hook(site, layer)][:, p]
                else:
                    vec = at("resid_mid") + src[_hook(site, layer)][:, p]
            else:  # one head at one position
                z = base[_hook("z", layer)][:, p].clone()  # [B, J, H, dh]
                sz = src[_hook("z", layer)]
                for j, (h, q) in enumerate(zip(heads, pos)):
                    z[:, j, h] = sz[:, q, h]
                vec = self._after_attn(layer, at("resid_pre"), self._attn_from_z(layer, z),
                                       at("mlp_out") if self.parallel else None)
            start = self.start_layer(grid.jobs[js[0]])
            out += [_Start(i, start, q, vec=vec[:, j]) for j, (i, q) in enumerate(zip(js, pos))]
        return out

    def tokens(self, job: tuple[int, int | None, int | None], n_batch: int) -> int:
        """Token positions a job adds to a forward (its memory cost)."""
        pos = job[2] if job[2] is not None else 0
        return n_batch * (self.width - pos)

    def chunks(self, n_batch: int, budget: int) -> list[list[int]]:
        """The grid's jobs in forwards of at most ``budget`` token positions, ordered by the layer and
        position where they join the stack (jobs joining at different layers share a forward)."""
        jobs = self.grid.jobs
        ids = sorted(range(len(jobs)), key=lambda i: (self.start_layer(jobs[i]), jobs[i][2] or 0))
        return chunk_jobs(ids, lambda i: self.tokens(jobs[i], n_batch), budget, lambda i: 0)

    # ---- the stack
    def run(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        """Final residuals at the read positions for the jobs ``ids``; a patch after an example's read
        position cannot change it (causal attention), so there it is the base run's."""
        out = self._stack(ids)
        if self.grid.all_positions:
            return out
        late = torch.tensor([self.grid.jobs[i][2] for i in ids], device=self.read.device)[:, None] > self.read[None]
        return torch.where(late[..., None], self.base.final[None], out)

    def _stack(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        """Final residuals at the read positions for the jobs ``ids``, recomputed through the stack."""
        n, B = self.n, self.read.shape[0]
        starts = self.starts(ids)
        where = {i: k for k, i in enumerate(ids)}
        out = self.base.final.new_empty(len(ids), B, self.cfg.d_model)
        groups: dict[int, _Group] = {}
        for s in starts:
            if s.layer == n:  # a patch after the last attention: only the read position can change
                if s.full is not None:
                    out[where[s.job]] = s.full[torch.arange(B, device=self.read.device), self.read]
                else:
                    out[where[s.job]] = torch.where((self.read == s.pos)[:, None], s.vec, self.base.final)
        pending = sorted((s for s in starts if s.layer < n), key=lambda s: (s.layer, s.pos))
        if not pending:
            return out
        k = 0
        for layer in range(pending[0].layer, n):
            joining: dict[int, list[_Start]] = {}
            while k < len(pending) and pending[k].layer == layer:
                joining.setdefault(pending[k].pos, []).append(pending[k])
                k += 1
            for pos, new in joining.items():
                if new[0].full is not None:
                    x = torch.stack([s.full for s in new])[:, :, pos:]
                else:
                    x = self.base.acts[_hook("resid_pre", layer)][:, pos:].unsqueeze(0).repeat(len(new), 1, 1, 1)
                    x[:, :, 0] = torch.stack([s.vec for s in new])
                g = groups.get(pos)
                if g is None:
                    groups[pos] = _Group(pos, [s.job for s in new], x)
                else:
                    g.jobs += [s.job for s in new]
                    g.x = torch.cat([g.x, x])
            finals = self._layer(layer, list(groups.values()), last=layer == n - 1)
        for g, final in zip(groups.values(), finals):
            for j, job in enumerate(g.jobs):
                out[where[job]] = final[j]
        return out

    def _layer(self, layer: int, groups: list[_Group], last: bool) -> list[Tensor] | None:
        """One block on every group; the last block computes only the read positions."""
        d, hd = self.cfg.d_model, self.H * self.dh
        sizes = [g.x.shape[0] * g.x.shape[1] * g.x.shape[2] for g in groups]
        flat = torch.cat([g.x.reshape(-1, d) for g in groups]) if len(groups) > 1 else groups[0].x.reshape(-1, d)
        read_idx = None
        if last:
            read_idx = torch.cat([self._read_index(g, off) for g, off in zip(groups, _offsets(sizes))])
            kv = self._project(layer, flat, "kv")
            q_all = self._project(layer, flat[read_idx], "q")
        else:
            qkv = self._project(layer, flat, "qkv")
            q_all, kv = qkv[:, :hd], qkv[:, hd:]
        zs, q_off = [], 0
        for g, off, size in zip(groups, _offsets(sizes), sizes):
            J, B, S = g.x.shape[:3]
            k, v = kv[off : off + size].view(J, B, S, 2, self.G, self.dh).unbind(3)
            nq = J * B if last else size
            q = q_all[q_off : q_off + nq].view(J, B, 1 if last else S, self.H, self.dh)
            q_off += nq
            zs.append(self._attend(layer, g.pos, q, k, v, last).reshape(-1, hd))
        z = torch.cat(zs) if len(zs) > 1 else zs[0]
        post = self._finish(layer, flat if read_idx is None else flat[read_idx], z)
        if last:
            counts = [g.x.shape[0] * g.x.shape[1] for g in groups]
            return [part.view(g.x.shape[0], g.x.shape[1], d) for g, part in zip(groups, post.split(counts))]
        for g, part in zip(groups, post.split(sizes)):
            g.x = part.view(g.x.shape)
        return None

    def _read_local(self, pos: int) -> Tensor:
        return (self.read - pos).clamp(min=0)

    def _read_index(self, g: _Group, offset: int) -> Tensor:
        J, B, S = g.x.shape[:3]
        rows = torch.arange(J * B, device=self.read.device)
        return offset + rows * S + self._read_local(g.pos).repeat(J)

    def _attend(self, layer: int, pos: int, q: Tensor, k: Tensor, v: Tensor, last: bool) -> Tensor:
        """Attention of suffix queries over the base run's keys before ``pos`` and the new keys.

        ``q [J, B, Q, head, d_head]``, ``k``/``v [J, B, S, kv_head, d_head]`` at positions
        ``pos..pos+S-1`` (queries there too, or one query per row at the read position when
        ``last``). Query heads are grouped over key/value heads, never expanded."""
        J, B, Q = q.shape[:3]
        S, G, r = k.shape[2], self.G, self.H // self.G
        dev = q.device
        key_pos = torch.arange(pos + S, device=dev)
        query_pos = self.read[:, None] if last else torch.arange(pos, pos + S, device=dev)  # [B, 1] or [S]
        if self.qk_norm:
            q, k = self.backend.qk_norm(layer, "q", q), self.backend.qk_norm(layer, "k", k)
        if self.rotary:
            sin, cos = self._tables(layer)
            k = self._rotate(k, sin[pos : pos + S, None], cos[pos : pos + S, None])
            if last:
                q = self._rotate(q, sin[self.read][None, :, None, None], cos[self.read][None, :, None, None])
            else:
                q = self._rotate(q, sin[pos : pos + S, None], cos[pos : pos + S, None])
        qg = q.reshape(J, B, Q, G, r, self.dh)
        scores = torch.einsum("jbqgrd,jbkgd->jbgrqk", qg, k)
        if pos:
            before = torch.einsum("jbqgrd,bkgd->jbgrqk", qg, self._k0[layer][:, :pos])
            scores = torch.cat([before, scores], -1)
        scores = score_cap(scores.reshape(J, B, self.H, Q, pos + S) / self._scale[layer],
                            self.cfg.attn_scores_soft_cap)
        if last:
            allowed = (key_pos[None, :] <= query_pos)[None, :, None, None, :]  # [1, B, 1, 1, K]
        else:
            allowed = (key_pos[None, :] <= query_pos[:, None])[None, None, None]  # [1, 1, 1, Q, K]
        window = self.window[layer]
        if window is not None:  # a sliding-window layer sees the last ``window`` positions only
            qp = query_pos if last else query_pos[:, None]
            near = key_pos[None, :] > qp - window
            allowed = allowed & (near[None, :, None, None, :] if last else near[None, None, None])
        if self.alibi is not None:
            dist = (key_pos - (query_pos if last else query_pos[:, None])).clamp(max=0).float()  # [B or Q, K]
            bias = self.alibi.view(-1, 1, 1) * dist  # [H, B or Q, K]
            bias = bias.permute(1, 0, 2)[None, :, :, None] if last else bias[None, None]
            scores = scores + bias.to(scores.dtype)
        pattern = scores.masked_fill(~allowed, float("-inf")).softmax(-1).view(J, B, G, r, Q, pos + S)
        z = torch.einsum("jbgrqk,jbkgd->jbqgrd", pattern[..., pos:], v)
        if pos:
            z = z + torch.einsum("jbgrqk,bkgd->jbqgrd", pattern[..., :pos], self.base.acts[_hook("v", layer)][:, :pos])
        return z.reshape(J, B, Q, self.H, self.dh)


def _offsets(sizes: Sequence[int]) -> list[int]:
    return list(itertools.accumulate([0, *sizes[:-1]]))
