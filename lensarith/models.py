"""Loading and saving models: hub names, lensarith's local format, the bundled organism.

lensarith's local format is a directory holding

- ``config.json``: the ``HookedTransformerConfig`` fields (dtype as a string),
- ``model.safetensors``: the ``HookedTransformer`` state dict,
- ``tokenizer.json`` (+ the files ``PreTrainedTokenizerFast.save_pretrained`` writes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ._errors import LensarithError, ModelNotAvailableError
from ._io import atomic_directory

warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
warnings.filterwarnings("ignore", message=".*transformer_lens.utils.*deprecated.*")

from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

__all__ = [
    "load_model",
    "save_model",
    "tiny_model",
    "word_tokenizer",
    "config_hash",
    "data_dir",
    "SPECIAL_TOKENS",
]

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
# Words, numbers (with inner apostrophes and hyphens), newlines and single punctuation marks.
_WORD_PATTERN = r"\n|[A-Za-z0-9\u00C0-\u024F'_-]+|[^\sA-Za-z0-9\u00C0-\u024F]"
_HUB_HOST = ("huggingface.co", 443)


def data_dir() -> Path:
    """The folder holding ``tasks/`` and ``organism/`` (``$LENSARITH_DATA`` overrides it)."""
    env = os.environ.get("LENSARITH_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------- tokenizers


def word_tokenizer(vocab: Iterable[str], directory: str | os.PathLike[str] | None = None):
    """A word-level tokenizer (``tokenizers.WordLevel`` in ``PreTrainedTokenizerFast``).

    Text splits into words, single punctuation marks and newlines; spaces are dropped, so
    ``" Warsaw"`` and ``"Warsaw"`` are both the one token ``Warsaw`` (the paper scores the
    first token of ``" " + answer``). Special tokens ``<unk> <bos> <eos> <pad>`` take ids 0-3.

    Args:
        vocab: the words; duplicates and special tokens are ignored.
        directory: where to save it. TransformerLens reloads a tokenizer by its
            ``name_or_path``, so the tokenizer must live in a directory; a temporary one is
            made when this is None.

    Returns:
        A ``PreTrainedTokenizerFast`` loaded from ``directory``.
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
            pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(list(SPECIAL_TOKENS.values()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if directory is None:
        directory = tempfile.mkdtemp(prefix="lensarith-tok-")
    fast.save_pretrained(str(directory))
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def _load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


# --------------------------------------------------------------------------- configs


def _cfg_to_json(cfg: HookedTransformerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(HookedTransformerConfig):
        if not field.init:
            continue
        value = getattr(cfg, field.name)
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        if field.name in ("device", "tokenizer_prepends_bos", "n_devices"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[field.name] = value
    return out


def _cfg_from_json(data: dict[str, Any]) -> HookedTransformerConfig:
    data = dict(data)
    if isinstance(data.get("dtype"), str):
        data["dtype"] = getattr(torch, data["dtype"])
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return HookedTransformerConfig(**{k: v for k, v in data.items() if k in known})


def config_hash(model: HookedTransformer) -> str:
    """A short hash of the architecture (layers, widths, vocabulary), for provenance checks."""
    cfg = model.cfg
    keys = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
            "normalization_type", "positional_embedding_type")
    text = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- save / load


def save_model(model: HookedTransformer, path: str | os.PathLike[str], *, extra: dict | None = None) -> Path:
    """Save a HookedTransformer in lensarith's local format, atomically.

    Args:
        model: the model; its tokenizer (if any) is saved beside the weights.
        path: the target directory; replaced as a whole once everything is written.
        extra: JSON-serialisable metadata stored in ``lensarith.json``.

    Returns:
        The directory written.
    """
    path = Path(path)
    with atomic_directory(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(_cfg_to_json(model.cfg), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            (tmp / "lensarith.json").write_text(json.dumps(extra, indent=2))
    return path


def _load_local(directory: Path, device: str | None) -> HookedTransformer:
    cfg_path = directory / "config.json"
    weights = directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise ModelNotAvailableError(
            f"model directory {str(directory)!r} is not in lensarith's format: it needs "
            "config.json and model.safetensors (write one with lensarith.save_model)"
        )
    cfg = _cfg_from_json(json.loads(cfg_path.read_text()))
    if device is not None:
        cfg.device = device
    tokenizer = _load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
    model.load_state_dict(load_file(str(weights), device=str(cfg.device)), strict=True)
    model.eval()
    return model


def _hub_cached(official: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    hit = try_to_load_from_cache(official, "config.json")
    return isinstance(hit, str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str, device: str | None, **kwargs: Any) -> HookedTransformer:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise ModelNotAvailableError(
            f"model {name!r} is neither a local directory, 'organism', nor a TransformerLens "
            "hub name (e.g. 'gpt2', 'gpt2-medium', 'EleutherAI/gpt-j-6b')"
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    cached = _hub_cached(official)
    if not cached and (offline or not _hub_reachable()):
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise ModelNotAvailableError(
            f"cannot load {name!r}: it is not in the local Hugging Face cache and {why}. "
            "Use load_model('organism') for the bundled model, a directory written by "
            "lensarith.save_model, or download the model on a machine with network first."
        )
    if cached and not _hub_reachable():
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    return HookedTransformer.from_pretrained(name, device=device, **kwargs)


def load_model(name_or_path: str | os.PathLike[str], *, device: str | None = None, **kwargs: Any) -> HookedTransformer:
    """Load a HookedTransformer by hub name, local directory, or ``"organism"``.

    Args:
        name_or_path: ``"organism"`` (the small trained model in ``data/organism``), a
            directory in lensarith's format, or a TransformerLens hub name such as
            ``"gpt2-medium"``. Without network a hub name fails within seconds.
        device: e.g. ``"cpu"`` or ``"cuda"``; defaults to TransformerLens's choice.
        **kwargs: passed to ``HookedTransformer.from_pretrained`` for hub names.

    Returns:
        The model in eval mode, tokenizer attached, right padding.

    Example:
        >>> model = load_model("organism")  # doctest: +SKIP
    """
    if isinstance(name_or_path, str) and name_or_path == "organism":
        directory = data_dir() / "organism"
        if not (directory / "model.safetensors").is_file():
            raise ModelNotAvailableError(
                f"the organism is not bundled in {str(directory)!r}: train it with "
                "`lensarith organism-train` or point $LENSARITH_DATA at a data folder holding it"
            )
        return _load_local(directory, device)
    path = Path(name_or_path)
    if path.is_dir():
        return _load_local(path, device)
    if not isinstance(name_or_path, str) or path.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise ModelNotAvailableError(
            f"model directory {str(name_or_path)!r} does not exist or is not a directory"
        )
    return _load_hub(str(name_or_path), device, **kwargs)


# --------------------------------------------------------------------------- tiny models


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
) -> HookedTransformer:
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
        A HookedTransformer in eval mode.
    """
    if vocab is None:
        from .tasks import default_vocab

        vocab = default_vocab()
    tokenizer = word_tokenizer(vocab)
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
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
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


def check_layer(model: HookedTransformer, layer: int, *, name: str = "layer", allow_end: bool = False) -> int:
    """Validate a layer index (negative counts from the end) and return it non-negative."""
    n = model.cfg.n_layers + (1 if allow_end else 0)
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise LensarithError(f"{name} must be an int, got {layer!r}")
    if not -n <= layer < n:
        raise LensarithError(f"{name}={layer} is out of range for a model with {model.cfg.n_layers} layers: valid is {-n}..{n - 1}")
    return layer % n
