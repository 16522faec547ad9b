"""The word-level tokenizer that tiny models and the organism use, and loading saved tokenizers."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .._errors import ModelNotAvailableError
from ..tasks import WORD_PATTERN

__all__ = ["word_tokenizer", "load_tokenizer", "SPECIAL_TOKENS", "TEMP_PREFIX"]

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}

#: Prefix of the temporary folders tokenizers are saved to (TransformerLens reloads them by path).
TEMP_PREFIX = "lensarith-tok-"


def _remove_at_exit(directory: str) -> None:
    """Remove ``directory`` when this interpreter exits (not when a forked child does)."""
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


def word_tokenizer(vocab: Iterable[str], directory: str | os.PathLike[str] | None = None):
    """A word-level tokenizer (``tokenizers.WordLevel`` in ``PreTrainedTokenizerFast``).

    Text splits into words, single punctuation marks and newlines (``lensarith.tasks.WORD_PATTERN``);
    spaces are dropped, so ``" Warsaw"`` and ``"Warsaw"`` are both the one token ``Warsaw``
    (the paper scores the first token of ``" " + answer``). Special tokens ``<unk> <bos>
    <eos> <pad>`` take ids 0-3.

    Args:
        vocab: the words; duplicates and special tokens are ignored.
        directory: where to save it. TransformerLens reloads a tokenizer by its
            ``name_or_path``, so the tokenizer must live in a directory. When this is None a
            temporary ``lensarith-tok-*`` folder is made; it stays until the interpreter exits
            and is removed then.

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
        directory = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        _remove_at_exit(directory)
    fast.save_pretrained(str(directory))
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def _check_json_file(path: Path) -> None:
    """Raise ``ModelNotAvailableError`` naming ``path`` unless it holds a JSON object."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ModelNotAvailableError(f"cannot read the tokenizer file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelNotAvailableError(
            f"the tokenizer file {str(path)!r} is not UTF-8 text (corrupted?): rewrite the directory "
            "with lensarith.save_model") from None
    except json.JSONDecodeError as exc:
        raise ModelNotAvailableError(
            f"the tokenizer file {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); it is truncated or corrupted: rewrite the directory with lensarith.save_model"
        ) from None
    if not isinstance(data, dict):
        raise ModelNotAvailableError(
            f"the tokenizer file {str(path)!r} holds a JSON {type(data).__name__}, not an object: rewrite "
            "the directory with lensarith.save_model")


def load_tokenizer(directory: Path):
    """A tokenizer saved with ``save_pretrained`` in ``directory``.

    Args:
        directory: the folder holding ``tokenizer.json`` (and ``tokenizer_config.json``).

    Returns:
        The tokenizer (``AutoTokenizer.from_pretrained``).

    Raises:
        ModelNotAvailableError: a tokenizer file is unreadable, not JSON, or not a tokenizer;
            the message names the file.
    """
    from transformers import AutoTokenizer

    directory = Path(directory)
    files = [name for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
             if (directory / name).is_file()]
    for name in files:
        _check_json_file(directory / name)
    try:
        tok = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # tokenizers raises plain Exception for a malformed tokenizer.json
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotAvailableError(
            f"the tokenizer in {str(directory)!r} ({', '.join(files) or 'no tokenizer files'}) cannot be "
            f"loaded: {what}. Rewrite the directory with lensarith.save_model, or remove the tokenizer "
            "files to load the model without a tokenizer"
        ) from None
    if "tokenizer_config.json" not in files:
        # tokenizer_config.json names the special tokens' roles; without it, lensarith's word tokenizer
        # gets them back from its vocabulary (its <unk> <bos> <eos> <pad>), other tokenizers stay as loaded
        # (TransformerLens reloads a tokenizer from its folder, so the roles go into a complete copy)
        vocab = tok.get_vocab()
        restored = False
        for role, text in SPECIAL_TOKENS.items():
            if getattr(tok, role, None) is None and text in vocab:
                setattr(tok, role, text)
                restored = True
        if restored:
            copy = tempfile.mkdtemp(prefix=TEMP_PREFIX)
            _remove_at_exit(copy)
            tok.save_pretrained(copy)
            tok = AutoTokenizer.from_pretrained(copy)
    return tok
