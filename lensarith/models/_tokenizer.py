"""The word-level tokenizer that tiny models and the organism use."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..tasks import WORD_PATTERN

__all__ = ["word_tokenizer", "load_tokenizer", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}


def word_tokenizer(vocab: Iterable[str], directory: str | os.PathLike[str] | None = None):
    """A word-level tokenizer (``tokenizers.WordLevel`` in ``PreTrainedTokenizerFast``).

    Text splits into words, single punctuation marks and newlines (``lensarith.tasks.WORD_PATTERN``);
    spaces are dropped, so ``" Warsaw"`` and ``"Warsaw"`` are both the one token ``Warsaw``
    (the paper scores the first token of ``" " + answer``). Special tokens ``<unk> <bos>
    <eos> <pad>`` take ids 0-3.

    Args:
        vocab: the words; duplicates and special tokens are ignored.
        directory: where to save it. TransformerLens reloads a tokenizer by its
            ``name_or_path``, so the tokenizer must live in a directory; a temporary one is
            made when this is None.

    Returns:
        A ``PreTrainedTokenizerFast`` loaded from ``directory``.

    Example:
        >>> tok = word_tokenizer(["Poland", "Warsaw"])
        >>> tok(" Poland Warsaw")["input_ids"], tok.pad_token_id
        ([4, 5], 3)
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ids: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for word in vocab:
        if word and word not in ids:
            ids[word] = len(ids)
    tok = Tokenizer(models.WordLevel(ids, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t\r]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(list(SPECIAL_TOKENS.values()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if directory is None:
        directory = tempfile.mkdtemp(prefix="lensarith-tok-")
    fast.save_pretrained(str(directory))
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def load_tokenizer(directory: Path):
    """A tokenizer saved with ``save_pretrained`` in ``directory``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))
