"""Activation patching between clean and corrupted prompts: exact, batched; and attribution patching.

``activation_patch`` moves one activation from a source run into a base run, for every site
of a sweep (layer x position, layer x head, layer x head x position), and scores the
patched runs with a metric read at each example's last real token. Denoising patches
clean activations into the corrupted run; noising patches corrupted activations into the
clean run.

Two engines compute the same numbers:

- ``"fast"`` (the default where the architecture allows it) puts many sites on the batch
  axis and recomputes only what a patch can change. A patch at layer ``L`` and position
  ``p`` leaves every position before ``p`` and every layer before ``L`` as in the base run,
  so a patched run starts at layer ``L`` from the base run's residual, computes positions
  ``p..`` only (their attention reads the base run's keys and values for earlier
  positions), runs the last layer for the read position only (other positions contribute
  keys and values), and unembeds only the logit columns the metric reads. Sites that
  start at different layers share forwards: a site joins the batch at its layer.
  Patches after the attention of layer ``L`` (``attn_out``, ``resid_mid``, ``mlp_out``,
  ``resid_post``, heads) change only their own positions in that layer, so they enter as
  a patched residual at layer ``L + 1``.
- ``"hooks"``: a patching hook on a batch of sites per forward, started at the patched
  layer; it works for every TransformerLens architecture and honours hooks already on the
  model (``"auto"`` falls back to it when the fast engine does not apply).

``attribution_patch`` is the gradient approximation (two forwards and one backward for the
whole sweep): ``metric(patched) ~ metric(base) + (source - base) . d metric / d activation``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ._errors import LensarithError
from .interventions import intervene
from .metrics import BoundMetric, Metric, TokenSpec, resolve_metric
from .models import check_layer
from .recipes import register_recipe
from .result import Result, provenance
from .sites import Site
from .tasks import Batch, Example, as_batch, token_ids, tokenize

__all__ = [
    "PromptPairs",
    "make_pairs",
    "pair_examples",
    "PatchConfig",
    "PatchResult",
    "AttributionPatchResult",
    "activation_patch",
    "attribution_patch",
    "PATCH_SITES",
]

POSITION_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("z", "result")
PATCH_SITES: tuple[str, ...] = POSITION_SITES + HEAD_SITES
_PAIR_TOKENS = ("clean", "corrupted", "clean_argument", "corrupted_argument")
# Fused kernels for TransformerLens's MLP activations (same functions; gelu_new is the tanh form).
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}

# --------------------------------------------------------------------------- prompt pairs


def _prompt_text(batch: Batch, i: int) -> str:
    if batch.examples is not None:
        return batch.examples[i].prompt[-48:]
    return f"<{int(batch.lengths[i])} token ids>"


@dataclass(frozen=True)
class PromptPairs:
    """Clean and corrupted prompts aligned token by token (row ``i`` of each is a pair).

    Build with ``make_pairs`` (your own prompts) or ``pair_examples`` (a task dataset).

    Attributes:
        clean: the clean prompts (``answer_ids`` are the clean answers).
        corrupted: the corrupted prompts, each exactly as long as its clean partner.
        report: how the pairs were made (dropped examples, counts).
    """

    clean: Batch
    corrupted: Batch
    report: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        c, k = self.clean, self.corrupted
        if len(c) != len(k):
            raise LensarithError(
                f"clean has {len(c)} prompts but corrupted has {len(k)}: give one corrupted prompt per clean prompt"
            )
        for i, (lc, lk) in enumerate(zip(c.lengths.tolist(), k.lengths.tolist())):
            if lc != lk:
                raise LensarithError(
                    f"clean and corrupted prompts must have the same token length: pair {i} has {lc} vs {lk} "
                    f"tokens ({_prompt_text(c, i)!r} vs {_prompt_text(k, i)!r}); reword one so the two align "
                    "token by token (e.g. swap a one-token name for another), or pair task examples of equal "
                    "length with pair_examples(...)"
                )
        if c.tokens.shape != k.tokens.shape:
            raise LensarithError(
                f"clean tokens {tuple(c.tokens.shape)} and corrupted tokens {tuple(k.tokens.shape)} differ in "
                "shape; pad both to the longest prompt"
            )

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, idx: slice) -> PromptPairs:
        if not isinstance(idx, slice):
            raise TypeError("PromptPairs supports slicing only, e.g. pairs[0:8]")
        return PromptPairs(self.clean[idx], self.corrupted[idx], self.report)

    @property
    def read(self) -> Int[Tensor, " batch"]:
        """The position each pair is scored at: its last real token."""
        return self.clean.last

    def token_ids(self, model, spec: TokenSpec, *, name: str = "tokens") -> Int[Tensor, " batch"]:
        """Resolve a token spec to one id per pair.

        ``"clean"`` / ``"corrupted"`` are each pair's answers, ``"clean_argument"`` /
        ``"corrupted_argument"`` their arguments; a string or id applies to every pair; a
        list or ``[batch]`` tensor gives one token per pair.
        """
        n = len(self)
        if isinstance(spec, str) and spec in _PAIR_TOKENS:
            side = "clean" if spec.startswith("clean") else "corrupted"
            what = "argument" if spec.endswith("argument") else "answer"
            batch = self.clean if side == "clean" else self.corrupted
            ids = batch.argument_ids if what == "argument" else batch.answer_ids
            if ids is None or bool((ids < 0).any()):
                raise LensarithError(
                    f"{name}={spec!r}: the {side} prompts carry no {what}s; build the pairs from Examples "
                    f"(build_prompts + pair_examples), pass answers=/corrupted_answers= to make_pairs, "
                    "or give token ids or strings, one per pair"
                )
            return ids.long().cpu()
        if isinstance(spec, (str, int)):
            spec = [spec] * n
        ids = token_ids(model, spec, name=name)
        if ids.shape != (n,):
            raise LensarithError(f"{name} needs one token per pair ({n}), got {tuple(ids.shape)}")
        return ids.cpu()


def _with_answers(model, batch: Batch, answers, name: str) -> Batch:
    if answers is None:
        return batch
    if isinstance(answers, (str, int)):
        answers = [answers] * len(batch)
    ids = token_ids(model, answers, name=name)
    if ids.shape != (len(batch),):
        raise LensarithError(f"{name} needs one token per prompt ({len(batch)}), got {tuple(ids.shape)}")
    return replace(batch, answer_ids=ids)


def make_pairs(model, clean, corrupted, *, answers=None, corrupted_answers=None) -> PromptPairs:
    """Pair clean and corrupted prompts row by row.

    Args:
        model: a HookedTransformer.
        clean: strings, ``Example`` objects, token ids ``[batch, pos]`` or a ``Batch``.
        corrupted: the same number of prompts, each as many tokens as its clean partner.
        answers: the clean answers (one string or id per pair, or one for all); default:
            the answers carried by ``Example`` prompts.
        corrupted_answers: the corrupted answers, likewise.

    Returns:
        ``PromptPairs``.

    Raises:
        LensarithError: different numbers of prompts, or a pair whose token lengths differ
            (the message gives both lengths).

    Example:
        >>> pairs = make_pairs(model, ["Q: What is the capital of Poland?\\nA:"],  # doctest: +SKIP
        ...                    ["Q: What is the capital of China?\\nA:"], answers=" Warsaw", corrupted_answers=" Beijing")
    """
    c = _with_answers(model, as_batch(model, clean), answers, "answers")
    k = _with_answers(model, as_batch(model, corrupted), corrupted_answers, "corrupted_answers")
    return PromptPairs(c, k, {"n": len(c), "source": "make_pairs"})


def pair_examples(model, examples: Sequence[Example], corrupted: Sequence[Example] | None = None, *,
                  n: int | None = None, seed: int = 0, drop_multi_token: bool = True) -> PromptPairs:
    """Prompt pairs from task examples, aligned token by token, with different answers.

    With ``examples`` alone, each example is paired with another of the same token length
    and a different answer: for the capitals task, the Poland prompt (clean, `` Warsaw``)
    with the China prompt (corrupted, `` Beijing``), same template, one argument swapped.
    With ``corrupted``, row ``i`` of ``examples`` pairs with row ``i`` of ``corrupted`` (e.g.
    ``build_prompts("capitals", format="extractive")`` against ``format="counterfactual"``:
    the context states the true capital or a wrong one); rows whose token lengths differ
    are dropped and counted in ``report``.

    Args:
        model: a HookedTransformer with a tokenizer.
        examples: ``Example`` objects (``build_prompts(...)``), the clean side.
        corrupted: optional corrupted examples, one per clean example.
        n: keep at most ``n`` pairs.
        seed: seeds which partner each example gets (without ``corrupted``).
        drop_multi_token: drop examples whose answer or argument is several tokens.

    Returns:
        ``PromptPairs``; ``report`` counts what was dropped.

    Example:
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=8)  # doctest: +SKIP
    """
    for name, exs in (("examples", examples), ("corrupted", corrupted)):
        if exs is not None and (not exs or not all(isinstance(e, Example) for e in exs)):
            raise LensarithError(f"{name} must be a non-empty list of lensarith.Example (e.g. build_prompts('capitals'))")
    if corrupted is not None and len(corrupted) != len(examples):
        raise LensarithError(f"examples has {len(examples)} rows but corrupted has {len(corrupted)}: give one each")
    sides = [examples] if corrupted is None else [examples, corrupted]
    info: list[dict[int, tuple[int, int]]] = []  # per side: input row -> (length, answer id)
    for exs in sides:
        batch = tokenize(model, list(exs), drop_multi_token=drop_multi_token)
        if batch.answer_ids is None:
            raise LensarithError("examples carry no answers; pair_examples needs Examples with answers")
        rows = [i for i in range(len(exs)) if i not in set(batch.report["dropped"])]
        info.append({i: (int(length), int(a)) for i, length, a in zip(rows, batch.lengths, batch.answer_ids)})
    pairs: list[tuple[Example, Example]] = []
    if corrupted is not None:
        both = sorted(set(info[0]) & set(info[1]))
        aligned = [i for i in both if info[0][i][0] == info[1][i][0] and info[0][i][1] != info[1][i][1]]
        pairs = [(examples[i], corrupted[i]) for i in aligned]
        report = {"dropped_tokens": len(examples) - len(both), "dropped_length_or_answer": len(both) - len(aligned)}
    else:
        groups: dict[int, list[int]] = {}
        for i, (length, _) in info[0].items():
            groups.setdefault(length, []).append(i)
        rng, found, unpaired = random.Random(seed), {}, 0
        for members in groups.values():
            rng.shuffle(members)
            for k, i in enumerate(members):
                ring = [members[(k + s) % len(members)] for s in range(1, len(members))]
                partner = next((j for j in ring if info[0][j][1] != info[0][i][1]), None)
                if partner is None:
                    unpaired += 1
                else:
                    found[i] = partner
        pairs = [(examples[i], examples[found[i]]) for i in sorted(found)]
        report = {"dropped_tokens": len(examples) - len(info[0]), "unpaired": unpaired}
    if not pairs:
        raise LensarithError(
            f"no pairs: none of the {len(examples)} examples has a partner of the same token length with a "
            "different answer; give more examples"
        )
    pairs = pairs[: n if n is not None else None]
    report.update(n=len(pairs), source="pair_examples")
    return PromptPairs(tokenize(model, [c for c, _ in pairs]), tokenize(model, [k for _, k in pairs]), report)


def _as_pairs(model, clean, corrupted) -> PromptPairs:
    if isinstance(clean, PromptPairs):
        if corrupted is not None:
            raise LensarithError("clean is already PromptPairs; leave corrupted=None")
        return clean
    if corrupted is None:
        raise LensarithError("give corrupted prompts, or PromptPairs (make_pairs / pair_examples) as clean")
    return make_pairs(model, clean, corrupted)


# --------------------------------------------------------------------------- config, grid, result


@dataclass(frozen=True)
class PatchConfig:
    """Engine and memory settings of a patching sweep.

    Attributes:
        max_tokens: token positions processed per forward (the memory budget: activations
            scale with it; a GPT-2-small forward of 8192 positions needs about 0.5 GB).
        engine: ``"fast"`` (recompute only what a patch changes), ``"hooks"`` (a patching
            hook per forward; any architecture; honours hooks already on the model) or
            ``"auto"`` (fast where supported).
        max_logits: logit elements materialised at once for metrics that need the whole
            vocabulary (probabilities, ranks, callables).
    """

    max_tokens: int = 8192
    engine: Literal["auto", "fast", "hooks"] = "auto"
    max_logits: int = 1 << 24

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise LensarithError(f"PatchConfig.max_tokens must be a positive int, got {self.max_tokens!r}")
        if self.engine not in ("auto", "fast", "hooks"):
            raise LensarithError(f"PatchConfig.engine must be 'auto', 'fast' or 'hooks', got {self.engine!r}")
        if not isinstance(self.max_logits, int) or self.max_logits < 1:
            raise LensarithError(f"PatchConfig.max_logits must be a positive int, got {self.max_logits!r}")


@dataclass(frozen=True)
class _Grid:
    """The sites of a sweep: ``jobs[i] = (layer, head, pos)`` in row-major grid order."""

    site: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    layers: list[int]
    heads: list[int] | None
    positions: list[int] | None
    jobs: list[tuple[int, int | None, int | None]]

    @property
    def all_positions(self) -> bool:
        return self.positions is None


def _grid(model, pairs: PromptPairs, site: str, by_position: bool | None, layers, positions) -> _Grid:
    cfg = model.cfg
    if site not in PATCH_SITES:
        raise LensarithError(f"site={site!r} is not patchable; valid sites: {', '.join(PATCH_SITES)}")
    Site(site, 0).resolve(cfg)  # raises for 'result' without use_attn_result
    if Site(site, 0).hook_name not in model.hook_dict:
        raise LensarithError(f"site={site!r} does not exist on this model (attention-only models have no MLP sites)")
    if site in POSITION_SITES and by_position is False:
        raise LensarithError(f"site={site!r} is patched by position; by_position=False applies to head sites (z, result)")
    per_pos = site in POSITION_SITES or bool(by_position)
    if layers is None:
        layer_list = list(range(cfg.n_layers))
    else:
        layer_list = [check_layer(model, layer, name="layers") for layer in layers]
        if not layer_list:
            raise LensarithError("layers is empty: give at least one layer, or None for all")
    width = pairs.clean.tokens.shape[1]
    pos_list = None
    if per_pos:
        if positions is None:
            pos_list = list(range(width))
        else:
            pos_list = []
            for p in positions:
                if not isinstance(p, int) or isinstance(p, bool) or not -width <= p < width:
                    raise LensarithError(
                        f"positions: {p!r} is out of range for prompts of {width} tokens; valid is 0..{width - 1} "
                        f"(or -{width}..-1 from the end)"
                    )
                pos_list.append(p % width)
            if not pos_list:
                raise LensarithError("positions is empty: give at least one position, or None for all")
    elif positions is not None:
        raise LensarithError("positions applies to by-position sweeps; pass by_position=True for heads by position")
    heads = list(range(cfg.n_heads)) if site in HEAD_SITES else None
    if site in POSITION_SITES:
        axes, dims = ("layer", "pos"), [layer_list, pos_list]
        jobs = [(layer, None, p) for layer, p in itertools.product(layer_list, pos_list)]
    elif per_pos:
        axes, dims = ("layer", "head", "pos"), [layer_list, heads, pos_list]
        jobs = list(itertools.product(layer_list, heads, pos_list))
    else:
        axes, dims = ("layer", "head"), [layer_list, heads]
        jobs = [(layer, h, None) for layer, h in itertools.product(layer_list, heads)]
    return _Grid(site, axes, tuple(len(d) for d in dims), layer_list, heads, pos_list, jobs)


class PatchResult(Result):
    """Activation patching results on a labelled grid.

    Tensors:
        values: the metric per site, ``[layer, pos]``, ``[layer, head]`` or
            ``[layer, head, pos]`` (mean over pairs; ``recovery`` normalises the mean).
        per_example: the same with a trailing ``batch`` axis, one value per pair.
        clean, corrupted: ``[batch]`` the (base) metric on the unpatched clean and corrupted runs.
    """

    kind = "activation_patch"

    @property
    def values(self) -> Float[Tensor, "*grid"]:
        return self.tensors["values"]

    @property
    def per_example(self) -> Float[Tensor, "*grid batch"]:
        return self.tensors["per_example"]

    @property
    def clean(self) -> Float[Tensor, " batch"]:
        return self.tensors["clean"]

    @property
    def corrupted(self) -> Float[Tensor, " batch"]:
        return self.tensors["corrupted"]

    @property
    def grid_axes(self) -> tuple[str, ...]:
        return self.axes["values"]

    def top(self, k: int = 10) -> list[tuple[dict[str, str], float]]:
        """The ``k`` sites with the largest absolute value: ``({axis: label}, value)``."""
        flat = self.values.flatten()
        order = flat.abs().nan_to_num(-1.0).argsort(descending=True)[:k]
        out = []
        for i in order.tolist():
            idx = torch.unravel_index(torch.tensor(i), self.values.shape)
            where = {ax: str(self.labels.get(ax, list(range(n)))[int(j)]) for ax, j, n in
                     zip(self.grid_axes, idx, self.values.shape)}
            out.append((where, float(flat[i])))
        return out

    def plot(self, path=None, **kwargs):
        """A heatmap of ``values`` (see ``lensarith.viz.heatmap``); writes a PNG to ``path``."""
        from .viz.heatmap import heatmap

        return heatmap(self, path=path, **kwargs)


class AttributionPatchResult(PatchResult):
    """``PatchResult`` from ``attribution_patch``: a first-order estimate of patching."""

    kind = "attribution_patch"


def _labels(model, pairs: PromptPairs, grid: _Grid) -> dict[str, list]:
    labels: dict[str, list] = {"layer": [str(layer) for layer in grid.layers]}
    if grid.heads is not None:
        labels["head"] = [str(h) for h in grid.heads]
    if grid.positions is not None:
        toks = pairs.clean.tokens[0].tolist()
        try:
            strs = model.to_str_tokens(torch.tensor(toks)) if model.tokenizer is not None else None
        except Exception:  # noqa: BLE001 - labels are cosmetic
            strs = None
        labels["pos"] = [f"{p}" if strs is None else f"{p} {strs[p]!s}".replace("\n", "\\n") for p in grid.positions]
    if pairs.clean.examples is not None:
        labels["batch"] = [e.prompt for e in pairs.clean.examples]
    return labels


# --------------------------------------------------------------------------- shared forwards


@dataclass
class _Run:
    """Activations of one unpatched run: hook name -> ``[batch, pos, ...]``; final residual at the read."""

    acts: dict[str, Tensor]
    final: Tensor


def _has_hooks(model) -> bool:
    """Whether any hook (TransformerLens's or a plain PyTorch one) is attached to the model."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def _forward(model, tokens: Tensor, names: Sequence[str], read: Tensor, *, grad: bool = False) -> _Run:
    acts: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        acts[hook.name] = act if grad else act.detach()

    hooks = [(name, keep) for name in dict.fromkeys(names)]
    if grad:
        def leaf(act: Tensor, hook) -> Tensor:
            return act if act.requires_grad else act.detach().requires_grad_(True)
        hooks.insert(0, ("blocks.0.hook_resid_pre", leaf))
    with torch.set_grad_enabled(grad), intervene(model, extra_hooks=hooks):
        out = model(tokens, stop_at_layer=model.cfg.n_layers)
    rows = torch.arange(out.shape[0], device=out.device)
    return _Run(acts, out[rows, read.to(out.device)])


def _hook(site: str, layer: int) -> str:
    return Site(site, layer).hook_name


def _score(model, bound: BoundMetric, resid: Float[Tensor, "variant batch d_model"], max_logits: int
           ) -> Float[Tensor, "variant batch"]:
    """Final norm, unembedding (only the metric's columns when it names them) and the metric."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    x = model.ln_final(resid) if model.cfg.normalization_type is not None else resid
    if bound.columns is not None:
        cols = bound.columns.to(resid.device)
        w = model.W_U[:, cols]  # [d_model, batch, k]
        logits = torch.einsum("vbd,dbk->vbk", x, w) + model.b_U[cols]
        return bound.score(apply_softcap(logits, cap))
    step = max(1, max_logits // (x.shape[1] * model.cfg.d_vocab))
    outs = [bound.score(apply_softcap(model.unembed(x[i : i + step]), cap)) for i in range(0, x.shape[0], step)]
    return torch.cat(outs)


# --------------------------------------------------------------------------- the fast engine


def _fast_unsupported(model) -> str | None:
    """Why the fast engine cannot run this model, or None."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    cfg = model.cfg
    reasons = [
        (cfg.positional_embedding_type != "standard", f"{cfg.positional_embedding_type} positional embeddings"),
        (cfg.parallel_attn_mlp, "parallel attention and MLP"),
        (cfg.use_attn_in or cfg.use_split_qkv_input, "split attention inputs"),
        (cfg.use_normalization_before_and_after, "normalisation after blocks"),
        (cfg.original_architecture in POST_NORM_ARCHITECTURES, "post-norm blocks"),
        (cfg.n_key_value_heads not in (None, cfg.n_heads), "grouped-query attention"),
        (getattr(cfg, "use_qk_norm", False) or getattr(cfg, "clip_qkv", None) is not None, "QK norm or clipping"),
        (getattr(cfg, "use_logn_attn", False) or getattr(cfg, "use_attention_sinks", False), "attention scaling or sinks"),
        (cfg.attention_dir != "causal", "bidirectional attention"),
        (getattr(cfg, "load_in_4bit", False), "4-bit weights"),
        (getattr(cfg, "n_devices", 1) > 1, "several devices"),
        (any(type(b.attn).__name__ != "Attention" or getattr(b.attn, "attn_type", "global") != "global"
             for b in model.blocks), "non-standard attention layers"),
        (_has_hooks(model), "hooks already on the model"),
    ]
    found = [why for bad, why in reasons if bad]
    return ", ".join(found) if found else None


@dataclass
class _Start:
    """A patched run entering the stack at ``layer`` with positions ``pos..`` in ``x`` ``[batch, S, d]``."""

    job: int
    layer: int
    pos: int
    vec: Tensor | None = None   # [batch, d_model]: the patched residual at ``pos``
    full: Tensor | None = None  # [batch, width, d_model]: a whole patched residual (pos 0)


@dataclass
class _Group:
    """Patched runs sharing a start position: ``x`` ``[jobs, batch, S, d_model]``."""

    pos: int
    jobs: list[int]
    x: Tensor


class _FastEngine:
    """Exact patching that recomputes only the layers and positions a patch reaches."""

    def __init__(self, model, grid: _Grid, base: _Run, src: _Run, read: Tensor, width: int) -> None:
        self.model, self.grid, self.base, self.src = model, grid, base, src
        self.read = read.to(model.cfg.device)
        self.width = width
        cfg = model.cfg
        self.n, self.H, self.dh = cfg.n_layers, cfg.n_heads, cfg.d_head
        self._w: dict[int, dict[str, Tensor]] = {}

    @staticmethod
    def hook_names(model, grid: _Grid) -> tuple[list[str], list[str]]:
        """Hooks to record in the base run and in the source run."""
        n, site = model.cfg.n_layers, grid.site
        lo = min(grid.layers)
        base = [_hook("resid_pre", layer) for layer in range(lo, n)]
        base += [f"blocks.{layer}.attn.hook_{kv}" for layer in range(lo, n) for kv in ("k", "v")]
        extra = {"mlp_out": ["resid_mid"], "z": ["z"], "result": ["z"]}.get(site, [])
        base += [_hook(k, layer) for layer in grid.layers for k in extra]
        src_site = "z" if site in HEAD_SITES else site
        return base, [_hook(src_site, layer) for layer in grid.layers]

    def weights(self, layer: int) -> dict[str, Tensor]:
        if layer not in self._w:
            attn = self.model.blocks[layer].attn
            d, hd = self.model.cfg.d_model, self.H * self.dh
            flat = lambda w: w.permute(1, 0, 2).reshape(d, hd)  # noqa: E731 - [head, d_model, d_head] -> [d_model, hd]
            self._w[layer] = {
                "W_q": flat(attn.W_Q).contiguous(), "b_q": attn.b_Q.reshape(hd),
                "W_kv": torch.cat([flat(attn.W_K), flat(attn.W_V)], 1).contiguous(),
                "b_kv": torch.cat([attn.b_K.reshape(hd), attn.b_V.reshape(hd)]),
                "W_qkv": torch.cat([flat(attn.W_Q), flat(attn.W_K), flat(attn.W_V)], 1).contiguous(),
                "b_qkv": torch.cat([attn.b_Q.reshape(hd), attn.b_K.reshape(hd), attn.b_V.reshape(hd)]),
                "W_O": attn.W_O.reshape(hd, d).contiguous(), "b_O": attn.b_O,
            }
        return self._w[layer]

    # ---- pieces of a block on flat token lists ``[tokens, d_model]``, in cache-sized row blocks
    _ROWS = 1024

    def _norm(self, module, x: Tensor) -> Tensor:
        name = type(module).__name__
        if name == "LayerNorm":
            return F.layer_norm(x, (x.shape[-1],), module.w, module.b, module.eps)
        if name == "LayerNormPre":
            return F.layer_norm(x, (x.shape[-1],), None, None, module.eps)
        return module(x[None])[0]

    def _mlp(self, layer: int, x: Tensor) -> Tensor:
        mlp = self.model.blocks[layer].mlp
        act = _ACTIVATIONS.get(self.model.cfg.act_fn) if type(mlp).__name__ == "MLP" else None
        if act is None or self.model.cfg.is_layer_norm_activation():
            return mlp(x[None])[0]
        return torch.addmm(mlp.b_out, act(torch.addmm(mlp.b_in, x, mlp.W_in)), mlp.W_out)

    def _mlp_half(self, layer: int, mid: Tensor) -> Tensor:
        """resid_mid -> resid_post for rows ``[n, d_model]``."""
        if self.model.cfg.attn_only:
            return mid
        return mid + self._mlp(layer, self._norm(self.model.blocks[layer].ln2, mid))

    def _post_attn(self, layer: int, mid: Tensor) -> Tensor:
        """resid_mid -> resid_post (the MLP half of a block), any leading shape."""
        flat = mid.reshape(-1, mid.shape[-1])
        out = torch.empty_like(flat)
        for i in range(0, flat.shape[0], self._ROWS):
            out[i : i + self._ROWS] = self._mlp_half(layer, flat[i : i + self._ROWS])
        return out.view(mid.shape)

    def _project(self, layer: int, x: Tensor, weight: str) -> Tensor:
        """ln1 then a Q/K/V projection, in row blocks."""
        w, ln1 = self.weights(layer), self.model.blocks[layer].ln1
        out = x.new_empty(x.shape[0], w["W_" + weight].shape[1])
        for i in range(0, x.shape[0], self._ROWS):
            out[i : i + self._ROWS] = torch.addmm(w["b_" + weight], self._norm(ln1, x[i : i + self._ROWS]),
                                                  w["W_" + weight])
        return out

    def _finish(self, layer: int, x: Tensor, z: Tensor) -> Tensor:
        """resid_pre + attention output, then the MLP half, in row blocks."""
        w = self.weights(layer)
        out = torch.empty_like(x)
        for i in range(0, x.shape[0], self._ROWS):
            mid = torch.addmm(w["b_O"], z[i : i + self._ROWS], w["W_O"])
            mid += x[i : i + self._ROWS]
            out[i : i + self._ROWS] = self._mlp_half(layer, mid)
        return out

    def _attn_from_z(self, layer: int, z: Tensor) -> Tensor:
        w = self.weights(layer)
        flat = z.reshape(-1, self.H * self.dh)
        return torch.addmm(w["b_O"], flat, w["W_O"]).reshape(*z.shape[:-2], -1)

    # ---- patched starting residuals
    def start_layer(self, job: tuple[int, int | None, int | None]) -> int:
        return job[0] if self.grid.site == "resid_pre" else job[0] + 1

    def starts(self, ids: Sequence[int]) -> list[_Start]:
        site, grid, base, src = self.grid.site, self.grid, self.base.acts, self.src.acts
        out: list[_Start] = []
        by_layer: dict[int, list[int]] = {}
        for i in ids:
            by_layer.setdefault(grid.jobs[i][0], []).append(i)
        for layer, js in by_layer.items():
            heads = [grid.jobs[i][1] for i in js]
            pos = [grid.jobs[i][2] for i in js]
            if site in HEAD_SITES and grid.all_positions:
                z = base[_hook("z", layer)].unsqueeze(0).repeat(len(js), 1, 1, 1, 1)  # [J, B, W, H, dh]
                sz = src[_hook("z", layer)]
                for j, h in enumerate(heads):
                    z[j, :, :, h] = sz[:, :, h]
                mid = base[_hook("resid_pre", layer)].unsqueeze(0) + self._attn_from_z(layer, z)
                post = self._post_attn(layer, mid)
                out += [_Start(i, layer + 1, 0, full=post[j]) for j, i in enumerate(js)]
                continue
            p = torch.tensor(pos, device=self.read.device)
            if site in ("resid_pre", "resid_post"):
                vec = src[_hook(site, layer)][:, p]
            elif site == "resid_mid":
                vec = self._post_attn(layer, src[_hook(site, layer)][:, p])
            elif site == "attn_out":
                mid = base[_hook("resid_pre", layer)][:, p] + src[_hook(site, layer)][:, p]
                vec = self._post_attn(layer, mid)
            elif site == "mlp_out":
                vec = base[_hook("resid_mid", layer)][:, p] + src[_hook(site, layer)][:, p]
            else:  # one head at one position
                z = base[_hook("z", layer)][:, p].clone()  # [B, J, H, dh]
                sz = src[_hook("z", layer)]
                for j, (h, q) in enumerate(zip(heads, pos)):
                    z[:, j, h] = sz[:, q, h]
                mid = base[_hook("resid_pre", layer)][:, p] + self._attn_from_z(layer, z)
                vec = self._post_attn(layer, mid)
            start = self.start_layer(grid.jobs[js[0]])
            out += [_Start(i, start, q, vec=vec[:, j]) for j, (i, q) in enumerate(zip(js, pos))]
        return out

    def tokens(self, job: tuple[int, int | None, int | None], n_batch: int) -> int:
        """Token positions a job adds to a forward (its memory cost)."""
        pos = job[2] if job[2] is not None else 0
        return n_batch * (self.width - pos)

    # ---- the stack
    def run(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        """Final residuals at the read positions for the jobs ``ids``."""
        n, B = self.n, self.read.shape[0]
        starts = self.starts(ids)
        where = {i: k for k, i in enumerate(ids)}
        out = self.base.final.new_empty(len(ids), B, self.model.cfg.d_model)
        groups: dict[int, _Group] = {}
        for s in starts:
            if s.layer == n:  # a patch after the last attention: only the read position can change
                if s.full is not None:
                    out[where[s.job]] = s.full[torch.arange(B, device=self.read.device), self.read]
                else:
                    out[where[s.job]] = torch.where((self.read == s.pos)[:, None], s.vec, self.base.final)
        pending = sorted((s for s in starts if s.layer < n), key=lambda s: (s.layer, s.pos))
        if not pending:
            return out
        k = 0
        for layer in range(pending[0].layer, n):
            joining: dict[int, list[_Start]] = {}
            while k < len(pending) and pending[k].layer == layer:
                joining.setdefault(pending[k].pos, []).append(pending[k])
                k += 1
            for pos, new in joining.items():
                if new[0].full is not None:
                    x = torch.stack([s.full for s in new])[:, :, pos:]
                else:
                    x = self.base.acts[_hook("resid_pre", layer)][:, pos:].unsqueeze(0).repeat(len(new), 1, 1, 1)
                    x[:, :, 0] = torch.stack([s.vec for s in new])
                g = groups.get(pos)
                if g is None:
                    groups[pos] = _Group(pos, [s.job for s in new], x)
                else:
                    g.jobs += [s.job for s in new]
                    g.x = torch.cat([g.x, x])
            finals = self._layer(layer, list(groups.values()), last=layer == n - 1)
        for g, final in zip(groups.values(), finals):
            for j, job in enumerate(g.jobs):
                out[where[job]] = final[j]
        return out

    def _layer(self, layer: int, groups: list[_Group], last: bool) -> list[Tensor] | None:
        """One block on every group; the last block computes only the read positions."""
        d, hd = self.model.cfg.d_model, self.H * self.dh
        sizes = [g.x.shape[0] * g.x.shape[1] * g.x.shape[2] for g in groups]
        flat = torch.cat([g.x.reshape(-1, d) for g in groups]) if len(groups) > 1 else groups[0].x.reshape(-1, d)
        read_idx = None
        if last:
            read_idx = torch.cat([self._read_index(g, off) for g, off in zip(groups, _offsets(sizes))])
            kv = self._project(layer, flat, "kv")
            q_all = self._project(layer, flat[read_idx], "q")
        else:
            qkv = self._project(layer, flat, "qkv")
            q_all, kv = qkv[:, :hd], qkv[:, hd:]
        zs, q_off = [], 0
        for g, off, size in zip(groups, _offsets(sizes), sizes):
            J, B, S = g.x.shape[:3]
            k, v = kv[off : off + size].view(J, B, S, 2, self.H, self.dh).unbind(3)
            nq = J * B if last else size
            q = q_all[q_off : q_off + nq].view(J, B, 1 if last else S, self.H, self.dh)
            q_off += nq
            zs.append(self._attend(layer, g.pos, q, k, v, last).reshape(-1, hd))
        z = torch.cat(zs) if len(zs) > 1 else zs[0]
        post = self._finish(layer, flat if read_idx is None else flat[read_idx], z)
        if last:
            counts = [g.x.shape[0] * g.x.shape[1] for g in groups]
            return [part.view(g.x.shape[0], g.x.shape[1], d) for g, part in zip(groups, post.split(counts))]
        for g, part in zip(groups, post.split(sizes)):
            g.x = part.view(g.x.shape)
        return None

    def _read_local(self, pos: int) -> Tensor:
        return (self.read - pos).clamp(min=0)

    def _read_index(self, g: _Group, offset: int) -> Tensor:
        J, B, S = g.x.shape[:3]
        rows = torch.arange(J * B, device=self.read.device)
        return offset + rows * S + self._read_local(g.pos).repeat(J)

    def _attend(self, layer: int, pos: int, q: Tensor, k: Tensor, v: Tensor, last: bool) -> Tensor:
        """Attention of suffix queries over the base run's keys before ``pos`` and the new keys."""
        from transformer_lens.utilities.activation_functions import apply_softcap

        attn = self.model.blocks[layer].attn
        cap = self.model.cfg.attn_scores_soft_cap
        S = k.shape[2]
        scores = apply_softcap(torch.einsum("jbqhd,jbkhd->jbhqk", q, k) / attn.attn_scale, cap)
        key_pos = torch.arange(S, device=q.device)
        if last:  # one query per row: the read position
            allowed = key_pos[None, :] <= self._read_local(pos)[:, None]  # [B, S]
            mask = allowed[None, :, None, None, :]
        else:
            mask = (key_pos[None, :] <= key_pos[:, None])[None, None, None]
        scores = scores.masked_fill(~mask, float("-inf"))
        if pos:
            k0 = self.base.acts[f"blocks.{layer}.attn.hook_k"][:, :pos]
            v0 = self.base.acts[f"blocks.{layer}.attn.hook_v"][:, :pos]
            before = apply_softcap(torch.einsum("jbqhd,bkhd->jbhqk", q, k0) / attn.attn_scale, cap)
            pattern = torch.cat([before, scores], -1).softmax(-1)
            return (torch.einsum("jbhqk,bkhd->jbqhd", pattern[..., :pos], v0)
                    + torch.einsum("jbhqk,jbkhd->jbqhd", pattern[..., pos:], v))
        return torch.einsum("jbhqk,jbkhd->jbqhd", scores.softmax(-1), v)


def _offsets(sizes: Sequence[int]) -> list[int]:
    return list(itertools.accumulate([0, *sizes[:-1]]))


# --------------------------------------------------------------------------- the hooks engine


class _HookEngine:
    """Patching hooks on a batch of sites per forward, started at the patched layer."""

    def __init__(self, model, grid: _Grid, base_tokens: Tensor, base: _Run, src: _Run, read: Tensor) -> None:
        self.model, self.grid, self.base, self.src = model, grid, base, src
        self.tokens, self.read = base_tokens, read.to(model.cfg.device)
        cfg = model.cfg
        # A cached residual can seed the run unless the model's own hooks would apply twice.
        self.from_resid = cfg.positional_embedding_type != "shortformer" and not _has_hooks(model)

    @staticmethod
    def hook_names(model, grid: _Grid) -> tuple[list[str], list[str]]:
        base = [_hook("resid_pre", layer) for layer in grid.layers]
        return base, [_hook(grid.site, layer) for layer in grid.layers]

    def tokens_per_job(self, n_batch: int) -> int:
        return n_batch * self.tokens.shape[1]

    def run(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        model, grid = self.model, self.grid
        layer = grid.jobs[ids[0]][0]
        if any(grid.jobs[i][0] != layer for i in ids):
            raise LensarithError("internal: a hooks-engine chunk must hold one layer")  # pragma: no cover
        B, J = self.tokens.shape[0], len(ids)
        dev = self.read.device
        heads = torch.tensor([grid.jobs[i][1] if grid.jobs[i][1] is not None else 0 for i in ids], device=dev)
        pos = torch.tensor([grid.jobs[i][2] if grid.jobs[i][2] is not None else 0 for i in ids], device=dev)
        rows = torch.arange(J * B, device=dev)
        job_of, ex_of = rows // B, rows % B
        source = self.src.acts[_hook(grid.site, layer)]
        per_head, all_pos = grid.site in HEAD_SITES, grid.all_positions

        def patch(act: Tensor, hook) -> Tensor:
            if act.shape[0] != J * B:
                raise LensarithError(f"patching hook at {hook.name}: expected {J * B} rows, got {tuple(act.shape)}")
            act = act.clone()
            src = source.to(act.dtype)
            if per_head and all_pos:
                act[rows, :, heads[job_of]] = src[ex_of, :, heads[job_of]]
            elif per_head:
                act[rows, pos[job_of], heads[job_of]] = src[ex_of, pos[job_of], heads[job_of]]
            else:
                act[rows, pos[job_of]] = src[ex_of, pos[job_of]]
            return act

        hooks = [(_hook(grid.site, layer), patch)]
        with torch.no_grad(), intervene(model, extra_hooks=hooks):
            if self.from_resid:
                x = self.base.acts[_hook("resid_pre", layer)].repeat(J, 1, 1)
                out = model(x, start_at_layer=layer, stop_at_layer=model.cfg.n_layers)
            else:
                out = model(self.tokens.repeat(J, 1), stop_at_layer=model.cfg.n_layers)
        return out[rows, self.read.repeat(J)].view(J, B, -1)


# --------------------------------------------------------------------------- the sweeps


def _setup(model, clean, corrupted, site, metric, direction, by_position, layers, positions):
    pairs = _as_pairs(model, clean, corrupted)
    if direction not in ("denoise", "noise"):
        raise LensarithError(f"direction must be 'denoise' (clean into corrupted) or 'noise' (corrupted into clean), "
                             f"got {direction!r}")
    grid = _grid(model, pairs, site, by_position, layers, positions)
    metric_ = resolve_metric(metric)
    bound = metric_.bind(model, pairs)
    dev = model.cfg.device
    clean_t, corrupt_t = pairs.clean.tokens.to(dev), pairs.corrupted.tokens.to(dev)
    base_t, src_t = (corrupt_t, clean_t) if direction == "denoise" else (clean_t, corrupt_t)
    return pairs, grid, metric_, bound, base_t, src_t


def _chunks(ids: list[int], cost: Callable[[int], int], budget: int, same: Callable[[int], object]) -> list[list[int]]:
    chunks: list[list[int]] = []
    used = 0
    for i in ids:
        c = cost(i)
        if chunks and used + c <= budget and same(chunks[-1][0]) == same(i):
            chunks[-1].append(i)
            used += c
        else:
            chunks.append([i])
            used = c
    return chunks


def _result(cls, model, pairs, grid, metric_: Metric, raw, clean_raw, corrupt_raw, meta: dict) -> PatchResult:
    values, per_example = metric_.aggregate(raw, clean_raw, corrupt_raw)
    B = len(pairs)
    tensors = {
        "values": values.reshape(grid.shape).float().cpu(),
        "per_example": per_example.reshape(*grid.shape, B).float().cpu(),
        "clean": clean_raw.float().cpu(),
        "corrupted": corrupt_raw.float().cpu(),
    }
    axes = {"values": grid.axes, "per_example": (*grid.axes, "batch"), "clean": ("batch",), "corrupted": ("batch",)}
    info = provenance(model, site=grid.site, metric=metric_.describe(), layers=grid.layers, positions=grid.positions,
                      heads=grid.heads, n_pairs=B, pairs=pairs.report, **meta)
    return cls(tensors, axes, _labels(model, pairs, grid), info)


@register_recipe("activation_patch")
def activation_patch(
    model,
    clean,
    corrupted=None,
    *,
    site: str = "resid_pre",
    metric: Metric | str | Callable[[Tensor], Tensor] = "logit_diff",
    direction: str = "denoise",
    by_position: bool | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    progress: bool | None = None,
    config: PatchConfig | None = None,
) -> PatchResult:
    """Patch activations between clean and corrupted prompts at every site of a sweep.

    Args:
        model: a HookedTransformer.
        clean: the clean prompts (strings, ``Example`` objects, token ids, a ``Batch``), or
            ``PromptPairs`` from ``make_pairs`` / ``pair_examples`` (then ``corrupted=None``).
        corrupted: the corrupted prompts, aligned token by token with ``clean``.
        site: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``
            (swept over layer x position) or ``z`` / ``result`` (attention heads, swept over
            layer x head, or layer x head x position with ``by_position=True``).
        metric: ``"logit_diff"`` (clean answer minus corrupted answer), ``"recovery"``
            (0 = corrupted run, 1 = clean run), ``"answer_prob"``, ``"reciprocal_rank"``, a
            ``Metric`` or a callable ``logits [batch, d_vocab] -> [batch]``. Metrics read
            each pair's last real token.
        direction: ``"denoise"`` patches clean activations into the corrupted run;
            ``"noise"`` patches corrupted activations into the clean run.
        by_position: for head sites, sweep heads at each position (``[layer, head, pos]``)
            instead of all positions at once (``[layer, head]``).
        layers: the layers to sweep (default all; negative counts from the end).
        positions: the positions to sweep (default all of the prompts' width).
        progress: show a progress bar (default: for sweeps of more than a few forwards).
        config: ``PatchConfig`` (memory budget, engine).

    Returns:
        A ``PatchResult``: ``values`` on the grid, ``per_example`` with a trailing batch
        axis, and the metric on the unpatched ``clean`` and ``corrupted`` runs.

    Raises:
        LensarithError: misaligned prompts, an unknown site or metric, positions or layers
            out of range, a metric returning the wrong shape.

    Example:
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=8)  # doctest: +SKIP
        >>> res = activation_patch(model, pairs, site="resid_pre", metric="recovery")  # doctest: +SKIP
        >>> res.values.shape  # [layer, pos]  # doctest: +SKIP
    """
    cfg = config or PatchConfig()
    if not isinstance(cfg, PatchConfig):
        raise LensarithError(f"config must be a PatchConfig, got {type(cfg).__name__}")
    pairs, grid, metric_, bound, base_t, src_t = _setup(
        model, clean, corrupted, site, metric, direction, by_position, layers, positions)
    why = _fast_unsupported(model)
    if cfg.engine == "fast" and why is not None:
        raise LensarithError(f"engine='fast' does not support this model ({why}); use engine='hooks' or 'auto'")
    engine_name = "hooks" if cfg.engine == "hooks" or why is not None else "fast"
    read = pairs.read.to(model.cfg.device)
    B, width = len(pairs), base_t.shape[1]
    engine_cls = _FastEngine if engine_name == "fast" else _HookEngine
    base_names, src_names = engine_cls.hook_names(model, grid)
    base = _forward(model, base_t, base_names, read)
    src = _forward(model, src_t, src_names, read)
    with torch.no_grad():
        base_raw = _score(model, bound, base.final[None], cfg.max_logits)[0]
        src_raw = _score(model, bound, src.final[None], cfg.max_logits)[0]
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)

    ids = list(range(len(grid.jobs)))
    if engine_name == "fast":
        engine = _FastEngine(model, grid, base, src, read, width)
        ids.sort(key=lambda i: (engine.start_layer(grid.jobs[i]), grid.jobs[i][2] or 0))
        chunks = _chunks(ids, lambda i: engine.tokens(grid.jobs[i], B), cfg.max_tokens, lambda i: 0)
    else:
        engine = _HookEngine(model, grid, base_t, base, src, read)
        chunks = _chunks(ids, lambda i: engine.tokens_per_job(B), cfg.max_tokens, lambda i: grid.jobs[i][0])
    raw = torch.empty(len(grid.jobs), B, device=base.final.device)
    show = len(chunks) > 3 if progress is None else progress
    with torch.no_grad(), tqdm(total=len(ids), desc=f"patching {grid.site}", unit="site", disable=not show,
                               leave=False) as bar:
        for chunk in chunks:
            final = engine.run(chunk)
            if engine_name == "fast" and not grid.all_positions:
                # A patch after the read position cannot change it (causal attention).
                late = torch.tensor([grid.jobs[i][2] for i in chunk], device=read.device)[:, None] > read[None]
                final = torch.where(late[..., None], base.final[None], final)
            raw[torch.tensor(chunk, device=raw.device)] = _score(model, bound, final, cfg.max_logits)
            bar.update(len(chunk))
    meta = {"recipe": "activation_patch", "direction": direction, "engine": engine_name,
            "hooks": [_hook(grid.site, layer) for layer in grid.layers]}
    return _result(PatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)


@register_recipe("attribution_patch")
def attribution_patch(
    model,
    clean,
    corrupted=None,
    *,
    site: str = "resid_pre",
    metric: Metric | str | Callable[[Tensor], Tensor] = "logit_diff",
    direction: str = "denoise",
    by_position: bool | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    config: PatchConfig | None = None,
) -> AttributionPatchResult:
    """Attribution patching: the first-order estimate of ``activation_patch`` for a whole sweep.

    ``metric(patched) ~ metric(base) + (source - base) . grad``, with the gradient of the
    metric taken on the base run: two forwards and one backward, whatever the sweep size.
    Arguments are as for ``activation_patch``; the metric must be differentiable
    (``reciprocal_rank`` is not).

    Returns:
        An ``AttributionPatchResult`` on the same grid as ``activation_patch`` would give.

    Example:
        >>> att = attribution_patch(model, pairs, site="z", metric="logit_diff")  # [layer, head]  # doctest: +SKIP
    """
    cfg = config or PatchConfig()
    pairs, grid, metric_, bound, base_t, src_t = _setup(
        model, clean, corrupted, site, metric, direction, by_position, layers, positions)
    if not metric_.differentiable:
        raise LensarithError(f"metric={metric_.describe()!r} is piecewise constant, so its gradient is zero; use "
                             "'logit_diff', 'recovery' or 'answer_prob' for attribution_patch")
    read = pairs.read.to(model.cfg.device)
    names = [_hook(grid.site, layer) for layer in grid.layers]
    src = _forward(model, src_t, names, read)
    base = _forward(model, base_t, names, read, grad=True)
    base_raw = _score(model, bound, base.final[None], cfg.max_logits)[0]
    acts = [base.acts[name] for name in names]
    grads = torch.autograd.grad(base_raw.sum(), acts, allow_unused=True)
    with torch.no_grad():
        src_raw = _score(model, bound, src.final[None], cfg.max_logits)[0]
        attrs = {}
        for name, act, g in zip(names, acts, grads):
            g = torch.zeros_like(act) if g is None else g
            attrs[name] = ((src.acts[name] - act.detach()) * g).sum(-1)  # [B, W] or [B, W, H]
        B = len(pairs)
        est = torch.empty(len(grid.jobs), B, device=base_raw.device)
        for i, (layer, head, pos) in enumerate(grid.jobs):
            a = attrs[_hook(grid.site, layer)]
            if head is None:
                est[i] = a[:, pos]
            elif pos is None:
                est[i] = a[:, :, head].sum(1)
            else:
                est[i] = a[:, pos, head]
        base_raw = base_raw.detach()
        raw = base_raw[None] + est
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)
    meta = {"recipe": "attribution_patch", "direction": direction, "engine": "gradient", "hooks": names}
    return _result(AttributionPatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)
