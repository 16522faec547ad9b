"""Batches: right-padded token ids with per-row lengths, and the one token-spec -> ids resolver.

Batches are right-padded: every row keeps its real positions (0..length-1), so a batched
forward equals one-by-one forwards exactly, and per-row readout positions pick the last
real token.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Int
from torch import Tensor

from .._errors import LensarithError, LensarithWarning, check_int
from .._types import Model
from ..tasks import Example
from ..tasks._scoring import SCORING_RULES, classify_items, default_scoring, scoring_counts

__all__ = ["Batch", "tokenize", "as_batch", "token_ids", "resolve_ids"]


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids with per-row lengths and scored token ids.

    Attributes:
        tokens: ``[batch, pos]`` ids, padded on the right with the pad id.
        lengths: ``[batch]`` number of real tokens per row (BOS included).
        answer_ids: ``[batch]`` first token of each answer, or None.
        argument_ids: ``[batch]`` first token of each argument, or None.
        examples: the examples the rows came from (None for raw tokens).
        report: multi-token answers/arguments, the first-token rule's verdicts and dropped rows
            (``lensarith.tasks._scoring.scoring_counts(batch.report)`` counts them).
    """

    tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    answer_ids: Int[Tensor, " batch"] | None = None
    argument_ids: Int[Tensor, " batch"] | None = None
    examples: tuple[Example, ...] | None = None
    report: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def counts(self) -> dict:
        """How many items were given, scored (single-token, by the first-token rule) and dropped
        per reason (``lensarith.tasks.scoring_counts`` of ``report``)."""
        return scoring_counts(self.report)

    @property
    def last(self) -> Int[Tensor, " batch"]:
        """The last real position of each row."""
        return self.lengths - 1

    def positions(self, position: int | str = "last") -> Int[Tensor, " batch"]:
        """Per-row positions: ``"last"``; a negative int counts back from each row's last
        real token (-1 is the last); a non-negative int is absolute."""
        if position == "last":
            return self.last
        if not isinstance(position, int) or isinstance(position, bool):
            raise LensarithError(f"position must be 'last' or an int, got {position!r}")
        if position < 0:
            pos = self.lengths + position
            if int(pos.min()) < 0:
                raise LensarithError(
                    f"position={position} reaches before the start of the shortest prompt "
                    f"({int(self.lengths.min())} tokens); valid is -{int(self.lengths.min())}..-1"
                )
            return pos
        if position >= int(self.lengths.min()):
            raise LensarithError(
                f"position={position} is past the end of the shortest prompt "
                f"({int(self.lengths.min())} tokens); valid is 0..{int(self.lengths.min()) - 1} or 'last'"
            )
        return torch.full_like(self.lengths, position)

    def __getitem__(self, idx: slice) -> Batch:
        if not isinstance(idx, slice):
            raise LensarithError(f"Batch supports slicing only, e.g. batch[0:8] (or batch.take(indices)), got {idx!r}")
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(lengths) else 0
        return Batch(
            self.tokens[idx, :width],
            lengths,
            None if self.answer_ids is None else self.answer_ids[idx],
            None if self.argument_ids is None else self.argument_ids[idx],
            None if self.examples is None else self.examples[idx],
            self.report,
        )

    def take(self, index: Int[Tensor, " n"]) -> Batch:
        """The rows at ``index`` (any order), trimmed to their own width."""
        lengths = self.lengths[index]
        width = int(lengths.max()) if len(lengths) else 0
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        examples = None if self.examples is None else tuple(self.examples[int(i)] for i in index)
        return Batch(self.tokens[index, :width], lengths, pick(self.answer_ids), pick(self.argument_ids),
                     examples, self.report)

    def tile(self, k: int) -> Batch:
        """``k`` copies of the batch stacked on the row axis (copy ``g`` holds rows ``g*n .. (g+1)*n``)."""
        rep = lambda t: None if t is None else t.repeat(k)  # noqa: E731
        return Batch(self.tokens.repeat(k, 1), self.lengths.repeat(k), rep(self.answer_ids), rep(self.argument_ids))

    def chunks(self, size: int) -> Iterator[Batch]:
        """Consecutive sub-batches of at most ``size`` rows, each trimmed to its own width."""
        check_int(size, "batch_size", minimum=1)
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def to(self, device: str | torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, tokens=move(self.tokens), lengths=move(self.lengths),
                       answer_ids=move(self.answer_ids), argument_ids=move(self.argument_ids))


def _token_ids(model, text: str) -> list[int]:
    return model.to_tokens(text, prepend_bos=False)[0].tolist()


def _pad_id(model) -> int:
    tok = model.tokenizer
    if tok is not None and tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    return 0


def tokenize(
    model: Model,
    examples: Sequence[Example | str],
    *,
    drop_multi_token: bool = False,
    prepend_bos: bool | None = None,
    scoring: str | None = None,
) -> Batch:
    """Tokenise examples into a right-padded ``Batch``.

    Every answer and argument is scored on its first token (``batch.answer_ids``). Which
    multi-token items that is sound for is the first-token rule (``lensarith.tasks._scoring``):
    an item is kept when the answer's first token differs from the argument's and, for a
    multi-token answer, no other answer of the task starts with the same token.

    Args:
        model: a HookedTransformer with a tokenizer.
        examples: ``Example`` objects (answers and arguments are scored) or plain strings.
        drop_multi_token: drop the examples ``scoring`` does not keep, and unknown words
            (otherwise every example is scored on its first tokens, as the paper's code did,
            and unknown words raise); the report counts them either way.
        prepend_bos: override the model's default BOS handling.
        scoring: ``"first_token"`` (the rule above) or ``"single_token"`` (drop every item
            whose answer or argument is several tokens); None: ``default_scoring()``, the
            rule above unless inside ``lensarith.tasks.scoring_rule(...)``.

    Returns:
        A ``Batch``; ``batch.report`` holds ``n_input``, ``n``, ``scoring``, the indices (into
        ``examples``) of multi-token answers and arguments, unknown words, ``first_token``
        (multi-token items kept by the rule), ``fails_rule`` (``{reason: indices}``, reasons
        from ``DROP_REASONS``) and ``dropped``; ``lensarith.tasks._scoring.scoring_counts``
        turns it into counts.

    Example:
        >>> batch = tokenize(model, build_prompts("capitals", n=12), drop_multi_token=True)
        >>> batch.report["n_input"] == len(batch) + len(batch.report["dropped"])
        True

    Raises:
        LensarithError: empty input, an answer or argument that is out of the vocabulary
            (word-level tokenizers), or a prompt longer than the model's context.
    """
    if model.tokenizer is None:
        raise LensarithError("the model has no tokenizer; pass token ids (a tensor) instead of strings")
    if isinstance(examples, (str, Example)) or not isinstance(examples, Sequence):
        raise LensarithError(f"examples must be a list of strings or Examples, got {type(examples).__name__}")
    if len(examples) == 0:
        raise LensarithError("examples is empty: give at least one prompt")
    if not all(isinstance(e, (str, Example)) for e in examples):
        bad = next(e for e in examples if not isinstance(e, (str, Example)))
        raise LensarithError(f"examples must be strings or lensarith.Example objects, got a {type(bad).__name__}: {bad!r}")
    if prepend_bos is not None and not isinstance(prepend_bos, bool):
        raise LensarithError(f"prepend_bos must be None, True or False, got {prepend_bos!r}")
    if not isinstance(drop_multi_token, bool):
        raise LensarithError(f"drop_multi_token must be True or False, got {drop_multi_token!r}")
    if scoring is None:
        scoring = default_scoring()
    if isinstance(scoring, bool) or scoring not in SCORING_RULES:
        raise LensarithError(f"scoring must be one of {', '.join(map(repr, SCORING_RULES))}, got {scoring!r}")
    exs = [Example(e, "", "") if isinstance(e, str) else e for e in examples]
    unk = model.tokenizer.unk_token_id
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    status = classify_items([(e.task, e.argument, e.answer) for e in exs], lambda t: _token_ids(model, t), scoring=scoring)
    report: dict = {"n_input": len(exs), "scoring": scoring, "multi_token_answer": [], "multi_token_argument": [],
                    "unknown": [], "dropped": [], "unknown_in_prompt": [], "first_token": [], "fails_rule": {}}
    rows, answers, arguments, kept = [], [], [], []
    for i, ex in enumerate(exs):
        ids = model.to_tokens(ex.prompt, prepend_bos=bos, truncate=False)[0]
        if len(ids) > model.cfg.n_ctx:
            raise LensarithError(
                f"example {i} ({ex.prompt[:40]!r}...) has {len(ids)} tokens, more than the model's n_ctx={model.cfg.n_ctx}; "
                "shorten it (lensarith never truncates a prompt: it would end in another word)"
            )
        ans = _token_ids(model, ex.answer) if ex.answer else []
        arg = _token_ids(model, ex.argument) if ex.argument else []
        bad = [w for w, t in ((ex.answer, ans), (ex.argument, arg)) if t and unk is not None and unk in t
               and model.tokenizer.unk_token not in w]
        if bad:
            report["unknown"].append((i, bad))
            report["fails_rule"].setdefault("unknown", []).append(i)
            if drop_multi_token:
                report["dropped"].append(i)
                continue
            raise LensarithError(
                f"example {i} ({ex.prompt[-40:]!r}): {bad} not in the model's vocabulary; "
                "pass drop_multi_token=True to drop such examples"
            )
        if unk is not None and model.tokenizer.unk_token not in ex.prompt and bool((ids == unk).any()):
            report["unknown_in_prompt"].append(i)
        if len(ans) > 1:
            report["multi_token_answer"].append(i)
        if len(arg) > 1:
            report["multi_token_argument"].append(i)
        if status[i] == "first_token":
            report["first_token"].append(i)
        elif status[i] != "single_token":
            report["fails_rule"].setdefault(status[i], []).append(i)
            if drop_multi_token:
                report["dropped"].append(i)
                continue
        rows.append(ids)
        answers.append(ans[0] if ans else -1)
        arguments.append(arg[0] if arg else -1)
        kept.append(ex)
    if report["unknown_in_prompt"]:
        first = report["unknown_in_prompt"][0]
        warnings.warn(
            f"{len(report['unknown_in_prompt'])} of {len(exs)} prompts contain words outside the model's vocabulary, "
            f"read as {model.tokenizer.unk_token!r} (first: example {first}, {exs[first].prompt[:60]!r}); "
            "batch.report['unknown_in_prompt'] lists them", LensarithWarning, stacklevel=2)
    if not rows:
        reasons = "; ".join(f"{len(v)} {r}" for r, v in report["fails_rule"].items())
        raise LensarithError(f"no examples left after dropping {len(report['dropped'])} of {len(exs)} ({reasons}; "
                             f"scoring={scoring!r}, see lensarith.tasks._scoring.DROP_REASONS)")
    lengths = torch.tensor([len(r) for r in rows])
    tokens = torch.full((len(rows), int(lengths.max())), _pad_id(model), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    has_answers = any(a >= 0 for a in answers)
    has_arguments = any(a >= 0 for a in arguments)
    report["n"] = len(rows)
    return Batch(
        tokens,
        lengths,
        torch.tensor(answers) if has_answers else None,
        torch.tensor(arguments) if has_arguments else None,
        tuple(kept),
        report,
    )


def as_batch(model: Model, inputs) -> Batch:
    """Coerce prompts (str, list of str or Example), token ids, or a Batch into a Batch."""
    if isinstance(inputs, Batch):
        return inputs
    if isinstance(inputs, (str, Example)):
        return tokenize(model, [inputs])
    if isinstance(inputs, Tensor):
        if inputs.dtype not in (torch.int64, torch.int32) or inputs.ndim not in (1, 2):
            raise LensarithError(f"token ids must be an integer tensor [batch, pos] or [pos], got dtype {inputs.dtype} shape {tuple(inputs.shape)}")
        tokens = inputs if inputs.ndim == 2 else inputs[None]
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise LensarithError(f"token ids are empty: shape {tuple(tokens.shape)}")
        if int(tokens.max()) >= model.cfg.d_vocab or int(tokens.min()) < 0:
            raise LensarithError(f"token ids must lie in 0..{model.cfg.d_vocab - 1}, got {int(tokens.min())}..{int(tokens.max())}")
        if tokens.shape[1] > model.cfg.n_ctx:
            raise LensarithError(f"token ids have {tokens.shape[1]} positions, more than the model's n_ctx={model.cfg.n_ctx}")
        return Batch(tokens.long(), torch.full((tokens.shape[0],), tokens.shape[1]))
    if isinstance(inputs, Sequence):
        if len(inputs) == 0:
            raise LensarithError("prompts is empty: give at least one prompt")
        if not all(isinstance(x, (str, Example)) for x in inputs):
            raise LensarithError("prompts must be strings or lensarith.Example objects")
        return tokenize(model, list(inputs))
    raise LensarithError(f"prompts must be a string, a list of strings or Examples, token ids or a Batch; got {type(inputs).__name__}")


def token_ids(model: Model, tokens: Sequence[str | int] | Tensor | str | int, *, name: str = "tokens") -> Int[Tensor, " n"]:
    """One token id per item: a string must be exactly one token of the model's vocabulary; ids
    must lie in the vocabulary.

    Raises:
        LensarithError: a string of several tokens (it would be scored on its first token
            without a word), an unknown word, a bool, or an id out of range.
    """
    if isinstance(tokens, (str, int)):
        tokens = [tokens]
    if isinstance(tokens, Tensor):
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise LensarithError(f"{name}: token ids must be an integer tensor, got dtype {tokens.dtype}")
        ids = tokens.long().flatten()
    else:
        if not isinstance(tokens, Sequence):
            raise LensarithError(f"{name} must be a token string, an id, or a list of them, got {type(tokens).__name__}")
        out = []
        for t in tokens:
            if isinstance(t, str):
                got = _token_ids(model, t)
                unk = model.tokenizer.unk_token_id if model.tokenizer is not None else None
                if not got or (unk is not None and unk in got):
                    raise LensarithError(f"{name}: {t!r} is not in the model's vocabulary")
                if len(got) > 1:
                    pieces = [model.tokenizer.decode([g]) for g in got] if model.tokenizer is not None else got
                    raise LensarithError(
                        f"{name}: {t!r} is {len(got)} tokens {pieces}; give one token per item (a one-token string "
                        f"or its id; to score the first token as the paper does, pass id {got[0]})"
                    )
                out.append(got[0])
            elif isinstance(t, int) and not isinstance(t, bool):
                out.append(int(t))
            else:
                raise LensarithError(f"{name}: items must be token strings or int ids, got {t!r} ({type(t).__name__})")
        ids = torch.tensor(out, dtype=torch.long)
    if len(ids) and (int(ids.max()) >= model.cfg.d_vocab or int(ids.min()) < 0):
        raise LensarithError(f"{name}: token ids must lie in 0..{model.cfg.d_vocab - 1}, got {ids.tolist()[:8]}")
    return ids


def resolve_ids(model: Model, batch: Batch, spec, name: str) -> Int[Tensor, " batch"]:
    """One token id per row of ``batch`` from a token spec.

    ``"answer"`` / ``"argument"`` are each row's own (from its ``Example``); a string or id
    applies to every row; a list or ``[batch]`` tensor gives one token per row.
    """
    if isinstance(spec, str) and spec in ("answer", "argument"):
        ids = batch.answer_ids if spec == "answer" else batch.argument_ids
        if ids is None or bool((ids < 0).any()):
            raise LensarithError(f"{name}={spec!r}: the prompts carry no {spec}s; pass one token per prompt")
        return ids
    if isinstance(spec, (str, int)) and not isinstance(spec, bool):
        spec = [spec] * len(batch)
    ids = token_ids(model, spec, name=name)
    if ids.shape != (len(batch),):
        raise LensarithError(f"{name} needs one token per prompt ({len(batch)}), got {tuple(ids.shape)}")
    return ids
