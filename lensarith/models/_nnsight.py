"""A Hugging Face causal LM behind nnsight, with what lensarith reads of a model.

``NNsightModel`` holds an nnsight ``Envoy`` (``nnsight.NNsight`` over a local module, or a
``TransformersModel`` / ``LanguageModel`` for NDIF), the tokenizer and a TransformerLens-style
``cfg`` (``n_layers``, ``d_model``, ``normalization_type`` ...) built from the Hugging Face
config, so recipes read it as they read a ``HookedTransformer``. The core runs it through
``lensarith.core.backends.NNsightBackend`` (one nnsight trace per forward).

nnsight is imported only here and only when a model is wrapped (``pip install lensarith[nnsight]``).

Example:
    >>> from lensarith.models import to_hf_gpt2
    >>> nn = wrap_nnsight(to_hf_gpt2(model), tokenizer=model.tokenizer)
    >>> nn.cfg.n_layers == model.cfg.n_layers, nn.architecture
    (True, 'gpt2')
"""

from __future__ import annotations

from typing import Any

import torch

from .._errors import LensarithError
from .._types import Model

__all__ = ["NNsightModel", "wrap_nnsight", "load_nnsight", "ARCHITECTURES"]

#: Hugging Face ``model_type`` -> what the TransformerLens-style cfg says about it
ARCHITECTURES = {
    "gpt2": dict(normalization_type="LN", positional_embedding_type="standard", parallel_attn_mlp=False),
    "gptj": dict(normalization_type="LN", positional_embedding_type="rotary", parallel_attn_mlp=True),
    "bloom": dict(normalization_type="LN", positional_embedding_type="alibi", parallel_attn_mlp=False),
    "llama": dict(normalization_type="RMS", positional_embedding_type="rotary", parallel_attn_mlp=False),
    "gpt_neox": dict(normalization_type="LN", positional_embedding_type="rotary", parallel_attn_mlp=True),
    "gemma3_text": dict(normalization_type="RMS", positional_embedding_type="rotary", parallel_attn_mlp=False),
}


def _require_nnsight():
    try:
        import nnsight
    except ImportError:
        raise LensarithError("the nnsight backend needs nnsight: pip install 'lensarith[nnsight]'") from None
    return nnsight


def _num(c, *names, default=None):
    for n in names:
        v = getattr(c, n, None)
        if v is not None:
            return v
    return default


def _tl_cfg(hf_config, *, device: str, dtype: torch.dtype, name: str, prepend_bos: bool):
    """A ``HookedTransformerConfig`` describing the Hugging Face model (TransformerLens 3 and 4 have it)."""
    try:
        from transformer_lens import HookedTransformerConfig
    except Exception:  # TransformerLens 4: the class lives in its config module
        from transformer_lens.config import HookedTransformerConfig
    kind = hf_config.model_type
    if kind not in ARCHITECTURES:
        raise LensarithError(f"the nnsight backend maps sites for {', '.join(ARCHITECTURES)} models; this one is "
                             f"{kind!r} ({type(hf_config).__name__})")
    d = _num(hf_config, "n_embd", "hidden_size")
    H = _num(hf_config, "n_head", "num_attention_heads")
    act = {"gpt2": lambda: hf_config.activation_function, "gptj": lambda: hf_config.activation_function,
           "bloom": lambda: "gelu_fast", "llama": lambda: hf_config.hidden_act,
           "gpt_neox": lambda: hf_config.hidden_act, "gemma3_text": lambda: hf_config.hidden_activation}[kind]()
    gated = kind in ("llama", "gemma3_text")
    d_head = _num(hf_config, "head_dim", default=None) if kind == "gemma3_text" else None
    eps = _num(hf_config, "layer_norm_epsilon", "rms_norm_eps", "layer_norm_eps", default=1e-5)
    arch = dict(ARCHITECTURES[kind])
    if kind == "gpt_neox":
        arch["parallel_attn_mlp"] = bool(hf_config.use_parallel_residual)
    return HookedTransformerConfig(
        n_layers=_num(hf_config, "n_layer", "num_hidden_layers"), d_model=d, n_heads=H, d_head=d_head or d // H,
        d_mlp=_num(hf_config, "n_inner", "intermediate_size", default=None) or 4 * d,
        d_vocab=hf_config.vocab_size, n_ctx=_num(hf_config, "n_positions", "max_position_embeddings", "seq_length",
                                                 default=2048),
        act_fn=act, eps=eps, model_name=name, device=device, dtype=dtype, default_prepend_bos=prepend_bos,
        n_key_value_heads=_num(hf_config, "num_key_value_heads", default=None) if gated else None,
        gated_mlp=gated, use_normalization_before_and_after=kind == "gemma3_text", original_architecture=(hf_config.architectures or [kind])[0], **arch)


class NNsightModel:
    """A Hugging Face causal LM wrapped by nnsight (see ``wrap_nnsight``).

    Attributes:
        lm: the nnsight ``Envoy`` every forward traces.
        module: the Hugging Face ``PreTrainedModel`` under it (meta tensors for a remote model).
        architecture: the Hugging Face ``model_type`` (``gpt2``, ``gpt_neox``, ``gptj``, ``bloom``, ``llama``).
        remote: traces run on NDIF (``remote=True`` is passed to every ``lm.trace``).
        cfg, tokenizer: as on a ``HookedTransformer``.
    """

    lensarith_nnsight = True  # what backend_of recognises, without importing nnsight

    def __init__(self, lm, tokenizer, cfg, *, remote: bool = False) -> None:
        self.lm = lm
        self.module = lm._module
        self.architecture = self.module.config.model_type
        if tokenizer is not None and getattr(tokenizer, "padding_side", None) not in (None, "right"):
            import copy

            tokenizer = copy.copy(tokenizer)  # right padding for lensarith; the caller's tokenizer stays as it was
            tokenizer.padding_side = "right"
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.remote = remote

    def __repr__(self) -> str:
        where = "NDIF" if self.remote else str(self.cfg.device)
        return f"NNsightModel({type(self.module).__name__}, {self.cfg.n_layers} layers, on {where})"

    # ---- what the core and the recipes read of a model
    def modules(self):
        return self.module.modules()

    def eval(self):
        self.module.eval()
        return self

    def parameters(self):
        return self.module.parameters()

    def to_tokens(self, text: str | list[str], prepend_bos: bool | None = None, truncate: bool = False,
                  move_to_device: bool = True, **_: Any) -> torch.Tensor:
        """Token ids ``[1, pos]`` (or ``[n, pos]``, right-padded) as ``HookedTransformer.to_tokens`` gives them."""
        if self.tokenizer is None:
            raise LensarithError("this nnsight model has no tokenizer: pass tokenizer= to wrap_nnsight")
        texts = [text] if isinstance(text, str) else list(text)
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        rows = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            if bos:
                ids = [self.tokenizer.bos_token_id] + list(ids)
            rows.append(ids)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        return out.to(self.cfg.device) if move_to_device and not self.remote else out

    def to_str_tokens(self, tokens, prepend_bos: bool | None = None, **_: Any) -> list[str]:
        if isinstance(tokens, str):
            tokens = self.to_tokens(tokens, prepend_bos=prepend_bos)[0]
        ids = torch.as_tensor(tokens).flatten().tolist()
        return self.tokenizer.batch_decode([[int(t)] for t in ids], clean_up_tokenization_spaces=False)


    def to_single_str_token(self, token: int) -> str:
        return self.to_str_tokens(torch.tensor([int(token)]))[0]

    def to_string(self, tokens) -> str:
        return self.tokenizer.decode(torch.as_tensor(tokens).flatten().tolist(), clean_up_tokenization_spaces=False)


def wrap_nnsight(model: Model, tokenizer=None, *, remote: bool = False, name: str | None = None,
                 prepend_bos: bool | None = None) -> NNsightModel:
    """Wrap a Hugging Face causal LM (or an nnsight model over one) for lensarith's recipes.

    Args:
        model: in eval mode (a module in train mode is refused, not switched), a ``transformers`` causal LM (``GPT2LMHeadModel``, ``GPTNeoXForCausalLM``, ``GPTJForCausalLM``,
            ``BloomForCausalLM``, ``LlamaForCausalLM``), or an nnsight ``NNsight`` /
            ``TransformersModel`` / ``LanguageModel`` over one (for NDIF: built from the repo
            id, weights on the meta device).
        tokenizer: the tokenizer (default: the nnsight model's). It is not changed: lensarith pads
            a right-padding copy. One with more tokens than the model's vocabulary is refused.
        remote: run every trace on NDIF (``remote=True``); the key comes from ``NDIF_API_KEY``
            (nnsight's ``CONFIG``). Local modules such as lensarith are shipped with the request.
        name: the model name recorded in results (default: the config's ``_name_or_path``).
        prepend_bos: whether prompts get the BOS token (default: the tokenizer has one).

    Returns:
        An ``NNsightModel``.

    Raises:
        LensarithError: nnsight is missing, or the architecture has no site map.
    """
    nnsight = _require_nnsight()
    if not isinstance(remote, bool):
        raise LensarithError(f"remote must be True or False, got {remote!r}")
    if prepend_bos is not None and not isinstance(prepend_bos, bool):
        raise LensarithError(f"prepend_bos must be None, True or False, got {prepend_bos!r}")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise LensarithError(f"name must be None or a string (the model name recorded in results), got {name!r}")
    if tokenizer is not None and not (callable(tokenizer) and hasattr(tokenizer, "convert_ids_to_tokens")):
        raise LensarithError(f"tokenizer must be a Hugging Face tokenizer (transformers PreTrainedTokenizer[Fast]), "
                             f"got {type(tokenizer).__name__}")
    if isinstance(model, torch.nn.Module):
        if getattr(getattr(model, "config", None), "model_type", None) is None:
            raise LensarithError(f"model must be a Hugging Face causal LM, got a {type(model).__name__}")
        if model.training:
            raise LensarithError(f"model is in train mode (dropout on: every readout would be random); call "
                                 f"model.eval() before wrap_nnsight ({type(model).__name__})")
        lm = nnsight.NNsight(model)
    elif hasattr(model, "_module") and hasattr(model, "trace"):
        if getattr(model._module, "training", False):
            raise LensarithError(f"model is in train mode (dropout on: every readout would be random); call "
                                 f"model._module.eval() before wrap_nnsight ({type(model._module).__name__})")
        lm = model
    else:
        raise LensarithError(f"model must be a Hugging Face causal LM or an nnsight model, got {type(model).__name__}")
    module = lm._module
    tok = tokenizer if tokenizer is not None else getattr(lm, "tokenizer", None)
    vocab = getattr(module.config, "vocab_size", None)
    if tok is not None and isinstance(vocab, int) and len(tok) > vocab:
        raise LensarithError(f"tokenizer has {len(tok)} tokens but the model's vocabulary has {vocab}: they come from "
                             "different models (ids past the vocabulary would index nothing); pass the model's own tokenizer")
    try:
        p = next(module.parameters())
        device, dtype = ("cpu" if p.device.type == "meta" else str(p.device)), p.dtype
    except StopIteration:  # pragma: no cover
        device, dtype = "cpu", torch.float32
    bos = prepend_bos if prepend_bos is not None else bool(tok is not None and tok.bos_token is not None)
    label = name or getattr(module.config, "_name_or_path", None) or module.config.model_type
    cfg = _tl_cfg(module.config, device=device, dtype=dtype, name=str(label) or module.config.model_type,
                  prepend_bos=bos)
    return NNsightModel(lm, tok, cfg, remote=remote)


def load_nnsight(name_or_path: str, *, local, device: str | None, device_map, remote: bool, **kwargs: Any
                 ) -> NNsightModel:
    """``load_model(..., backend="nnsight")``: a bundled organism or a lensarith folder (exported with
    ``to_hf_gpt2``), a Hugging Face folder (``from_pretrained``, ``device_map`` passed on), or a hub
    repository id through nnsight (weights on ``device_map``; ``remote=True``: on NDIF, nothing
    downloaded but the config and tokenizer). ``local(path)`` loads a lensarith folder (from ``_load``)."""
    from pathlib import Path

    from .._errors import ModelNotAvailableError
    from .._paths import BUNDLED_MODELS, data_dir
    from ._export import to_hf_gpt2
    from ._hf import is_hf_directory
    from ._tokenizer import load_tokenizer

    nnsight = _require_nnsight()
    if name_or_path in BUNDLED_MODELS or (Path(name_or_path).is_dir() and not is_hf_directory(Path(name_or_path))):
        if remote:
            raise LensarithError("remote=True runs a model NDIF hosts (a hub repository id), not "
                                 f"{name_or_path!r}; load it locally (remote=False)")
        directory = data_dir() / name_or_path if name_or_path in BUNDLED_MODELS else Path(name_or_path)
        if kwargs:
            raise LensarithError(f"{', '.join(f'{k}=' for k in kwargs)}: options for Hugging Face's from_pretrained, which "
                                 f"{name_or_path!r} (a lensarith folder, converted from its float32 weights) does not go "
                                 "through; load without them (cast with model.module.to(dtype) afterwards if needed)")
        tl = local(directory)
        hf = to_hf_gpt2(tl)
        if device_map is not None:
            from accelerate import dispatch_model, infer_auto_device_map

            dm = infer_auto_device_map(hf) if device_map == "auto" else device_map
            hf = dispatch_model(hf, device_map=dm)
        model = wrap_nnsight(hf, tokenizer=tl.tokenizer, name=tl.cfg.model_name,
                             prepend_bos=tl.cfg.default_prepend_bos)
        # a lensarith-built model, not a hub checkpoint (the paper's BOS convention reads this)
        model.cfg.original_architecture = getattr(tl.cfg, "original_architecture", None)
        return model
    path = Path(name_or_path)
    if path.is_dir():
        if remote:
            raise LensarithError(f"remote=True runs a model NDIF hosts (a hub repository id), not the folder {name_or_path!r}")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager", device_map=device_map,
                                                      **kwargs)
        except Exception as exc:  # OSError, ValueError (an unknown model type), SafetensorError
            raise ModelNotAvailableError(f"{name_or_path!r} is not a Hugging Face model folder transformers can "
                                         f"load: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from None
        if device is not None and device_map is None:
            hf = hf.to(device)
        tok = load_tokenizer(path) if (path / "tokenizer.json").is_file() else AutoTokenizer.from_pretrained(str(path))
        return wrap_nnsight(hf, tokenizer=tok, name=path.resolve().name)
    from nnsight import TransformersModel

    try:
        if remote:
            lm = TransformersModel(name_or_path, task="text-generation", **kwargs)
        else:
            lm = TransformersModel(name_or_path, task="text-generation", device_map=device_map or device or "auto",
                                  dispatch=True, **kwargs)
    except Exception as exc:
        raise ModelNotAvailableError(
            f"nnsight cannot load {name_or_path!r} ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); a hub repository id needs the network "
            "(and NDIF_API_KEY for remote=True)") from None
    del nnsight
    return wrap_nnsight(lm, remote=remote, name=name_or_path)
