"""A GPT-2-shaped ``HookedTransformer`` (the organism) as a Hugging Face ``GPT2LMHeadModel``.

Built offline from the model's own state dict, without weight processing, so the Hugging
Face model computes the same function (logits within 1e-4 in float32):

- ``c_attn`` holds ``W_Q | W_K | W_V`` (heads contiguous), ``c_proj`` is ``W_O`` flattened;
  ``Conv1D`` weights are ``[in, out]``, TransformerLens's layout already;
- the unembedding gets its own ``lm_head`` with a bias (GPT-2's has none; the organism's
  ``b_U`` is trained), untied from ``wte`` even where ``W_U == W_E.T``.

Models with another shape (rotary, RMS norms, gated MLPs, parallel blocks, no final norm)
are refused with the reason.
"""

from __future__ import annotations

import torch

from .._errors import LensarithError
from .._types import Model
from ._rng import keeps_global_rng

__all__ = ["to_hf_gpt2"]

_ACTS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_fast": "gelu_fast", "silu": "silu"}


def _problems(cfg) -> list[str]:
    out = []
    if cfg.positional_embedding_type != "standard":
        out.append(f"positional_embedding_type={cfg.positional_embedding_type!r} (GPT-2 learns absolute positions)")
    if cfg.normalization_type != "LN":
        out.append(f"normalization_type={cfg.normalization_type!r} (GPT-2 has LayerNorms with weights)")
    if cfg.act_fn not in _ACTS:
        out.append(f"act_fn={cfg.act_fn!r}")
    for flag in ("attn_only", "gated_mlp", "parallel_attn_mlp", "use_local_attn"):
        if getattr(cfg, flag, False):
            out.append(f"{flag}=True")
    if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
        out.append("grouped-query attention")
    scale = getattr(cfg, "attn_scale", None)
    if getattr(cfg, "use_attn_scale", True) and scale is not None and abs(scale - cfg.d_head ** 0.5) > 1e-6:
        out.append(f"attn_scale={scale} (GPT-2 divides by sqrt(d_head))")
    if getattr(cfg, "attention_dir", "causal") != "causal":
        out.append("bidirectional attention")
    return out


@keeps_global_rng
def to_hf_gpt2(model: Model):
    """The ``HookedTransformer`` ``model`` as an equivalent ``transformers.GPT2LMHeadModel``.

    Args:
        model: a GPT-2-shaped HookedTransformer (learned positions, LayerNorm, a plain MLP),
            e.g. ``load_model("organism")``.

    Returns:
        A ``GPT2LMHeadModel`` in eval mode on the model's device, eager attention, whose
        ``lm_head`` has the model's ``b_U`` as its bias; ``model`` is not changed.

    Raises:
        LensarithError: the model is not GPT-2-shaped (the message says which setting).

    Example:
        >>> hf = to_hf_gpt2(model)
        >>> type(hf).__name__, hf.lm_head.bias.shape[0] == model.cfg.d_vocab
        ('GPT2LMHeadModel', True)
    """
    cfg = model.cfg
    bad = _problems(cfg)
    if bad:
        raise LensarithError(f"to_hf_gpt2: the model is not GPT-2-shaped: {'; '.join(bad)}")
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(
        vocab_size=cfg.d_vocab, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers,
        n_head=cfg.n_heads, n_inner=cfg.d_mlp, activation_function=_ACTS[cfg.act_fn],
        layer_norm_epsilon=cfg.eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        scale_attn_weights=bool(getattr(cfg, "use_attn_scale", True)), tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf_cfg._attn_implementation = "eager"
    if getattr(cfg, "architecture", None) == "TransformerLensNative":  # TransformerLens 4: a native bridge
        from ._tl4 import tl3_state_dict

        sd = tl3_state_dict(model)
    else:
        sd = {k: v.detach() for k, v in model.state_dict().items()}
    dtype = sd["embed.W_E"].dtype
    hf = GPT2LMHeadModel(hf_cfg).to(dtype)
    hf.lm_head = torch.nn.Linear(cfg.d_model, cfg.d_vocab, bias=True, dtype=dtype)
    H, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model

    def qkv(l: int, w: str) -> torch.Tensor:  # [H, d, dh] -> [d, H*dh]
        return sd[f"blocks.{l}.attn.W_{w}"].permute(1, 0, 2).reshape(d, H * dh)

    out = {"transformer.wte.weight": sd["embed.W_E"], "transformer.wpe.weight": sd["pos_embed.W_pos"],
           "transformer.ln_f.weight": sd["ln_final.w"], "transformer.ln_f.bias": sd["ln_final.b"],
           "lm_head.weight": sd["unembed.W_U"].T, "lm_head.bias": sd["unembed.b_U"]}
    for l in range(cfg.n_layers):
        p, q = f"transformer.h.{l}.", f"blocks.{l}."
        out.update({
            p + "ln_1.weight": sd[q + "ln1.w"], p + "ln_1.bias": sd[q + "ln1.b"],
            p + "ln_2.weight": sd[q + "ln2.w"], p + "ln_2.bias": sd[q + "ln2.b"],
            p + "attn.c_attn.weight": torch.cat([qkv(l, "Q"), qkv(l, "K"), qkv(l, "V")], dim=1),
            p + "attn.c_attn.bias": torch.cat([sd[q + f"attn.b_{w}"].reshape(H * dh) for w in "QKV"]),
            p + "attn.c_proj.weight": sd[q + "attn.W_O"].reshape(H * dh, d), p + "attn.c_proj.bias": sd[q + "attn.b_O"],
            p + "mlp.c_fc.weight": sd[q + "mlp.W_in"], p + "mlp.c_fc.bias": sd[q + "mlp.b_in"],
            p + "mlp.c_proj.weight": sd[q + "mlp.W_out"], p + "mlp.c_proj.bias": sd[q + "mlp.b_out"],
        })
    with torch.no_grad():
        params = dict(hf.named_parameters())
        missing = set(params) - set(out)
        if missing:  # pragma: no cover - a transformers release with other parameter names
            raise LensarithError(f"to_hf_gpt2: this transformers' GPT2LMHeadModel has parameters lensarith does not "
                                 f"fill: {sorted(missing)[:4]}")
        for name, value in out.items():
            params[name].copy_(value.to(params[name].dtype))
    return hf.to(cfg.device or "cpu").eval()
