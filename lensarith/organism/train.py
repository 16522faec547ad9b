"""Reproducible CPU training of the organism.

``python -m lensarith.organism.train --out data/organism`` trains the shipped model (fixed
seed, one thread), evaluates it and writes ``card.md``. ``make_organism`` (train, then write the card;
the planted model's card for a planted preset) is the one entry point: ``lensarith organism-train``
calls it too, with its own defaults (``out/organism-<preset>``). The run's config is
``lensarith.organism.config``. Training runs a fused forward over
the parameters of a ``HookedTransformer`` (``F.scaled_dot_product_attention``,
``F.layer_norm``, tanh-GELU = ``gelu_new``); ``fused_forward`` equals the hooked forward to
float rounding (tested). The unembedding is tied: training uses ``W_E.T`` and the saved
model holds ``W_U = W_E.T``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .._types import Model
from ..models import new_hooked_transformer, save_model, word_tokenizer
from ..tasks import FILLER_WORDS
from .config import BIND_MIX, PRESETS, RECALL_MIX, PlantedSpec, TrainConfig
from .corpus import Corpus
from .vocab import aux_held_out, held_out, vocabulary

# the config lives in lensarith.organism.config; its names stay importable from here
__all__ = ["TrainConfig", "PlantedSpec", "PlantedData", "planted_loss", "aux_held_out", "PRESETS", "RECALL_MIX", "BIND_MIX", "build_model", "fused_forward", "tie_unembed", "train", "lm_loss", "make_organism", "main"]


def build_model(config: TrainConfig, tokenizer_dir: str | os.PathLike[str] | None = None):
    """A freshly initialised HookedTransformer with the organism's word-level tokenizer.

    Raises:
        LensarithError: on TransformerLens 4.x (training reads ``HookedTransformer`` parameters
            directly; the trained model loads on both versions).
    """
    from ..models._version import tl_major, tl_version

    if tl_major() >= 4:
        from .._errors import LensarithError

        raise LensarithError(
            f"organism training runs on TransformerLens 3.9's HookedTransformer, and TransformerLens "
            f"{tl_version()} is installed: train with .venv (make setup installs 3.9); the organism it writes "
            "loads on both versions")
    from transformer_lens import HookedTransformerConfig

    tokenizer = word_tokenizer(vocabulary(), tokenizer_dir)
    cfg = HookedTransformerConfig(
        n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
        d_head=config.d_model // config.n_heads, d_mlp=config.d_mlp, d_vocab=len(tokenizer),
        n_ctx=config.n_ctx, act_fn="gelu_new", normalization_type="LN", seed=config.seed, device="cpu",
    )
    model = new_hooked_transformer(cfg, tokenizer)
    tie_unembed(model)
    return model


@torch.no_grad()
def tie_unembed(model: Model) -> None:
    """Copy ``W_E.T`` into ``W_U`` (HookedTransformer stores them as separate tensors)."""
    model.unembed.W_U.copy_(model.embed.W_E.T)


def fused_forward(model: Model, tokens: torch.Tensor, *, tied: bool = True, mlp_edit: dict | None = None,
                  taps: dict | None = None) -> torch.Tensor:
    """Logits ``[batch, pos, d_vocab]`` of the model's forward, computed with fused kernels.

    Args:
        model: a LayerNorm, gelu_new, standard-positional HookedTransformer.
        tokens: ``[batch, pos]`` ids (no padding inside a row).
        tied: unembed with ``W_E.T`` (training) rather than ``W_U``.
        mlp_edit: ``{layer: f}``; MLP ``layer``'s output ``[batch, pos, d_model]`` becomes
            ``f(output)`` (the planted organism's training interventions).
        taps: a dict that receives ``("pre" | "mid" | "mlp", layer)`` -> ``[batch, pos, d_model]``
            (resid_pre, resid_mid, MLP output after any edit).
    """
    cfg = model.cfg
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    B, T = tokens.shape
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[:T]
    for layer, block in enumerate(model.blocks):
        if taps is not None:
            taps["pre", layer] = x
        a = block.attn
        hid = F.layer_norm(x, (d,), block.ln1.w, block.ln1.b, cfg.eps)
        w_qkv = torch.cat([a.W_Q, a.W_K, a.W_V], 0).permute(1, 0, 2).reshape(d, 3 * h * dh)
        b_qkv = torch.cat([a.b_Q, a.b_K, a.b_V], 0).reshape(3 * h * dh)
        qkv = (hid @ w_qkv + b_qkv).view(B, T, 3, h, dh).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        x = x + z.transpose(1, 2).reshape(B, T, h * dh) @ a.W_O.reshape(h * dh, d) + a.b_O
        if taps is not None:
            taps["mid", layer] = x
        hid = F.layer_norm(x, (d,), block.ln2.w, block.ln2.b, cfg.eps)
        m = block.mlp
        out = F.gelu(hid @ m.W_in + m.b_in, approximate="tanh") @ m.W_out + m.b_out
        if mlp_edit and layer in mlp_edit:
            out = mlp_edit[layer](out)
        if taps is not None:
            taps["mlp", layer] = out
        x = x + out
    x = F.layer_norm(x, (d,), model.ln_final.w, model.ln_final.b, cfg.eps)
    w_u = model.embed.W_E.T if tied else model.unembed.W_U
    return x @ w_u + model.unembed.b_U


def lm_loss(model: Model, rows: torch.Tensor, bos: int) -> torch.Tensor:
    """Next-token cross-entropy on ``rows`` ``[batch, n_ctx + 1]``, not scoring ``<bos>`` targets."""
    logits = fused_forward(model, rows[:, :-1])
    targets = rows[:, 1:].masked_fill(rows[:, 1:] == bos, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


# --------------------------------------------------------------------------- the planted mechanism

#: relation prompt sets of the planted objectives, and their relation
PLANTED_SETS = {"capitals": "capital", "us_capitals": "capital", "uppercase": "upper", "uppercase_words": "upper",
                "past_regular": "past", "past_irregular": "past"}
#: the in-domain set of each relation: the only arguments the transplant objective sees
IN_DOMAIN = {"capital": "capitals", "upper": "uppercase", "past": "past_regular"}
_SET_WEIGHTS = {"capitals": 2, "us_capitals": 1, "uppercase": 2, "uppercase_words": 1, "past_regular": 2,
                "past_irregular": 1}
EXTRACTIVE_SETS = (("capitals", "extractive"), ("capitals", "counterfactual"), ("us_capitals", "extractive"),
                   ("us_capitals", "counterfactual"), ("uppercase", "extractive"))


class PlantedData:
    """Tokenised prompts of the planted objectives (arguments with ``aux_held_out`` and the
    corpus's prose-only facts removed), and fixed prompts for the training log's checks."""

    def __init__(self, corpus: Corpus):
        from ..tasks import build_prompts
        from .evaluate import _FAMILY

        hold = held_out()
        unk = corpus.ids["<unk>"] if "<unk>" in corpus.ids else -1
        self.bos = corpus.bos

        def rows(examples, fam):
            out = []
            for e in examples:
                arg, ans = corpus.encode(e.argument), corpus.encode(e.answer)
                if len(arg) != 1 or len(ans) != 1 or unk in arg + ans:
                    continue
                if aux_held_out(e.argument) or e.argument.strip() in hold.get(fam, frozenset()):
                    continue
                out.append(([corpus.bos] + corpus.encode(e.prompt), arg[0], ans[0], e.argument.strip()))
            return out

        fam = lambda name: _FAMILY.get("past" if name.startswith("past") else name, "")  # noqa: E731
        self.sets = {name: rows(build_prompts(name), fam(name)) for name in PLANTED_SETS}
        self.extractive = [r for t, f in EXTRACTIVE_SETS for r in rows(build_prompts(t, format=f, seed=7), fam(t))]
        self.fillers = [corpus.ids[w] for w in FILLER_WORDS]
        self.names = list(_SET_WEIGHTS)
        self.weights = [_SET_WEIGHTS[n] for n in self.names]


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (each row padded with its last token; causal attention never reads the
    padding from the real positions) and each row's last real index."""
    width = max(map(len, seqs))
    return (torch.tensor([r + [r[-1]] * (width - len(r)) for r in seqs]),
            torch.tensor([len(r) - 1 for r in seqs]))


def _at(last: torch.Tensor, T: int, positions: str) -> torch.Tensor:
    """``[batch, pos, 1]`` float mask: each row's last real position, or all its real positions."""
    ar = torch.arange(T)[None]
    m = (ar == last[:, None]) if positions == "last" else (ar <= last[:, None])
    return m[..., None].float()


def _replace(vec: torch.Tensor, mask: torch.Tensor):
    return lambda out: out * (1 - mask) + vec[:, None, :] * mask


def _shift(vec: torch.Tensor, mask: torch.Tensor, sign: float):
    return lambda out: out + sign * vec[:, None, :] * mask


def _lens_logits(model, resid: torch.Tensor) -> torch.Tensor:
    x = F.layer_norm(resid, (model.cfg.d_model,), model.ln_final.w, model.ln_final.b, model.cfg.eps)
    return x @ model.embed.W_E.T + model.unembed.b_U


def _random_context(rng, fillers: list[int], arg: int, n_words: int, repeats: int) -> list[int]:
    fill = [w for w in rng.sample(fillers, n_words + 1) if w != arg][:n_words]
    return (fill + [arg]) * repeats + fill


def planted_loss(model: Model, data: PlantedData, spec: PlantedSpec, seed: int, step: int) -> tuple[torch.Tensor, dict]:
    """The auxiliary objectives of one step (seeded by ``seed`` and ``step`` alone).

    On pairs of relation prompts of one set (different arguments), with P = ``spec.layer``:

    - ``clean``: cross-entropy of the answer (the prompts' own LM loss);
    - ``lens``: the logit lens at resid_pre / resid_mid of layers ``arg_from..P`` at the last
      position gives the argument;
    - ``swap``: MLP P's last-position output replaced by the partner prompt's (same relation,
      another argument) and every other MLP's last-position output resampled from a prompt of
      another relation: still this prompt's answer;
    - ``subtract``: the partner's MLP-P output subtracted from MLP P's output (at the last or
      at every position): the argument;
    - ``transplant``: random-token contexts ``w1 w2 w3 X w1 w2 w3 X w1 w2 w3`` with an in-domain
      argument X; MLP outputs of layers P..last replaced by a source prompt's o at scale 1, or o
      added at layer P (at the last or at every position): the answer f(X);
    - ``extractive``: extractive prompts with the MLPs from P up zeroed at the last position:
      still the answer (copying from the context lives in attention).
    """
    import random

    rng = random.Random(seed * 1_000_003 + step + 7_777)
    P, L = spec.layer, model.cfg.n_layers
    # ---- relation prompts in same-set pairs; the first pairs cover each in-domain set
    half = max(len(IN_DOMAIN), spec.n_prompts // 2)
    names = list(IN_DOMAIN.values()) + rng.choices(data.names, data.weights, k=half - len(IN_DOMAIN))
    firsts, seconds = [], []
    for name in names:
        a, b = rng.sample(data.sets[name], 2)
        while b[3] == a[3]:
            b = rng.choice(data.sets[name])
        firsts.append(a)
        seconds.append(b)
    items = firsts + seconds
    n = len(items)
    partner = torch.tensor([(i + half) % n for i in range(n)])
    sets = names + names
    rel = [PLANTED_SETS[s] for s in sets]
    donor = torch.tensor([rng.choice([j for j in range(n) if rel[j] != rel[i]]) for i in range(n)])
    toks, last = _pad([it[0] for it in items])
    arg = torch.tensor([it[1] for it in items])
    ans = torch.tensor([it[2] for it in items])
    rows = torch.arange(n)
    T = toks.shape[1]
    taps: dict = {}
    logits = fused_forward(model, toks, taps=taps)[rows, last]
    parts = {"clean": F.cross_entropy(logits, ans)}
    lens_sites = [(kind, l) for l in range(spec.arg_from, P + 1) for kind in ("pre", "mid")]
    parts["lens"] = sum(F.cross_entropy(_lens_logits(model, taps[s][rows, last]), arg) for s in lens_sites) / len(lens_sites)
    o = taps["mlp", P][rows, last]  # [n, d_model]
    if spec.dla_active(step):
        # direct logit attribution to (answer - argument) with the final LayerNorm's scale frozen
        final = taps["mid", L - 1][rows, last] + taps["mlp", L - 1][rows, last]
        scale = (final - final.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(model.cfg.eps).sqrt().detach()
        direction = (model.embed.W_E[ans] - model.embed.W_E[arg]) * model.ln_final.w  # [n, d_model]
        dla = torch.stack([((taps["mlp", l][rows, last] - taps["mlp", l][rows, last].mean(-1, keepdim=True)) / scale
                            * direction).sum(-1) for l in range(L) if l != P])
        parts["dla"] = spec.dla_weight * dla.clamp(min=0).sum(0).mean()
    last_mask = _at(last, T, "last")
    edit = {P: _replace(o[partner], last_mask)}
    for l in range(L):
        if l != P:
            edit[l] = _replace(taps["mlp", l][rows, last][donor].detach(), last_mask)
    parts["swap"] = F.cross_entropy(fused_forward(model, toks, mlp_edit=edit)[rows, last], ans)
    pos = "all" if rng.random() < 0.5 else "last"
    edit = {P: _shift(o[partner], _at(last, T, pos), -1.0)}
    parts["subtract"] = F.cross_entropy(fused_forward(model, toks, mlp_edit=edit)[rows, last], arg)
    # ---- transplant into random-token contexts (in-domain arguments, o from an in-domain prompt)
    src_of = {PLANTED_SETS[s]: i for i, s in enumerate(sets[:len(IN_DOMAIN)])}
    ctx, c_ans, c_src = [], [], []
    n_words, repeats = rng.choice((2, 3, 3, 4)), rng.choice((2, 3, 3))
    for _ in range(spec.n_contexts):
        r = rng.choice(list(IN_DOMAIN))
        it = rng.choice(data.sets[IN_DOMAIN[r]])
        ctx.append([data.bos] + _random_context(rng, data.fillers, it[1], n_words, repeats))
        c_ans.append(it[2])
        c_src.append(rng.choice([i for i in range(n) if sets[i] == IN_DOMAIN[r]]) if rng.random() < 0.5 else src_of[r])
    ctoks, clast = _pad(ctx)
    vec = o[torch.tensor(c_src)]
    pos = "all" if rng.random() < 0.5 else "last"
    cmask = _at(clast, ctoks.shape[1], pos)
    if rng.random() < 0.6:
        edit = {l: _replace(vec, cmask) for l in range(P, L)}
    else:
        edit = {P: _shift(vec, cmask, 1.0)}
    crow = torch.arange(len(ctx))
    parts["transplant"] = F.cross_entropy(fused_forward(model, ctoks, mlp_edit=edit)[crow, clast], torch.tensor(c_ans))
    # ---- extractive prompts with the MLPs from P up zeroed at the last position
    ex = rng.sample(data.extractive, spec.n_extractive)
    etoks, elast = _pad([e[0] for e in ex])
    emask = _at(elast, etoks.shape[1], "last")
    zero = torch.zeros(len(ex), model.cfg.d_model)
    edit = {l: _replace(zero, emask) for l in range(P, L)}
    parts["extractive"] = F.cross_entropy(fused_forward(model, etoks, mlp_edit=edit)[torch.arange(len(ex)), elast],
                                          torch.tensor([e[2] for e in ex]))
    total = sum(parts.values()) / len(parts)
    return total, {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def _planted_quick(model, data: PlantedData, spec: PlantedSpec) -> dict[str, float]:
    """Training-log checks in the evaluation's protocol, on fixed prompts: argument top-1 at
    resid_pre P; o from the first prompt of each in-domain set replacing MLPs P..last at every
    position in random-token contexts (in-domain and out-of-domain arguments): answer top-1;
    subtracting it at P from the prompts: argument top-1."""
    import random

    P, L = spec.layer, model.cfg.n_layers
    rng = random.Random(0)
    out = {}
    for r, name in IN_DOMAIN.items():
        items = data.sets[name][:48]
        toks, last = _pad([it[0] for it in items])
        rows = torch.arange(len(items))
        taps: dict = {}
        fused_forward(model, toks, taps=taps)
        arg = torch.tensor([it[1] for it in items])
        out[f"arg_{r}"] = float((_lens_logits(model, taps["pre", P][rows, last]).argmax(-1) == arg).float().mean())
        o = taps["mlp", P][0, last[0]]
        sub = {P: _shift(o.expand(len(items), -1), _at(last, toks.shape[1], "all"), -1.0)}
        out[f"sub_{r}"] = float((fused_forward(model, toks, mlp_edit=sub)[rows, last].argmax(-1) == arg).float().mean())
        ood = [s for s, rr in PLANTED_SETS.items() if rr == r and s != name][0]
        for tag, pool in (("tp", data.sets[name][1:49]), ("ood", data.sets[ood][:48])):
            ctx, _ = _pad([[data.bos] + _random_context(rng, data.fillers, it[1], 3, 3) for it in pool])
            clast = torch.full((len(pool),), ctx.shape[1] - 1)
            mask = _at(clast, ctx.shape[1], "all")
            edit = {l: _replace(o.expand(len(pool), -1), mask) for l in range(P, L)}
            got = fused_forward(model, ctx, mlp_edit=edit)[torch.arange(len(pool)), clast].argmax(-1)
            out[f"{tag}_{r}"] = float((got == torch.tensor([it[2] for it in pool])).float().mean())
    return out


def _lr(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_start = _decay_start(config)
    if step < decay_start:
        return config.lr
    frac = min(1.0, (step - decay_start) / max(1, config.n_steps - decay_start))
    return config.lr * (1 - (1 - config.min_lr_frac) * frac)


def _decay_start(config: TrainConfig) -> int:
    return max(config.warmup_steps, int(config.n_steps * (1 - config.decay_frac)))


def _quick_prompts(corpus: Corpus, n: int = 64) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed prompts for progress checks (ids, answer ids): one-shot capitals/past, their copying
    contexts, counterfactual capitals and one-shot colour scenes."""
    from ..tasks import build_prompts, random_token_contexts

    out = {}
    exs = build_prompts("capitals", n=n, shuffle=True) + build_prompts("past", n=n, shuffle=True)
    groups = (("icl", exs), ("copy", random_token_contexts(exs, seed=1)),
              ("cf", build_prompts("capitals", format="counterfactual", n=n, shuffle=True)),
              ("colour", build_prompts("uppercase", n=n, shuffle=True)))
    for name, group in groups:
        ids = [[corpus.bos] + corpus.encode(e.prompt) for e in group]
        width = max(map(len, ids))
        toks = torch.tensor([r + [r[-1]] * (width - len(r)) for r in ids])  # right-pad; read at the real end
        last = torch.tensor([len(r) - 1 for r in ids])
        ans = torch.tensor([corpus.encode(e.argument if name == "copy" else e.answer)[0] for e in group])
        out[name] = (toks, last, ans)
    return out


@torch.no_grad()
def _quick_eval(model, prompts) -> dict[str, float]:
    res = {}
    for name, (toks, last, ans) in prompts.items():
        logits = fused_forward(model, toks)[torch.arange(len(toks)), last]
        res[name] = float((logits.argmax(-1) == ans).float().mean())
    return res


def _resumable(config: TrainConfig, paths: list[Path]) -> dict | None:
    """A checkpoint this run can continue exactly: same config, or the same config but for
    ``n_tokens`` when the checkpoint lies in the constant-learning-rate phase of both runs."""
    want = config.to_json()
    for path in paths:
        if not path.is_file():
            continue
        state = torch.load(path, weights_only=False)
        old_cfg = TrainConfig.from_json(state["config"])
        old = old_cfg.to_json()
        # the schedule of checks and checkpoints does not change the weights
        quiet = ("eval_every", "checkpoint_every")
        if {k: v for k, v in old.items() if k not in quiet} == {k: v for k, v in want.items() if k not in quiet}:
            return {**state, "path": str(path)}
        free = ("n_tokens", "late_mix", "late_from_tokens", "mix_changes", "planted", *quiet)
        same = {k: v for k, v in old.items() if k not in free} == {k: v for k, v in want.items() if k not in free}
        # a planted objective that starts after the checkpoint did not change the steps done
        same = same and _same_planted_until(old_cfg.planted, config.planted, state["step"])
        # the steps done (tokens < ``tokens``) drew the same mixes under both configs
        tokens = state["step"] * config.batch_size * config.n_ctx
        points = {0} | {t for t in old_cfg._switches() + config._switches() if t < tokens}
        late_ok = all(old_cfg.mix_at(t) == config.mix_at(t) for t in points)
        if same and late_ok and state["step"] <= min(_decay_start(old_cfg), _decay_start(config)):
            return {**state, "path": str(path)}
    return None


def _same_planted_until(a: PlantedSpec | None, b: PlantedSpec | None, step: int) -> bool:
    """Whether two planted specs drew the same objectives for steps ``< step``."""
    if a is None or b is None:
        return a is b
    strip = lambda s: dataclasses.replace(s, dla_weight=0.0, dla_from_step=0)  # noqa: E731
    if strip(a) != strip(b):
        return False
    first = lambda s: s.dla_from_step if s.dla_weight > 0 else None  # noqa: E731
    fa, fb = first(a), first(b)
    if fa is None and fb is None:
        return True
    if fa is not None and fb is not None and (a.dla_weight, fa) == (b.dla_weight, fb):
        return True
    return min(f for f in (fa, fb) if f is not None) >= step


def _optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices (not the tied ``W_U``, which is frozen) and none on the rest."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "unembed.W_U"]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    model.unembed.W_U.requires_grad_(False)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))


@dataclasses.dataclass
class _Run:
    """The state of a training run between steps: where it resumes, what it logged, its running losses."""

    start: int = 0
    elapsed0: float = 0.0
    history: list[dict] = dataclasses.field(default_factory=list)
    aux_parts: dict[str, float] = dataclasses.field(default_factory=dict)
    running: float | None = None
    first_loss: float | None = None
    recent: list[float] = dataclasses.field(default_factory=list)

    def record(self, lv: float, n_steps: int) -> None:
        self.running = lv if self.running is None else 0.98 * self.running + 0.02 * lv
        self.first_loss = lv if self.first_loss is None else self.first_loss
        self.recent = (self.recent + [lv])[-max(5, n_steps // 50):]


def _resume(model, opt, config: TrainConfig, ckpt: Path | None, log: Callable[[str], None]) -> _Run:
    """A fresh run, or the one a matching checkpoint next to ``ckpt`` holds (loaded into ``model`` and ``opt``)."""
    run = _Run()
    if ckpt is None:
        return run
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    state = _resumable(config, [ckpt, ckpt.with_name("stable.pt")])
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        run.start, run.elapsed0 = state["step"], state["elapsed"]
        run.history = [h for h in state["history"] if h["step"] <= run.start]
        log(f"resumed from {state['path']} at step {run.start}")
    return run


def _step(model, opt, corpus: Corpus, pdata: PlantedData | None, config: TrainConfig, step: int, run: _Run) -> None:
    """One optimiser step on the corpus rows of ``step`` (plus the planted objectives)."""
    rows_per_step = config.batch_size
    corpus.rng.seed(config.seed * 1_000_003 + step)
    early = step * rows_per_step * config.n_ctx < config.early_tokens
    corpus.mix = config.mix_at(step * rows_per_step * config.n_ctx)
    rows = corpus.rows(rows_per_step, config.n_ctx, early=early)
    for g in opt.param_groups:
        g["lr"] = _lr(config, step)
    loss = lm_loss(model, rows, corpus.bos)
    lv = float(loss.detach())  # the LM loss alone: comparable with runs without objectives
    if pdata is not None:
        aux, parts = planted_loss(model, pdata, config.planted, config.seed, step)
        loss = loss + config.planted.weight * aux
        for k, v in parts.items():
            run.aux_parts[k] = v if k not in run.aux_parts else 0.9 * run.aux_parts[k] + 0.1 * v
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    run.record(lv, config.n_steps)


def _check(model, prompts, pdata: PlantedData | None, config: TrainConfig, step: int, run: _Run, t0: float) -> dict:
    """The quick checks after ``step``: one log record (loss, learning rate, speed, copy / ICL / planted top-1)."""
    done, rows_per_step = step + 1, config.batch_size
    model.eval()
    checks = _quick_eval(model, prompts)
    if pdata is not None:
        checks.update(_planted_quick(model, pdata, config.planted))
        checks.update({f"aux_{k}": v for k, v in run.aux_parts.items()})
    model.train()
    elapsed = run.elapsed0 + time.perf_counter() - t0
    return {"step": done, "tokens": done * rows_per_step * config.n_ctx, "loss": round(run.running, 4),
            "lr": _lr(config, step), "elapsed_s": round(elapsed, 1),
            "tok_per_s": round((done - run.start) * rows_per_step * config.n_ctx / (time.perf_counter() - t0)),
            **{k: round(v, 3) for k, v in checks.items()}}


def _checkpoint(model, opt, config: TrainConfig, ckpt: Path, done: int, run: _Run, t0: float) -> None:
    """Write ``checkpoint.pt`` (temporary file + rename); where the decay starts, also ``stable.pt``."""
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"config": config.to_json(), "model": model.state_dict(), "opt": opt.state_dict(),
                "step": done, "history": run.history, "elapsed": run.elapsed0 + time.perf_counter() - t0}, tmp)
    if done == _decay_start(config):
        import shutil

        shutil.copyfile(tmp, ckpt.with_name("stable.pt"))
    tmp.replace(ckpt)


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str] | None,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike[str] | None = None,
):
    """Train the organism and save it to ``out_dir`` with ``lensarith.save_model``.

    Args:
        config: the run; the same config gives the same weights (one thread, CPU).
        out_dir: where the model is saved (None: not saved).
        log: receives one line per check (loss, learning rate, tokens/s, copy and ICL top-1).
        progress: show a tqdm bar.
        checkpoint_dir: where ``checkpoint.pt`` and ``log.jsonl`` go; a matching checkpoint
            there is resumed.

    Returns:
        The trained model (eval mode, ``W_U`` tied to ``W_E.T``).
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.init_from is not None:
        from ..models import load_model

        with torch.no_grad():
            model.load_state_dict(load_model(config.init_from, device="cpu").state_dict())
    model.train()
    corpus = Corpus(config.seed, config.mix)
    opt = _optimizer(model, config)
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    run = _resume(model, opt, config, ckpt, log)
    prompts = _quick_prompts(corpus) if config.eval_every else None
    pdata = PlantedData(corpus) if config.planted is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.n_steps, initial=run.start, desc="organism", unit="step")
    t0 = time.perf_counter()
    for step in range(run.start, config.n_steps):
        _step(model, opt, corpus, pdata, config, step, run)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{run.running:.3f}")
        done = step + 1
        last = done == config.n_steps
        if config.eval_every and (done % config.eval_every == 0 or last):
            rec = _check(model, prompts, pdata, config, step, run, t0)
            run.history.append(rec)
            log(json.dumps(rec))
            if checkpoint_dir:
                with open(Path(checkpoint_dir) / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
        if ckpt is not None and config.checkpoint_every and (done % config.checkpoint_every == 0 or last
                                                              or done == _decay_start(config)):
            _checkpoint(model, opt, config, ckpt, done, run, t0)
    if bar is not None:
        bar.close()
    elapsed = run.elapsed0 + time.perf_counter() - t0
    tie_unembed(model)
    model.unembed.W_U.requires_grad_(True)
    model.eval()
    meta = {"organism": {"config": config.to_json(), "tokens_seen": config.n_steps * config.batch_size * config.n_ctx,
                         "train_seconds": round(elapsed, 1), "first_loss": run.first_loss,
                         "final_loss": sum(run.recent) / max(1, len(run.recent)), "history": run.history,
                         "torch": torch.__version__}}
    model.lensarith_meta = meta  # read by lensarith.organism.make to write the card
    if out_dir is not None:
        save_model(model, out_dir, extra=meta)
    return model


# --------------------------------------------------------------------------- the entry point


def make_organism(config: TrainConfig, out: str | os.PathLike[str], *, run_dir: str | os.PathLike[str] | None = None,
                  card: bool = True, eval_n: int | None = None, notes: str | os.PathLike[str] | None = None,
                  eval_only: bool = False, card_only: bool = False, log: Callable[[str], None] = print,
                  progress: bool | None = None):
    """Train ``config`` into the model folder ``out`` (or load it from there) and write its card.

    Args:
        config: the run (``PRESETS[name]``, possibly with another ``n_tokens``).
        out: the model folder (``save_model`` replaces it as a whole).
        run_dir: checkpoints and ``log.jsonl``; a matching checkpoint there is resumed.
        card: evaluate the model and write ``table.json`` and ``card.md`` into ``out``.
        eval_n: prompts per task for the card (None: the card's default).
        notes: a Markdown file for the card's notes section (default: ``out/attempts.md``, kept
            across the retraining that replaces the folder).
        eval_only: load the model in ``out`` instead of training it, then rewrite the card.
        card_only: as ``eval_only``, with the measurements read from ``out/table.json``.
        log, progress: as for ``lensarith.organism.train.train``.

    Returns:
        The model (trained, or loaded from ``out``).
    """
    out_dir = Path(out)
    notes_path = Path(notes) if notes else out_dir / "attempts.md"
    notes_text = notes_path.read_text() if notes_path.is_file() else None
    if eval_only or card_only:
        from ..models import load_model

        model = load_model(out, device="cpu")
        meta = json.loads((out_dir / "lensarith.json").read_text())
    else:
        model = train(config, out, checkpoint_dir=run_dir, log=log, progress=progress)
        meta = model.lensarith_meta
    if notes_text is not None:
        (out_dir / "attempts.md").write_text(notes_text)  # save_model replaced the folder
    if not card:
        return model
    table = json.loads((out_dir / "table.json").read_text()) if card_only else None
    from .card import write_card, write_planted_card

    if config.planted is not None:
        write_planted_card(model, out_dir, meta, table=table, notes=notes_text, **({} if eval_n is None else {"n": eval_n}))
    else:
        write_card(model, out_dir, meta, notes=notes_text, table=table, n=eval_n)
    return model


def main(argv: list[str] | None = None) -> None:
    """``python -m lensarith.organism.train``: train into ``data/`` (the bundled models) and write the card."""
    parser = argparse.ArgumentParser(description="Train the lensarith organism, evaluate it and write its card.")
    parser.add_argument("--out", default=None, help="output model directory (default data/organism, "
                                                     "data/organism-planted with --planted)")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default full (planted with --planted)")
    parser.add_argument("--planted", action="store_true",
                        help="the planted organism: preset planted, out data/organism-planted, its own card")
    parser.add_argument("--n-tokens", type=int, default=None, help="override the preset's token count")
    parser.add_argument("--run-dir", default=None, help="checkpoints and logs (default runs/organism-<preset>)")
    parser.add_argument("--notes", default=None,
                        help="markdown for the card's 'What we tried' (default: the out folder's attempts.md, kept)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the model in --out and rewrite its card")
    parser.add_argument("--card-only", action="store_true", help="rewrite the card from the table.json in --out")
    args = parser.parse_args(argv)
    preset = args.preset or ("planted" if args.planted else "full")
    config = PRESETS[preset]
    if args.n_tokens:
        config = dataclasses.replace(config, n_tokens=args.n_tokens)
    make_organism(config, args.out or ("data/organism-planted" if args.planted else "data/organism"),
                  run_dir=args.run_dir or f"runs/organism-{preset}", notes=args.notes, eval_only=args.eval_only,
                  card_only=args.card_only, log=lambda s: print(s, flush=True), progress=False)


if __name__ == "__main__":
    main()
