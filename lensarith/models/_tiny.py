"""Small random models with a word-level tokenizer, for tests, examples and doctests."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from ..tasks import default_vocab
from ._build import new_hooked_transformer
from ._rng import keeps_global_rng
from ._tokenizer import TEMP_PREFIX, word_tokenizer
from ._version import tl_major

__all__ = ["tiny_model"]


@keeps_global_rng
def tiny_model(
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    *,
    vocab: Sequence[str] | None = None,
    d_mlp: int | None = None,
    n_ctx: int = 128,
    seed: int = 0,
    act_fn: str = "gelu_new",
    normalization_type: str | None = "LN",
    randomize_ln: bool = True,
):
    """A small random HookedTransformer with a word-level tokenizer, for tests and examples.

    Args:
        n_layers, d_model, n_heads: the shape (``d_head = d_model // n_heads``).
        vocab: words of the tokenizer; defaults to every word of the bundled task data and
            prompt templates, so the paper's prompts tokenize.
        d_mlp: MLP width (default ``4 * d_model``).
        n_ctx: context length.
        seed: weight initialisation seed.
        act_fn, normalization_type: as in ``HookedTransformerConfig``.
        randomize_ln: give LayerNorm weights and biases random values (TransformerLens
            initialises them to 1 and 0, which hides LayerNorm bugs).

    Returns:
        A HookedTransformer in eval mode (on TransformerLens 4.x a TransformerBridge over its
        native model, with the same weights as the 3.x model of the same arguments). Its
        tokenizer lives in memory: the folder it was built in is removed once the model exists,
        so nothing is left in the temp directory.
    """
    import torch

    if vocab is None:
        vocab = default_vocab()
    if tl_major() >= 4:
        return _tiny_bridge(n_layers, d_model, n_heads, vocab=vocab, d_mlp=d_mlp, n_ctx=n_ctx, seed=seed,
                            act_fn=act_fn, normalization_type=normalization_type, randomize_ln=randomize_ln)
    from transformer_lens import HookedTransformerConfig

    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        # TransformerLens reloads the tokenizer by path while constructing the model; after
        # that the model's tokenizer needs no folder (to_tokens, to_str_tokens, save_pretrained).
        tokenizer = word_tokenizer(vocab, tmp)
        cfg = HookedTransformerConfig(
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            d_head=d_model // n_heads,
            d_mlp=d_mlp or 4 * d_model,
            d_vocab=len(tokenizer),
            n_ctx=n_ctx,
            act_fn=act_fn,
            normalization_type=normalization_type,
            seed=seed,
            device="cpu",
        )
        model = new_hooked_transformer(cfg, tokenizer)
    if randomize_ln:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                noise = torch.randn(param.shape, generator=gen)
                if leaf == "b" or leaf.startswith("b_"):  # LayerNorm and linear biases
                    param.copy_(0.1 * noise)
                elif leaf == "w":  # LayerNorm scales
                    param.copy_(1.0 + 0.2 * noise)
    model.eval()
    return model


def _tiny_bridge(n_layers, d_model, n_heads, *, vocab, d_mlp, n_ctx, seed, act_fn, normalization_type, randomize_ln):
    """``tiny_model`` on TransformerLens 4.x: the 3.x model's weights, drawn in its parameter order
    (GPT-2 initialisation: weights ``N(0, 0.8 / sqrt(d_model))``, norm scales 1, biases 0)."""
    import math

    import torch

    from ._config import cfg_from_json
    from ._tl4 import load_tl3_state, tl3_param_specs

    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        tokenizer = word_tokenizer(vocab, tmp)
        cfg = cfg_from_json(dict(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
                                 d_mlp=d_mlp or 4 * d_model, d_vocab=len(tokenizer), n_ctx=n_ctx, act_fn=act_fn,
                                 normalization_type=normalization_type, seed=seed, device="cpu"))
        model = new_hooked_transformer(cfg, tokenizer)
    specs = list(tl3_param_specs(model.cfg))
    gen = torch.Generator().manual_seed(seed)
    std = 0.8 / math.sqrt(d_model)
    state: dict[str, torch.Tensor] = {}
    for name, shape in specs:
        leaf = name.rsplit(".", 1)[-1]
        if "W_" in name:
            state[name] = torch.empty(shape).normal_(0.0, std, generator=gen)
        else:
            state[name] = torch.ones(shape) if leaf == "w" else torch.zeros(shape)
    if randomize_ln:
        gen = torch.Generator().manual_seed(seed + 1)
        for name, shape in specs:
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(shape, generator=gen)
            if leaf == "b" or leaf.startswith("b_"):
                state[name] = 0.1 * noise
            elif leaf == "w":
                state[name] = 1.0 + 0.2 * noise
    load_tl3_state(model, state, where="tiny_model's weights")
    model.eval()
    return model
