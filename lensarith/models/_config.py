"""Model configs as JSON, and the architecture hash recorded in every result's provenance.

The JSON holds TransformerLens 3.x ``HookedTransformerConfig`` fields on both versions: on
4.x a ``TransformerBridgeConfig`` is read from and written as the same fields, so a directory
saved under one version loads under the other and the hash of a model is the same on both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .._types import Model
from ._version import tl_major

__all__ = ["cfg_to_json", "cfg_from_json", "config_hash", "TL3_FIELDS"]

_SKIPPED = ("device", "tokenizer_prepends_bos", "n_devices")
_HASHED = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
           "normalization_type", "positional_embedding_type")
#: TransformerLens 3.9's ``HookedTransformerConfig`` init fields, in its order
TL3_FIELDS = (
    "d_model d_head n_layers n_ctx n_heads d_mlp d_vocab device use_attn_result use_split_qkv_input "
    "default_prepend_bos positional_embedding_type n_key_value_heads attn_only gated_mlp uses_rms_norm eps "
    "layer_norm_folding act_fn normalization_type num_experts experts_per_token final_rms dtype model_name "
    "use_attn_scale attn_scale use_hook_mlp_in use_attn_in use_qk_norm clip_qkv use_logn_attn train_seq_length "
    "use_dynamic_ntk_rope use_local_attn ungroup_grouped_query_attention original_architecture from_checkpoint "
    "checkpoint_index checkpoint_label_type checkpoint_value tokenizer_name window_size attn_types init_mode "
    "n_devices attention_dir seed initializer_range init_weights scale_attn_by_inverse_layer_idx d_vocab_out "
    "parallel_attn_mlp rotary_dim n_params use_hook_tokens tokenizer_prepends_bos post_embedding_ln rotary_base "
    "rotary_base_local rotary_scaling_factor trust_remote_code rotary_adjacent_pairs load_in_4bit "
    "quantization_method relative_attention_max_distance relative_attention_num_buckets decoder_start_token_id "
    "tie_word_embeddings use_normalization_before_and_after attn_scores_soft_cap output_logits_soft_cap "
    "use_NTK_by_parts_rope NTK_by_parts_low_freq_factor NTK_by_parts_high_freq_factor NTK_by_parts_factor "
    "NTK_original_ctx_len use_yarn_rope yarn_factor yarn_attention_factor yarn_beta_fast yarn_beta_slow "
    "yarn_original_max_position_embeddings yarn_truncate yarn_global_attn_only use_attention_sinks norm_topk_prob"
).split()


def _names(cfg) -> list[str]:
    if dataclasses.is_dataclass(cfg) and type(cfg).__name__ == "HookedTransformerConfig":
        return [f.name for f in dataclasses.fields(type(cfg)) if f.init]
    return list(TL3_FIELDS)


def cfg_to_json(cfg) -> dict[str, Any]:
    """The init fields of a ``HookedTransformerConfig`` as JSON values (dtype as a string); for a
    4.x ``TransformerBridgeConfig``, the same fields where it has them."""
    import torch

    out: dict[str, Any] = {}
    missing = object()
    for name in _names(cfg):
        if name in _SKIPPED:
            continue
        value = getattr(cfg, name, missing)
        if value is missing:
            continue
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[name] = value
    return out


def cfg_from_json(data: dict[str, Any]):
    """A ``HookedTransformerConfig`` (TransformerLens 3.x) or a ``TransformerBridgeConfig`` (4.x)
    from ``cfg_to_json``'s output (unknown keys ignored)."""
    import torch

    data = dict(data)
    if isinstance(data.get("dtype"), str):
        data["dtype"] = getattr(torch, data["dtype"])
    if tl_major() >= 4:
        from ._tl4 import bridge_config

        return bridge_config({k: v for k, v in data.items() if k in TL3_FIELDS})
    from transformer_lens import HookedTransformerConfig

    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return HookedTransformerConfig(**{k: v for k, v in data.items() if k in known})


def config_hash(model: Model) -> str:
    """A short hash of the architecture (layers, widths, vocabulary), for provenance checks."""
    cfg = model.cfg
    text = json.dumps({k: getattr(cfg, k) for k in _HASHED}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
