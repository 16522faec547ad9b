"""Scoring a vector run: the contexts it is scored on, and the logit-lens ranks it keeps.

Every way of putting a vector into a model (``apply_vectors``, ``transplant``, ``find_layers``'s
sweep, the paper's Fig 5 baselines) scores its runs here:

- ``context_batch``: ``Example`` contexts (or a ``Batch``) as a batch whose every row has an
  answer to score; multi-token answers or arguments are refused, naming them, or dropped;
- ``rank_readout``: the one rank-keeping readout: the ranks of the answer and the argument under
  the logit lens at the chosen layers' ``resid_post`` (last real token), and the output's top-1;
- ``evaluate``: every group of interventions on every context in shared forwards
  (``lensarith.core.run`` groups), keeping only ``rank_readout``'s ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._errors import LensarithError
from ..core import Batch, Group, Intervention, Site, readout, run, tokenize
from ..tasks import Example
from .._types import Model

__all__ = ["context_batch", "rank_readout", "first_changed_layer", "evaluate", "single_tokens"]


def first_changed_layer(model: Model, group: Group | Sequence[Intervention]) -> int:
    """The first layer whose ``resid_post`` a group's interventions can change (``n_layers`` for none).

    An intervention at any site of block ``l`` (its ``resid_pre``, attention, MLP or ``resid_post``)
    leaves every ``resid_post`` before ``l`` as the unmodified model computes it; one without a
    block (``embed``, ``pos_embed``) or of an unknown kind changes everything.
    """
    n = model.cfg.n_layers
    first = n
    for iv in (group.interventions if isinstance(group, Group) else group):
        site = getattr(iv, "site", None)
        if not isinstance(site, Site) or site.layer is None:
            return 0
        first = min(first, site.layer % n)
    return first


def rank_readout(model: Model, layers: Sequence[int], firsts: Sequence[int] | None = None
                 ) -> tuple[list[Site], Callable[..., dict[str, Tensor]]]:
    """The sites to capture and a ``keep`` function for ``lensarith.core.run``: ranks of the answer
    and the argument under the logit lens at each of ``layers`` (``resid_post``, last real token),
    and the top-1 token at the last of them.

    ``firsts`` (one per group, ``first_changed_layer``): at a layer before a group's first changed
    layer its rows are the unmodified model's, the same for every such group, so the vocabulary
    is read once for all of them (one representative group) and its ranks shared. With a large
    vocabulary this readout is most of a vector run's time.

    ``keep`` returns ``rank_answer`` / ``rank_argument`` ``[group, batch, layer]`` (only for the
    ids the chunk carries) and ``top1`` ``[group, batch]``, on the CPU.
    """
    read = list(layers)
    sites = [Site("resid_post", layer, "last") for layer in read]

    def keep(out, chunk: Batch) -> dict[str, Tensor]:
        return _ranks(model, [out.captured[site] for site in sites], read, chunk, firsts)

    return sites, keep


def _ranks(model, xs: Sequence[Tensor], layers: Sequence[int], chunk: Batch, firsts: Sequence[int] | None
           ) -> dict[str, Tensor]:
    """``rank_readout``'s ranks from the residuals ``xs`` (``[group, batch, d_model]``, one per layer)."""
    got: dict[str, list[Tensor]] = {"rank_answer": [], "rank_argument": []}
    top1 = None
    for i, (layer, x) in enumerate(zip(layers, xs)):
        k = x.shape[0]
        if firsts is None:
            read_groups, row = list(range(k)), None
        else:  # one representative of the groups still unchanged at this layer
            own = [g for g in range(k) if firsts[g] <= layer]
            same = [g for g in range(k) if firsts[g] > layer]
            read_groups = own + same[:1]
            row = None if len(read_groups) == k else torch.tensor([own.index(g) if g in own else len(own)
                                                                   for g in range(k)])
            if row is not None:
                x = x[read_groups]
        logits = readout.logits(model, x).float()  # [groups read, batch, d_vocab]
        for key, ids in (("rank_answer", chunk.answer_ids), ("rank_argument", chunk.argument_ids)):
            if ids is not None:
                r = readout.rank(logits, ids.expand(logits.shape[0], -1), where=f"the logit lens at layer {layer}")
                got[key].append(r if row is None else r[row.to(r.device)])
        if i == len(xs) - 1:
            top1 = logits.argmax(-1)
            top1 = top1 if row is None else top1[row.to(top1.device)]
    kept = {key: torch.stack(v, -1).cpu() for key, v in got.items() if v}  # [group, batch, layer]
    kept["top1"] = top1.cpu()
    return kept


def evaluate(model: Model, batch: Batch, groups: Sequence[Group | Sequence[Intervention]], *, batch_size: int,
             readout_layers: str = "all", progress: bool | None = None, desc: str = "transplant") -> dict[str, Tensor]:
    """Run every group of interventions on every context in shared forwards.

    Each forward carries ``len(groups)`` copies of up to ``batch_size`` contexts; group
    ``g``'s hooks touch only its copy. Returns ``rank_answer``/``rank_argument``
    ``[group, layer, batch]`` (logit lens at each layer's ``resid_post``, last real token;
    one layer, the last, for ``readout_layers="final"``) and ``top1`` ``[group, batch]``
    (the model's prediction).
    """
    n = model.cfg.n_layers
    groups = [g if isinstance(g, Group) else Group(tuple(g)) for g in groups]
    firsts = [first_changed_layer(model, g) for g in groups]
    if readout_layers == "final":
        # only the output is read: each group starts at its first changed block from the unmodified
        # residual there, computed once per chunk (where the backend can start mid-stack)
        late = [g if g.start_layer is not None or not 0 < f < n else Group(g.interventions, start_layer=f)
                for g, f in zip(groups, firsts)]

        def keep_final(out, chunk: Batch) -> dict[str, Tensor]:
            return _ranks(model, [out.final], [n - 1], chunk, None)

        out = run(model, batch, groups=late, read="last", keep=keep_final, batch_size=batch_size, progress=progress,
                  desc=desc).kept
    else:
        sites, keep = rank_readout(model, range(n), firsts)
        out = run(model, batch, capture=sites, groups=groups, keep=keep, batch_size=batch_size, progress=progress,
                  desc=desc).kept
    return {**{key: out[key].transpose(1, 2) for key in ("rank_answer", "rank_argument") if key in out},
            "top1": out["top1"]}


def _multi_token_error(model, batch: Batch, name: str) -> None:
    report = batch.report
    # multi-token items the first-token rule keeps are scored on their first tokens; the others are not sound
    failing = {i for reason, rows in report.get("fails_rule", {}).items() if reason != "unknown" for i in rows}
    bad = sorted((set(report.get("multi_token_answer", [])) | set(report.get("multi_token_argument", []))) & failing)
    if not bad or batch.examples is None:
        return
    items = []
    for i in bad:
        ex = batch.examples[i]
        for field_name in ("argument", "answer"):
            text = getattr(ex, field_name)
            n_tok = len(model.to_tokens(text, prepend_bos=False)[0]) if text else 0
            if n_tok > 1:
                items.append(f"{text!r} ({field_name}, {n_tok} tokens)")
    shown = ", ".join(items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")
    raise LensarithError(
        f"{name}: {len(bad)} of {len(batch)} examples have a multi-token argument or answer whose first token does not "
        f"identify the answer ({', '.join(sorted({r for r, v in report['fails_rule'].items() if set(v) & set(bad)}))}): "
        f"{shown}; "
        "pass drop_multi_token=True to score them by their first token where that identifies the answer "
        "(the first-token rule) and drop the rest"
    )


def context_batch(model: Model, contexts, *, drop_multi_token: bool, name: str = "contexts") -> Batch:
    if isinstance(contexts, Batch):
        batch = contexts
    else:
        if isinstance(contexts, (str, Example)):
            contexts = [contexts]
        if not isinstance(contexts, Sequence) or len(contexts) == 0:
            raise LensarithError(
                f"{name} is empty: give at least one Example (e.g. transplant_contexts('capitals')), got {contexts!r}"
            )
        plain = [c for c in contexts if isinstance(c, str)]
        if plain:
            raise LensarithError(
                f"{name} must be lensarith.Example objects carrying the answer (and argument) to score, "
                f"got {len(plain)} plain strings, e.g. {plain[0]!r}; wrap them: Example(prompt, ' Beijing', ' China')"
            )
        batch = tokenize(model, list(contexts), drop_multi_token=drop_multi_token)
        if not drop_multi_token:
            _multi_token_error(model, batch, name)
    if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
        raise LensarithError(f"{name}: every context needs an answer to score (Example.answer), some have none")
    return batch


def single_tokens(model: Model, e: Example) -> bool:
    """Whether the example's argument and answer are each one known token of ``model``'s vocabulary."""
    unk = model.tokenizer.unk_token_id if model.tokenizer is not None else None
    for text in (e.argument, e.answer):
        ids = model.to_tokens(text, prepend_bos=False)[0].tolist() if text else []
        if len(ids) != 1 or ids[0] == unk:
            return False
    return True
