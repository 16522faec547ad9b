"""TransformerLens 4.x: ``TransformerBridge`` models in lensarith's format, tiny models, hub names.

lensarith's local format holds a TransformerLens 3.x ``HookedTransformer`` state dict and
its config. On 4.x such a directory becomes a bridge over TransformerLens's own native model
(``TransformerBridge.boot_native``), its weights converted by ``convert_tl_checkpoint``, when
the native model computes the same function as ``HookedTransformer`` for that config (see
``native_problems``: measured for standard and GPT-J-style rotary positions, every norm,
attention-only, grouped-query attention, soft caps); otherwise loading fails with a clear
``ModelNotAvailableError``. ``tl3_state_dict`` converts a native bridge back, so
``save_model`` writes directories the 3.x loader reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from .._errors import ModelNotAvailableError
from .._types import Model

__all__ = ["bridge_config", "native_problems", "new_bridge", "load_tl3_state", "tl3_state_dict", "tl3_param_specs",
           "is_native"]

#: activations the native model computes exactly like TransformerLens 3.x
_NATIVE_ACTS = ("gelu_new", "gelu", "relu", "silu")
#: 3.x config fields the native model ignores; they must be at these values for it to reproduce 3.x
_NATIVE_DEFAULTS: dict[str, Any] = {
    "parallel_attn_mlp": False, "gated_mlp": False, "scale_attn_by_inverse_layer_idx": False, "use_local_attn": False,
    "attn_types": None, "use_attn_in": False, "use_qk_norm": False, "clip_qkv": None, "use_logn_attn": False,
    "post_embedding_ln": False, "use_normalization_before_and_after": False, "num_experts": None,
    "use_dynamic_ntk_rope": False, "use_NTK_by_parts_rope": False, "use_yarn_rope": False,
    "use_attention_sinks": False, "attention_dir": "causal", "relative_attention_num_buckets": None,
    "load_in_4bit": False,
}
_WHY = {
    "parallel_attn_mlp": "parallel attention and MLP", "gated_mlp": "a gated MLP with biases",
    "scale_attn_by_inverse_layer_idx": "attention scaled by the inverse layer index",
    "use_local_attn": "local attention", "attn_types": "per-layer attention types",
    "use_attn_in": "split attention inputs", "use_qk_norm": "QK norm", "clip_qkv": "QKV clipping",
    "use_logn_attn": "log-n attention scaling", "post_embedding_ln": "a LayerNorm after the embedding",
    "use_normalization_before_and_after": "norms before and after each block", "num_experts": "mixture of experts",
    "use_dynamic_ntk_rope": "dynamic NTK RoPE", "use_NTK_by_parts_rope": "NTK-by-parts RoPE",
    "use_yarn_rope": "YaRN RoPE", "use_attention_sinks": "attention sinks", "attention_dir": "bidirectional attention",
    "relative_attention_num_buckets": "relative positional bias", "load_in_4bit": "4-bit weights",
}


def native_problems(data: dict[str, Any]) -> list[str]:
    """Why TransformerLens 4.x's native model would compute something else than 3.x's
    ``HookedTransformer`` for this config (empty: it reproduces it)."""
    out = []
    pos = data.get("positional_embedding_type", "standard")
    if pos == "rotary":
        if not data.get("rotary_adjacent_pairs", False):
            out.append("GPT-NeoX-style rotary embeddings (the native model rotates adjacent pairs only)")
    elif pos != "standard":
        out.append(f"{pos} positional embeddings")
    norm = data.get("normalization_type", "LN")
    if norm not in ("LN", "LNPre", "RMS", "RMSPre", None):
        out.append(f"normalization {norm!r}")
    if not data.get("attn_only", False) and data.get("act_fn") not in _NATIVE_ACTS:
        out.append(f"activation {data.get('act_fn')!r}")
    for field, default in _NATIVE_DEFAULTS.items():
        if field in data and data[field] != default and not (default is False and not data[field]):
            out.append(_WHY[field])
    d_vocab_out = data.get("d_vocab_out", -1)
    if d_vocab_out not in (-1, None, data.get("d_vocab")):
        out.append("an output vocabulary of another size than the input one")
    return out


def _accepted() -> set[str]:
    from transformer_lens.config import TransformerBridgeConfig

    return set(inspect.signature(TransformerBridgeConfig.__init__).parameters) - {"self"}


def bridge_config(data: dict[str, Any]):
    """A ``TransformerBridgeConfig`` from 3.x ``HookedTransformerConfig`` fields (lensarith's JSON).

    ``TransformerBridgeConfig.__init__`` rejects some 3.x fields (``d_mlp``,
    ``positional_embedding_type``, ``default_prepend_bos``, ...); they are set as attributes.
    """
    import torch
    from transformer_lens.config import TransformerBridgeConfig

    data = dict(data)
    if isinstance(data.get("dtype"), str):
        data["dtype"] = getattr(torch, data["dtype"])
    accepted = _accepted()
    cfg = TransformerBridgeConfig(**{k: v for k, v in data.items() if k in accepted})
    for key, value in data.items():
        if key in accepted:
            continue
        if isinstance(getattr(type(cfg), key, None), property):
            continue
        setattr(cfg, key, value)
    if data.get("d_mlp") is None and not data.get("attn_only", False):
        cfg.d_mlp = 4 * cfg.d_model
    return cfg


def new_bridge(cfg, tokenizer=None, *, device: str | None = None, model_name: str | None = None):
    """A bridge over TransformerLens's native model for ``cfg`` (its own random initialisation)."""
    from transformer_lens.model_bridge import TransformerBridge

    name = model_name or getattr(cfg, "model_name", None) or "custom"
    model = TransformerBridge.boot_native(cfg, tokenizer=tokenizer, device=device or getattr(cfg, "device", None),
                                          model_name=name)
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "right"
    return model


def is_native(model: Model) -> bool:
    return getattr(model.cfg, "architecture", None) == "TransformerLensNative"


_BUFFERS = (".mask", ".IGNORE", ".rotary_sin", ".rotary_cos")


def load_tl3_state(model: Model, state: dict, *, where: str) -> None:
    """Load a 3.x ``HookedTransformer`` state dict into a native bridge (buffers are rebuilt)."""
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    params = {k: v for k, v in state.items() if not k.endswith(_BUFFERS)}
    try:
        converted = convert_tl_checkpoint(params, model.cfg)
        model.load_state_dict(converted, strict=True)
    except (ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotAvailableError(f"{where} does not fit TransformerLens 4's native model: {text}") from None


def tl3_state_dict(model: Model) -> dict:
    """A native bridge's weights under 3.x ``HookedTransformer`` names and shapes (parameters only;
    the 3.x loader rebuilds the causal-mask and rotary buffers from the config)."""
    import einops

    cfg = model.cfg
    H, kv = cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads
    gqa = cfg.n_key_value_heads not in (None, cfg.n_heads)
    out = {}
    for key, t in model.state_dict().items():
        t = t.detach()
        if key.endswith(_BUFFERS) or key.endswith((".cos_cached", ".sin_cached", ".inv_freq", ".causal_mask")):
            continue
        stem, _, leaf = key.rpartition(".")
        head, _, part = stem.rpartition(".")
        if stem == "embed":
            out["embed.W_E"] = t
        elif stem == "pos_embed":
            out["pos_embed.W_pos"] = t
        elif stem == "unembed":
            out["unembed.W_U" if leaf == "weight" else "unembed.b_U"] = t.T.contiguous() if leaf == "weight" else t
        elif part in ("q", "k", "v", "o") and head.endswith(".attn"):
            n = H if part in ("q", "o") else kv
            name = {"q": "Q", "k": "K", "v": "V", "o": "O"}[part]
            prefix = "_" if gqa and part in ("k", "v") else ""
            if leaf == "weight":
                pattern = ("d_model (n d_head) -> n d_head d_model" if part == "o"
                           else "(n d_head) d_model -> n d_model d_head")
                out[f"{head}.{prefix}W_{name}"] = einops.rearrange(t, pattern, n=n).contiguous()
            else:
                out[f"{head}.{prefix}b_{name}"] = t if part == "o" else t.reshape(n, -1)
        elif part in ("in", "out", "gate") and head.endswith(".mlp"):
            out[f"{head}.{'W' if leaf == 'weight' else 'b'}_{part}"] = t.T.contiguous() if leaf == "weight" else t
        elif leaf in ("weight", "bias"):  # norms: ln1, ln2, ln_final, mlp.ln
            out[f"{stem}.{'w' if leaf == 'weight' else 'b'}"] = t
        else:
            raise ModelNotAvailableError(f"cannot write {key!r} of this TransformerBridge in lensarith's format")
    return out


def tl3_param_specs(cfg) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The parameters a 3.x ``HookedTransformer`` has for ``cfg`` (standard positions, no gating),
    in its ``named_parameters()`` order, with their shapes.

    ``tiny_model`` draws its weights in this order on 4.x, so a tiny model of a seed has the
    same weights on both versions.
    """
    d, V, H, dh = cfg.d_model, cfg.d_vocab, cfg.n_heads, cfg.d_head
    norm = cfg.normalization_type

    def ln(prefix: str, width: int):
        if norm in ("LN",):
            yield f"{prefix}.w", (width,)
            yield f"{prefix}.b", (width,)
        elif norm == "RMS":
            yield f"{prefix}.w", (width,)

    yield "embed.W_E", (V, d)
    if getattr(cfg, "positional_embedding_type", "standard") == "standard":
        yield "pos_embed.W_pos", (cfg.n_ctx, d)
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}"
        yield from ln(f"{b}.ln1", d)
        if not cfg.attn_only:
            yield from ln(f"{b}.ln2", d)
        yield f"{b}.attn.W_Q", (H, d, dh)
        yield f"{b}.attn.W_O", (H, dh, d)
        yield f"{b}.attn.b_Q", (H, dh)
        yield f"{b}.attn.b_O", (d,)
        yield f"{b}.attn.W_K", (H, d, dh)
        yield f"{b}.attn.W_V", (H, d, dh)
        yield f"{b}.attn.b_K", (H, dh)
        yield f"{b}.attn.b_V", (H, dh)
        if not cfg.attn_only:
            yield f"{b}.mlp.W_in", (d, cfg.d_mlp)
            yield f"{b}.mlp.b_in", (cfg.d_mlp,)
            yield f"{b}.mlp.W_out", (cfg.d_mlp, d)
            yield f"{b}.mlp.b_out", (d,)
    yield from ln("ln_final", d)
    yield "unembed.W_U", (d, V)
    yield "unembed.b_U", (V,)
