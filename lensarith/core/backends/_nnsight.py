"""nnsight over a Hugging Face model (local, NDIF with ``remote=True``, or any nnsight engine).

Every forward is one ``lm.trace``: the trace reads the sites that have hooks in the order the
model runs them (``_hf_sites``), calls the hooks on the real values (TransformerLens's
``fn(act, hook) -> new | None``), writes back what they changed, reads the residual entering
block ``stop`` and stops the model there. So the hook semantics are the
``HookedTransformer``'s: a write to ``hook_resid_mid`` moves the residual stream (it is
written as a change of the attention output), ``hook_z`` is ``[batch, pos, head, d_head]``.

- Intervention groups on the batch axis (``core.run``) make one trace per chunk, however many
  sites a sweep patches; ``traces`` counts them (recipes record it in their metadata).
- Forward only: a forward with gradients enabled raises (attribution patching and gradient
  screens run locally on a ``HookedTransformer`` or ``TransformerBridge``).
- Remote (NDIF): lensarith's modules are shipped by value with the request
  (``nnsight.register``); hooks run server-side, and the values each hook saw come back and
  are replayed through the hooks here, so captures land where the core expects them. The
  readout's weights (final norm, unembedding, embedding) are fetched once per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor

import nnsight

from ..._errors import LensarithError
from ._base import Backend, BlockWeights, Capability, HookFn
from ._hf_sites import SiteMap, site_map_for

__all__ = ["NNsightBackend", "GRADIENT_MESSAGE"]

GRADIENT_MESSAGE = (
    "this recipe needs gradients through the model (attribution patching, the gradient screen of the layer "
    "search); the nnsight backend runs forward-only recipes, locally or on NDIF. Run it locally on a "
    "HookedTransformer or TransformerBridge (load_model without backend='nnsight')")


class _Hook:
    """What a TransformerLens hook function receives as ``hook`` (its ``.name``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _path(envoy, path: str):
    for part in path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _with_first(old, new):
    return (new, *old[1:]) if isinstance(old, tuple) else new


def _apply(plan: dict[str, list[HookFn]], name: str, act: Tensor, seen: list | None) -> tuple[Tensor, bool]:
    """Run the hooks at ``name`` in order (each sees what the previous returned)."""
    fns = plan.get(name)
    if not fns:
        return act, False
    cur, changed = act, False
    for i, fn in enumerate(fns):
        if seen is not None:
            seen.append((name, i, cur.detach().clone()))
        new = fn(cur, _Hook(name))
        if new is not None and new is not cur:
            cur, changed = new, True
    return cur, changed


def _qkv(plan: dict[str, list[HookFn]], p: str, blk, sm: SiteMap, d_head: int, seen: list | None) -> None:
    """``hook_q/k/v`` at the projections' outputs, viewed as ``[batch, pos, head, d_head]``."""
    names = [p + f"attn.hook_{c}" for c in "qkv"]
    if sm.qkv_layout == "separate":
        for name, path in zip(names, sm.qkv):
            if name in plan:
                env = _path(blk, path)
                out = env.output
                b, t, _ = out.shape
                new, changed = _apply(plan, name, out.view(b, t, -1, d_head), seen)
                if changed:
                    env.output = new.reshape(b, t, -1)
        return
    env = _path(blk, sm.qkv[0])
    out = env.output
    b, t, _ = out.shape
    fused = out.view(b, t, 3, -1, d_head) if sm.qkv_layout == "cat" else out.view(b, t, -1, 3, d_head)
    changed_any = False
    for i, name in enumerate(names):
        if name not in plan:
            continue
        part = fused[:, :, i] if sm.qkv_layout == "cat" else fused[:, :, :, i]
        new, changed = _apply(plan, name, part, seen)
        if changed:
            fused = fused.clone()
            if sm.qkv_layout == "cat":
                fused[:, :, i] = new
            else:
                fused[:, :, :, i] = new
            changed_any = True
    if changed_any:
        env.output = fused.reshape(b, t, -1)


def _read_pattern(plan: dict[str, list[HookFn]], p: str, out, seen: list | None) -> None:
    name = p + "attn.hook_pattern"
    pattern = out[1] if isinstance(out, tuple) and len(out) > 1 else None
    if pattern is None:
        raise LensarithError(f"{name}: the attention returned no pattern; load the Hugging Face model with "
                             "attn_implementation='eager' (lensarith's loaders do)")
    _, changed = _apply(plan, name, pattern, seen)
    if changed:
        raise LensarithError(f"{name} is read-only on the nnsight backend: the attention output is computed from "
                             "the pattern inside a Hugging Face function before the module returns it")


def _interleave(lm, sm: SiteMap, plan: dict[str, list[HookFn]], *, rows: int, n: int, stop: int, heads: int, d_head: int,
                start: tuple[int, Tensor] | None, seen: list | None) -> Tensor:
    """The body of one trace: hooks in forward order, then the residual entering block ``stop``."""
    if "hook_embed" in plan:
        env = _path(lm, sm.embed)
        new, changed = _apply(plan, "hook_embed", env.output, seen)
        if changed:
            env.output = new
    if "hook_pos_embed" in plan:
        env = _path(lm, sm.pos_embed)
        pos = env.output  # [1, pos, d_model] in Hugging Face models: TransformerLens's hook is per row
        new, changed = _apply(plan, "hook_pos_embed", pos.expand(rows, *pos.shape[1:]), seen)
        if changed:
            env.output = new
    layers = _path(lm, sm.layers)
    last = stop if stop < n else n
    first = start[0] if start is not None else 0
    for layer in range(first, last):
        blk, p = layers[layer], f"blocks.{layer}."
        x = None
        if start is not None and layer == first:
            blk.input = start[1]
            x = start[1]
        if p + "hook_resid_pre" in plan or (sm.mid == "sum" and p + "hook_resid_mid" in plan):
            x = blk.input if x is None else x
            x, changed = _apply(plan, p + "hook_resid_pre", x, seen)
            if changed:
                blk.input = x
        if any(p + f"attn.hook_{c}" in plan for c in "qkv"):
            _qkv(plan, p, blk, sm, d_head, seen)
        if p + "attn.hook_z" in plan:
            env = _path(blk, sm.o_proj)
            z = env.input
            b, t, _ = z.shape
            new, changed = _apply(plan, p + "attn.hook_z", z.view(b, t, heads, -1), seen)
            if changed:
                env.input = new.reshape(b, t, -1)
        separate = sm.attn_out != sm.attention  # BLOOM: attn_out is the projection inside the module
        if sm.post_norms:  # Gemma: the attention returns first, then its output is normed (attn_out)
            if p + "attn.hook_pattern" in plan:
                _read_pattern(plan, p, _path(blk, sm.attention).output, seen)
            if p + "hook_attn_out" in plan or p + "hook_resid_mid" in plan:
                env = _path(blk, sm.attn_out)
                a, changed = _apply(plan, p + "hook_attn_out", env.output, seen)
                if p + "hook_resid_mid" in plan:
                    new_mid, mid_changed = _apply(plan, p + "hook_resid_mid", x + a, seen)
                    if mid_changed:
                        a, changed = new_mid - x, True
                if changed:
                    env.output = a
        elif separate and p + "hook_attn_out" in plan:
            env = _path(blk, sm.attn_out)
            new, changed = _apply(plan, p + "hook_attn_out", env.output, seen)
            if changed:
                env.output = new
        if not sm.post_norms and (p + "attn.hook_pattern" in plan or (not separate and p + "hook_attn_out" in plan)
                                  or (p + "hook_resid_mid" in plan and sm.mid is not None)):
            env = _path(blk, sm.attention)
            out = env.output
            if p + "attn.hook_pattern" in plan:
                _read_pattern(plan, p, out, seen)
            a, changed = _first(out), False
            if not separate:
                a, changed = _apply(plan, p + "hook_attn_out", a, seen)
            if p + "hook_resid_mid" in plan:  # "sum": resid_pre + attn_out; "module": the output itself
                mid = x + a if sm.mid == "sum" else a
                new_mid, mid_changed = _apply(plan, p + "hook_resid_mid", mid, seen)
                if mid_changed:
                    a, changed = (new_mid - x if sm.mid == "sum" else new_mid), True
            if changed:
                env.output = _with_first(out, a)
        if p + "mlp.hook_pre" in plan:
            env = _path(blk, sm.mlp_up)
            new, changed = _apply(plan, p + "mlp.hook_pre", env.output, seen)
            if changed:
                env.output = new
        if p + "mlp.hook_post" in plan:
            env = _path(blk, sm.mlp_down)
            new, changed = _apply(plan, p + "mlp.hook_post", env.input, seen)
            if changed:
                env.input = new
        if p + "hook_mlp_out" in plan:
            env = _path(blk, sm.mlp_out)
            out = env.output
            new, changed = _apply(plan, p + "hook_mlp_out", _first(out), seen)
            if changed:
                env.output = _with_first(out, new)
        if p + "hook_resid_post" in plan or (stop == n and layer == n - 1):
            out = blk.output
            new, changed = _apply(plan, p + "hook_resid_post", _first(out), seen)
            if changed:
                blk.output = _with_first(out, new)
            if stop == n and layer == n - 1:
                return new
    if start is not None and first == stop:  # pragma: no cover - guarded by the caller
        return start[1]
    return layers[stop].input


@contextmanager
def _shipped(remote: bool):
    """For a remote trace: lensarith's code travels with the request, by value (``nnsight.register``),
    for this trace only (the registration is undone after it)."""
    if not remote:
        yield
        return
    import nnsight
    from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES

    name = __name__.split(".")[0]
    added = name not in _PICKLE_BY_VALUE_MODULES
    nnsight.register(name)
    try:
        yield
    finally:
        if added:
            _PICKLE_BY_VALUE_MODULES.discard(name)


def replay(plan: dict[str, list[HookFn]], seen: list) -> None:
    """Call each hook again on the value it saw in a remote trace (``(name, index, value)``), so
    captures and other side effects of hooks happen in this process too."""
    for name, i, act in seen:
        plan[name][i](act, _Hook(name))


class NNsightBackend(Backend):
    """An ``NNsightModel`` (``lensarith.models``): one nnsight trace per forward.

    Attributes:
        traces: traces run so far (a sweep's count is the difference before and after it).
        site_map: where the hook names live in this architecture.
    """

    capabilities = frozenset({Capability.TRACES})

    def __init__(self, model) -> None:
        super().__init__(model)
        import nnsight

        self.name = f"nnsight-{nnsight.__version__}"
        sm = site_map_for(model.architecture, model.module.config)
        if sm is None:  # pragma: no cover - wrap_nnsight refuses these
            raise LensarithError(f"no nnsight site map for {model.architecture!r}")
        self.site_map = sm
        self.traces = 0
        self._active: list[tuple[str, HookFn]] = []
        self._fetched: dict[str, Tensor] = {}

    def _label(self) -> str:
        m = self.model
        return f"{type(m.module).__name__} ({m.cfg.model_name})"

    def explain_missing(self, name: str) -> str | None:
        why = self.site_map.supports(name, self.model.cfg.n_layers)
        return None if why is None else f"site {name!r} is not available on the nnsight {self._label()}: {why}"

    def why_not(self, capability: Capability) -> str | None:
        if capability is Capability.GRADIENTS:
            return GRADIENT_MESSAGE
        return super().why_not(capability)

    # ---- hooks: kept for the next forward of this ``with`` block
    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]):
        for name, _ in fwd_hooks:
            why = self.why_no_hook(name)
            if why is not None:
                raise LensarithError(why)
        saved = self._active
        self._active = saved + list(fwd_hooks)
        try:
            yield self.model
        finally:
            self._active = saved

    def has_hook(self, name: str) -> bool:
        return self.explain_missing(name) is None

    def has_user_hooks(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in self.model.module.modules())

    # ---- forwards
    def _trace(self, tokens: Tensor, stop: int, start: tuple[int, Tensor] | None = None) -> Tensor:
        if torch.is_grad_enabled():
            raise LensarithError(GRADIENT_MESSAGE)
        model = self.model
        n = model.cfg.n_layers
        if not 0 <= stop <= n:
            raise LensarithError(f"stop layer {stop} is outside 0..{n}")
        plan: dict[str, list[HookFn]] = {}
        for name, fn in self._active:
            plan.setdefault(name, []).append(fn)
        lm, sm, heads = model.lm, self.site_map, model.cfg.n_heads
        remote = bool(model.remote)
        self.traces += 1
        kwargs = {"remote": True} if remote else {}
        with _shipped(remote), lm.trace(tokens, **kwargs) as tracer:
            seen = [] if remote else None
            resid = _interleave(lm, sm, plan, rows=tokens.shape[0], n=n, stop=stop, heads=heads, d_head=model.cfg.d_head, start=start, seen=seen)
            resid = resid.save()
            if remote:
                seen = nnsight.save(seen)
            tracer.stop()
        if remote:  # the hooks ran server-side; replay them here on what they saw (captures land locally)
            replay(plan, seen)
        return resid

    def forward(self, tokens: Int[Tensor, "batch pos"], *, stop: int) -> Float[Tensor, "batch pos d_model"]:
        return self._trace(tokens, stop)

    def forward_from(self, x: Float[Tensor, "batch pos d_model"], *, start: int, stop: int
                     ) -> Float[Tensor, "batch pos d_model"]:
        if not 0 <= start < stop:
            raise LensarithError(f"start layer {start} must be below the stop layer {stop}")
        placeholder = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        return self._trace(placeholder, stop, (start, x))

    # ---- readout: the Hugging Face modules, called directly (weights fetched once when remote)
    def _module(self, path: str):
        mod = self.model.module
        for part in path.split("."):
            mod = getattr(mod, part)
        return mod

    def _param(self, path: str) -> Tensor | None:
        """A parameter by module path (``lm_head.bias``); fetched from NDIF once for a remote model."""
        owner, _, attr = path.rpartition(".")
        value = getattr(self._module(owner), attr, None)
        if value is None or not self.model.remote or value.device.type != "meta":
            return value
        if path not in self._fetched:
            lm = self.model.lm
            with lm.trace(torch.zeros((1, 1), dtype=torch.long), remote=True) as tracer:
                got = getattr(_path(lm, owner), attr).save()
                tracer.stop()
            self._fetched[path] = got
        return self._fetched[path]

    def final_norm(self, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        """The final norm's formula on its weights (``x`` visits the norm's device and comes back)."""
        w, b = self.final_norm_weights()
        eps = self.model.cfg.eps
        where, x = x.device, x.to(w.device)
        if self.model.cfg.normalization_type == "RMS":
            x32 = x.float()
            out = w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
        else:
            out = torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)
        return out.to(where)

    def final_norm_weights(self) -> tuple[Float[Tensor, " d_model"] | None, Float[Tensor, " d_model"] | None]:
        ln = self.site_map.ln_f
        w, b = self._param(ln + ".weight"), self._param(ln + ".bias")
        if self.site_map.post_norms:  # Gemma's RMSNorm scales by 1 + weight (in float32)
            w = 1.0 + w.float()
        return w, b

    def unembed(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        W_U = self.W_U
        return (x.to(W_U.device) @ W_U + self.b_U).to(x.device)

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self._param(self.site_map.lm_head + ".weight").T

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        b = self._param(self.site_map.lm_head + ".bias")
        if b is None:
            W = self._param(self.site_map.lm_head + ".weight")
            return torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
        return b

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        emb = {"bloom": "transformer.word_embeddings"}.get(self.model.architecture, self.site_map.embed)
        return self._param(emb + ".weight")

    # ---- block weights in TransformerLens's layout (head-level decomposition, figures)
    def block(self, layer: int) -> BlockWeights:
        cfg = self.model.cfg
        H, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        p = f"{self.site_map.layers}.{layer}."
        arch = self.model.architecture
        g = lambda path: self._param(p + path)  # noqa: E731

        def zeros(*shape):
            ref = g(self.site_map.o_proj + ".weight")
            return torch.zeros(shape, dtype=ref.dtype, device=ref.device)

        def heads_in(w, n_heads=H):  # Linear [n*dh, d] -> [H, d, dh]
            w = w.view(n_heads, dh, d).transpose(1, 2)
            return torch.repeat_interleave(w, H // n_heads, dim=0) if n_heads != H else w

        def lin_T(w):  # Linear weight [out, in] -> [in, out]
            return None if w is None else w.T

        if arch == "gpt2":
            Wqkv, bqkv = g("attn.c_attn.weight"), g("attn.c_attn.bias")
            Wq, Wk, Wv = (Wqkv[:, i * d:(i + 1) * d].reshape(d, H, dh).permute(1, 0, 2) for i in range(3))
            bq, bk, bv = (bqkv[i * d:(i + 1) * d].reshape(H, dh) for i in range(3))
            W_O, b_O = g("attn.c_proj.weight").reshape(H, dh, d), g("attn.c_proj.bias")
            return BlockWeights(Wq, Wk, Wv, W_O, bq, bk, bv, b_O, W_in=g("mlp.c_fc.weight"), b_in=g("mlp.c_fc.bias"),
                                W_out=g("mlp.c_proj.weight"), b_out=g("mlp.c_proj.bias"))
        if arch in ("bloom", "gpt_neox"):
            att = "self_attention." if arch == "bloom" else "attention."
            w = g(att + "query_key_value.weight").view(H, 3, dh, d)
            b = g(att + "query_key_value.bias")
            b = b.view(H, 3, dh) if b is not None else zeros(H, 3, dh)
            Wq, Wk, Wv = (w[:, i].transpose(1, 2) for i in range(3))
            W_O = g(att + "dense.weight").T.reshape(H, dh, d)
            b_O = g(att + "dense.bias") if g(att + "dense.bias") is not None else zeros(d)
            return BlockWeights(Wq, Wk, Wv, W_O, b[:, 0], b[:, 1], b[:, 2], b_O,
                                W_in=lin_T(g("mlp.dense_h_to_4h.weight")), b_in=g("mlp.dense_h_to_4h.bias"),
                                W_out=lin_T(g("mlp.dense_4h_to_h.weight")), b_out=g("mlp.dense_4h_to_h.bias"))
        prefix = "attn." if arch == "gptj" else "self_attn."
        kv = cfg.n_key_value_heads or H
        Wq = heads_in(g(prefix + "q_proj.weight"))
        Wk, Wv = heads_in(g(prefix + "k_proj.weight"), kv), heads_in(g(prefix + "v_proj.weight"), kv)
        out_proj = "out_proj" if arch == "gptj" else "o_proj"
        W_O = g(prefix + out_proj + ".weight").T.reshape(H, dh, d)
        bias = lambda name, *shape: g(name) if g(name) is not None else zeros(*shape)  # noqa: E731
        if arch == "gptj":
            return BlockWeights(Wq, Wk, Wv, W_O, zeros(H, dh), zeros(H, dh), zeros(H, dh), zeros(d),
                                W_in=lin_T(g("mlp.fc_in.weight")), b_in=g("mlp.fc_in.bias"),
                                W_out=lin_T(g("mlp.fc_out.weight")), b_out=g("mlp.fc_out.bias"))
        return BlockWeights(Wq, Wk, Wv, W_O, zeros(H, dh), zeros(H, dh), zeros(H, dh),
                            bias(prefix + "o_proj.bias", d), W_in=lin_T(g("mlp.up_proj.weight")),
                            b_in=zeros(cfg.d_mlp), W_out=lin_T(g("mlp.down_proj.weight")), b_out=zeros(d),
                            W_gate=lin_T(g("mlp.gate_proj.weight")))

    def attn_scale(self, layer: int) -> float:
        return self.model.cfg.d_head ** 0.5

    def fast_unsupported(self) -> list[str]:
        return ["an nnsight model (the fast engine recomputes blocks from weights in this process; the hook "
                "engine batches the sweep's sites into one trace per chunk instead)"]
