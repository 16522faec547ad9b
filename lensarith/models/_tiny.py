"""Small random models with a word-level tokenizer, for tests, examples and doctests."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from ..tasks import default_vocab
from ._load import new_hooked_transformer
from ._tokenizer import TEMP_PREFIX, word_tokenizer

__all__ = ["tiny_model"]


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
        A HookedTransformer in eval mode. Its tokenizer lives in memory: the folder it was
        built in is removed once the model exists, so nothing is left in the temp directory.
    """
    import torch
    from transformer_lens import HookedTransformerConfig

    if vocab is None:
        vocab = default_vocab()
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
