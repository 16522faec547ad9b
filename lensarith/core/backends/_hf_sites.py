"""Where TransformerLens's hook names live in Hugging Face models (for the nnsight backend).

One ``SiteMap`` per architecture names, inside each block, the module whose input or output
is the site, in the order the block runs them (nnsight reads a trace's values in that order):

====================  ==========================  ===========================================
site                  read at                     notes
====================  ==========================  ===========================================
``hook_embed``        token embedding output      BLOOM: after ``word_embeddings_layernorm``
``hook_pos_embed``    position embedding output   GPT-2 only (the others are rotary / ALiBi)
``hook_resid_pre``    the block's input
``attn.hook_z``       input of the attention      ``[batch, pos, head, d_head]``
                      output projection
``hook_attn_out``     attention output            BLOOM: its ``dense`` output (the module adds
                                                  the residual itself); Gemma 3: the output of
                                                  ``post_attention_layernorm``
``attn.hook_q/k/v``   the q / k / v projections'  ``[batch, pos, head, d_head]`` (before rotary,
                      outputs                     as in TransformerLens); fused in GPT-2, BLOOM
``attn.hook_pattern`` attention module output [1]  read-only, eager attention only
``hook_resid_mid``    resid_pre + attn_out        BLOOM: the attention module's output; GPT-J
                                                  has none (attention and MLP run in parallel)
``mlp.hook_pre``      the up (gate) projection's  Llama: the gate's pre-activation
                      output
``mlp.hook_post``     input of the down
                      projection
``hook_mlp_out``      MLP output                  BLOOM: its ``dense_4h_to_h`` output; Gemma 3:
                                                  ``post_feedforward_layernorm``'s output
``hook_resid_post``   the block's output
====================  ==========================  ===========================================

``attn.hook_pattern`` is read from the attention module's second output (eager attention only)
and cannot be written (the module has used it by then). Per-head results and the final
norm's scale are not sites here: Hugging Face computes them inside a function, not a module (a
clear error names them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SiteMap", "SITE_MAPS", "site_map_for"]

#: hook name -> (kind, layer); kinds without a layer have layer None
_NAME = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|"
                   r"attn\.hook_z|mlp\.hook_pre|mlp\.hook_post|attn\.hook_\w+|mlp\.hook_\w+|hook_\w+)")


@dataclass(frozen=True)
class SiteMap:
    """Module paths of one Hugging Face architecture (relative to the model, or to a block).

    Attributes:
        layers: the blocks' ``ModuleList``.
        embed / pos_embed: modules whose outputs are ``hook_embed`` / ``hook_pos_embed``.
        o_proj: in a block, the attention output projection (its input is ``hook_z``).
        attn_out: in a block, the module whose output (first element) is ``hook_attn_out``.
        mid: how ``hook_resid_mid`` is found: ``"sum"`` (resid_pre + attn_out), ``"module"``
            (the output of ``attention``, which adds the residual itself), or None (no such
            site: parallel blocks).
        attention: in a block, the attention module; its output is ``(out, pattern)``, the
            pattern only under eager attention (read-only: the output is already computed).
        mlp_up: in a block, the module whose output is ``mlp.hook_pre``.
        mlp_down: in a block, the MLP's down projection (its input is ``mlp.hook_post``).
        mlp_out: in a block, the module whose output is ``hook_mlp_out``.
        ln_f / lm_head: the final norm and the unembedding.
    """

    architecture: str
    layers: str
    embed: str
    pos_embed: str | None
    o_proj: str
    attn_out: str
    mid: str | None
    attention: str
    mlp_up: str
    mlp_down: str
    mlp_out: str
    ln_f: str
    lm_head: str
    #: in a block, the q / k / v projections: one fused module (``qkv_layout`` "cat": [q | k | v],
    #: "bloom": per head (q, k, v)) or three ("separate"); their outputs are ``hook_q/k/v``
    qkv: tuple[str, ...] = ()
    qkv_layout: str = "separate"
    #: Gemma: ``attn_out`` / ``mlp_out`` are norms applied to the attention / MLP outputs before the
    #: residual adds them (TransformerLens's hooks read after those norms), so ``attn_out`` runs after
    #: ``attention`` returns; and norms scale by ``1 + weight``
    post_norms: bool = False

    def supports(self, name: str, n_layers: int) -> str | None:
        """None when ``name`` is a site here, else why not (a sentence naming the site)."""
        if name == "hook_embed":
            return None
        if name == "hook_pos_embed":
            return None if self.pos_embed else f"{self.architecture} has no learned position embedding"
        m = _NAME.fullmatch(name)
        if m is None:
            return f"{name!r} is not a site the nnsight backend maps"
        layer, kind = int(m.group(1)), m.group(2)
        if not 0 <= layer < n_layers:
            return f"layer {layer} is outside 0..{n_layers - 1}"
        if kind in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
                    "mlp.hook_pre", "mlp.hook_post"):
            return None
        if kind == "hook_resid_mid":
            return None if self.mid else (f"{self.architecture} runs attention and MLP in parallel, so "
                                          "hook_resid_mid is not a state of its residual stream")
        if kind in ("attn.hook_pattern", "attn.hook_q", "attn.hook_k", "attn.hook_v"):
            return None
        return (f"{name!r} is computed inside a Hugging Face function, not a module, so nnsight cannot read "
                f"it on {self.architecture}")

    def names(self, n_layers: int) -> list[str]:
        kinds = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post",
                 "hook_mlp_out", "hook_resid_post"]
        out = ["hook_embed"] + (["hook_pos_embed"] if self.pos_embed else [])
        out += [f"blocks.{layer}.{k}" for layer in range(n_layers) for k in kinds]
        return [n for n in out if self.supports(n, n_layers) is None]


SITE_MAPS = {
    "gpt2": SiteMap("GPT-2", "transformer.h", "transformer.wte", "transformer.wpe", "attn.c_proj", "attn", "sum",
                    "attn", "mlp.c_fc", "mlp.c_proj", "mlp", "transformer.ln_f", "lm_head",
                    ("attn.c_attn",), "cat"),
    "gptj": SiteMap("GPT-J", "transformer.h", "transformer.wte", None, "attn.out_proj", "attn", None, "attn",
                    "mlp.fc_in", "mlp.fc_out", "mlp", "transformer.ln_f", "lm_head",
                    ("attn.q_proj", "attn.k_proj", "attn.v_proj")),
    "bloom": SiteMap("BLOOM", "transformer.h", "transformer.word_embeddings_layernorm", None,
                     "self_attention.dense", "self_attention.dense", "module", "self_attention",
                     "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", "mlp.dense_4h_to_h", "transformer.ln_f", "lm_head",
                     ("self_attention.query_key_value",), "bloom"),
    "llama": SiteMap("Llama", "model.layers", "model.embed_tokens", None, "self_attn.o_proj", "self_attn", "sum",
                     "self_attn", "mlp.gate_proj", "mlp.down_proj", "mlp", "model.norm", "lm_head",
                     ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
}

SITE_MAPS["gemma3_text"] = SiteMap("Gemma 3", "model.layers", "model.embed_tokens", None, "self_attn.o_proj",
                                   "post_attention_layernorm", "sum", "self_attn", "mlp.gate_proj", "mlp.down_proj",
                                   "post_feedforward_layernorm", "model.norm", "lm_head",
                                   ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), post_norms=True)

SITE_MAPS["gpt_neox"] = SiteMap("GPT-NeoX", "gpt_neox.layers", "gpt_neox.embed_in", None, "attention.dense",
                                "attention", None, "attention", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h", "mlp",
                                "gpt_neox.final_layer_norm", "lm_head", ("attention.query_key_value",), "bloom")


def site_map_for(model_type: str, config=None) -> SiteMap | None:
    """The site map of a Hugging Face ``model_type`` (``config`` decides GPT-NeoX's residual layout)."""
    sm = SITE_MAPS.get(model_type)
    if sm is not None and model_type == "gpt_neox" and config is not None and not config.use_parallel_residual:
        from dataclasses import replace

        sm = replace(sm, mid="sum")
    return sm
