"""The fast engine: exact patching that recomputes only the layers and positions a patch reaches.

It puts many sites on the batch axis (see ``lensarith.patching`` for the scheme) and,
for a chunk of jobs ``(layer, head, pos)`` of a ``Grid``, returns the final residual at
each example's read position. ``fast_unsupported`` says why a model cannot use it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..core import Site
from ..core.backends import backend_of
from ..core.run import has_hooks
from ._grid import HEAD_SITES, Grid
from ._grid import hook as _hook
from ._runs import Run

# --------------------------------------------------------------------------- the fast engine


def fast_unsupported(model) -> str | None:
    """Why the fast engine cannot run this model, or None."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    cfg = model.cfg
    backend = backend_of(model)
    reasons = [
        (cfg.positional_embedding_type != "standard", f"{cfg.positional_embedding_type} positional embeddings"),
        (cfg.parallel_attn_mlp, "parallel attention and MLP"),
        (cfg.use_attn_in or cfg.use_split_qkv_input, "split attention inputs"),
        (cfg.use_normalization_before_and_after, "normalisation after blocks"),
        (cfg.original_architecture in POST_NORM_ARCHITECTURES, "post-norm blocks"),
        (cfg.n_key_value_heads not in (None, cfg.n_heads), "grouped-query attention"),
        (getattr(cfg, "use_qk_norm", False) or getattr(cfg, "clip_qkv", None) is not None, "QK norm or clipping"),
        (getattr(cfg, "use_logn_attn", False) or getattr(cfg, "use_attention_sinks", False), "attention scaling or sinks"),
        (cfg.attention_dir != "causal", "bidirectional attention"),
        (getattr(cfg, "load_in_4bit", False), "4-bit weights"),
        (getattr(cfg, "n_devices", 1) > 1, "several devices"),
        *((True, why) for why in backend.fast_unsupported()),
        (has_hooks(model), "hooks already on the model"),
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


class FastEngine:
    """Exact patching that recomputes only the layers and positions a patch reaches."""

    def __init__(self, model, grid: Grid, base: Run, src: Run, read: Tensor, width: int) -> None:
        self.model, self.grid, self.base, self.src = model, grid, base, src
        self.read = read.to(model.cfg.device)
        self.width = width
        cfg = model.cfg
        self.n, self.H, self.dh = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.backend = backend_of(model)
        self._w: dict[int, dict[str, Tensor]] = {}
        self._scale = [self.backend.attn_scale(layer) for layer in range(self.n)]

    @staticmethod
    def sites(model, grid: Grid) -> tuple[list[Site], list[Site]]:
        """Sites to record in the base run and in the source run."""
        n, site = model.cfg.n_layers, grid.site
        lo = min(grid.layers)
        base = [Site("resid_pre", layer) for layer in range(lo, n)]
        base += [Site(kv, layer) for layer in range(lo, n) for kv in ("k", "v")]
        extra = {"mlp_out": ["resid_mid"], "z": ["z"], "result": ["z"]}.get(site, [])
        base += [Site(k, layer) for layer in grid.layers for k in extra]
        src_site = "z" if site in HEAD_SITES else site
        return base, [Site(src_site, layer) for layer in grid.layers]

    def weights(self, layer: int) -> dict[str, Tensor]:
        if layer not in self._w:
            attn = self.backend.block(layer)
            d, hd = self.model.cfg.d_model, self.H * self.dh
            flat = lambda w: w.permute(1, 0, 2).reshape(d, hd)  # noqa: E731 - [head, d_model, d_head] -> [d_model, hd]
            self._w[layer] = {
                "W_q": flat(attn.W_Q).contiguous(), "b_q": attn.b_Q.reshape(hd),
                "W_kv": torch.cat([flat(attn.W_K), flat(attn.W_V)], 1).contiguous(),
                "b_kv": torch.cat([attn.b_K.reshape(hd), attn.b_V.reshape(hd)]),
                "W_qkv": torch.cat([flat(attn.W_Q), flat(attn.W_K), flat(attn.W_V)], 1).contiguous(),
                "b_qkv": torch.cat([attn.b_Q.reshape(hd), attn.b_K.reshape(hd), attn.b_V.reshape(hd)]),
                "W_O": attn.W_O.reshape(hd, d).contiguous(), "b_O": attn.b_O,
            }
        return self._w[layer]

    # ---- pieces of a block on flat token lists ``[tokens, d_model]``, in cache-sized row blocks
    _ROWS = 1024

    def _mlp_half(self, layer: int, mid: Tensor) -> Tensor:
        """resid_mid -> resid_post for rows ``[n, d_model]``."""
        if self.model.cfg.attn_only:
            return mid
        return mid + self.backend.mlp(layer, self.backend.block_norm(layer, "ln2", mid))

    def _post_attn(self, layer: int, mid: Tensor) -> Tensor:
        """resid_mid -> resid_post (the MLP half of a block), any leading shape."""
        flat = mid.reshape(-1, mid.shape[-1])
        out = torch.empty_like(flat)
        for i in range(0, flat.shape[0], self._ROWS):
            out[i : i + self._ROWS] = self._mlp_half(layer, flat[i : i + self._ROWS])
        return out.view(mid.shape)

    def _project(self, layer: int, x: Tensor, weight: str) -> Tensor:
        """ln1 then a Q/K/V projection, in row blocks."""
        w = self.weights(layer)
        out = x.new_empty(x.shape[0], w["W_" + weight].shape[1])
        for i in range(0, x.shape[0], self._ROWS):
            out[i : i + self._ROWS] = torch.addmm(w["b_" + weight],
                                                  self.backend.block_norm(layer, "ln1", x[i : i + self._ROWS]),
                                                  w["W_" + weight])
        return out

    def _finish(self, layer: int, x: Tensor, z: Tensor) -> Tensor:
        """resid_pre + attention output, then the MLP half, in row blocks."""
        w = self.weights(layer)
        out = torch.empty_like(x)
        for i in range(0, x.shape[0], self._ROWS):
            mid = torch.addmm(w["b_O"], z[i : i + self._ROWS], w["W_O"])
            mid += x[i : i + self._ROWS]
            out[i : i + self._ROWS] = self._mlp_half(layer, mid)
        return out

    def _attn_from_z(self, layer: int, z: Tensor) -> Tensor:
        w = self.weights(layer)
        flat = z.reshape(-1, self.H * self.dh)
        return torch.addmm(w["b_O"], flat, w["W_O"]).reshape(*z.shape[:-2], -1)

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
            if site in HEAD_SITES and grid.all_positions:
                z = base[_hook("z", layer)].unsqueeze(0).repeat(len(js), 1, 1, 1, 1)  # [J, B, W, H, dh]
                sz = src[_hook("z", layer)]
                for j, h in enumerate(heads):
                    z[j, :, :, h] = sz[:, :, h]
                mid = base[_hook("resid_pre", layer)].unsqueeze(0) + self._attn_from_z(layer, z)
                post = self._post_attn(layer, mid)
                out += [_Start(i, layer + 1, 0, full=post[j]) for j, i in enumerate(js)]
                continue
            p = torch.tensor(pos, device=self.read.device)
            if site in ("resid_pre", "resid_post"):
                vec = src[_hook(site, layer)][:, p]
            elif site == "resid_mid":
                vec = self._post_attn(layer, src[_hook(site, layer)][:, p])
            elif site == "attn_out":
                mid = base[_hook("resid_pre", layer)][:, p] + src[_hook(site, layer)][:, p]
                vec = self._post_attn(layer, mid)
            elif site == "mlp_out":
                vec = base[_hook("resid_mid", layer)][:, p] + src[_hook(site, layer)][:, p]
            else:  # one head at one position
                z = base[_hook("z", layer)][:, p].clone()  # [B, J, H, dh]
                sz = src[_hook("z", layer)]
                for j, (h, q) in enumerate(zip(heads, pos)):
                    z[:, j, h] = sz[:, q, h]
                mid = base[_hook("resid_pre", layer)][:, p] + self._attn_from_z(layer, z)
                vec = self._post_attn(layer, mid)
            start = self.start_layer(grid.jobs[js[0]])
            out += [_Start(i, start, q, vec=vec[:, j]) for j, (i, q) in enumerate(zip(js, pos))]
        return out

    def tokens(self, job: tuple[int, int | None, int | None], n_batch: int) -> int:
        """Token positions a job adds to a forward (its memory cost)."""
        pos = job[2] if job[2] is not None else 0
        return n_batch * (self.width - pos)

    # ---- the stack
    def run(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        """Final residuals at the read positions for the jobs ``ids``."""
        n, B = self.n, self.read.shape[0]
        starts = self.starts(ids)
        where = {i: k for k, i in enumerate(ids)}
        out = self.base.final.new_empty(len(ids), B, self.model.cfg.d_model)
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
        d, hd = self.model.cfg.d_model, self.H * self.dh
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
            k, v = kv[off : off + size].view(J, B, S, 2, self.H, self.dh).unbind(3)
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
        """Attention of suffix queries over the base run's keys before ``pos`` and the new keys."""
        scale = self._scale[layer]
        cap = self.model.cfg.attn_scores_soft_cap
        S = k.shape[2]
        scores = _score_cap(torch.einsum("jbqhd,jbkhd->jbhqk", q, k) / scale, cap)
        key_pos = torch.arange(S, device=q.device)
        if last:  # one query per row: the read position
            allowed = key_pos[None, :] <= self._read_local(pos)[:, None]  # [B, S]
            mask = allowed[None, :, None, None, :]
        else:
            mask = (key_pos[None, :] <= key_pos[:, None])[None, None, None]
        scores = scores.masked_fill(~mask, float("-inf"))
        if pos:
            k0 = self.base.acts[f"blocks.{layer}.attn.hook_k"][:, :pos]
            v0 = self.base.acts[f"blocks.{layer}.attn.hook_v"][:, :pos]
            before = _score_cap(torch.einsum("jbqhd,bkhd->jbhqk", q, k0) / scale, cap)
            pattern = torch.cat([before, scores], -1).softmax(-1)
            return (torch.einsum("jbhqk,bkhd->jbqhd", pattern[..., :pos], v0)
                    + torch.einsum("jbhqk,jbkhd->jbqhd", pattern[..., pos:], v))
        return torch.einsum("jbhqk,jbkhd->jbqhd", scores.softmax(-1), v)


def _score_cap(scores: Tensor, cap: float | None) -> Tensor:
    """Attention-score soft cap ``cap * tanh(scores / cap)`` (Gemma-2), identity when off."""
    if cap is None or cap <= 0:
        return scores
    return cap * torch.tanh(scores / cap)


def _offsets(sizes: Sequence[int]) -> list[int]:
    return list(itertools.accumulate([0, *sizes[:-1]]))
