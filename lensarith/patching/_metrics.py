"""Patching metrics: one number per example from the logits at the read position.

A metric is bound to a set of prompt pairs (``Metric.bind``), which resolves the tokens it
scores (the clean answers, the corrupted answers, given strings or ids) and says which
logit columns it needs: a logit difference needs two columns per example, so a sweep never
computes the full unembedding for it; probabilities and ranks need every column.

Built-in metrics:

- ``LogitDiff``: ``logit(answer) - logit(baseline)``, by default clean answer minus
  corrupted answer (``"logit_diff"``).
- ``Recovery``: a base metric normalised so that the corrupted run scores 0 and the clean
  run 1 (``"recovery"``, on ``LogitDiff``).
- ``AnswerProb``: the softmax probability of the answer (``"answer_prob"``).
- ``ReciprocalRank``: ``1 / (rank + 1)`` of the answer, the paper's metric
  (``"reciprocal_rank"``).
- any callable ``fn(logits [batch, d_vocab]) -> [batch]``: one number per example, rows in
  the order of the prompt pairs (``CallableMetric``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from ..core import readout

if TYPE_CHECKING:  # pragma: no cover
    from ._pairs import PromptPairs

__all__ = [
    "Metric",
    "BoundMetric",
    "LogitDiff",
    "Recovery",
    "AnswerProb",
    "ReciprocalRank",
    "CallableMetric",
    "resolve_metric",
    "METRICS",
    "TokenSpec",
]

#: Which token a metric scores: ``"clean"`` / ``"corrupted"`` (each pair's answer),
#: ``"clean_argument"`` / ``"corrupted_argument"``, a token string or id for every example,
#: or one token per example (list or ``[batch]`` tensor).
TokenSpec = Union[
    Literal["clean", "corrupted", "clean_argument", "corrupted_argument"], str, int, Sequence[Union[str, int]], Tensor
]


@dataclass(frozen=True)
class BoundMetric:
    """A metric resolved against prompt pairs.

    Attributes:
        columns: ``[batch, k]`` logit columns the score reads per example, or None when it
            needs the whole vocabulary.
        score: maps logits ``[variant, batch, k]`` (or ``[variant, batch, d_vocab]``) to
            ``[variant, batch]``.
    """

    columns: Int[Tensor, "batch k"] | None
    score: Callable[[Tensor], Tensor]


class Metric:
    """Base class of patching metrics.

    Subclasses implement ``bind``; metrics that are not a plain mean over examples (such as
    ``Recovery``) also override ``aggregate``.
    """

    name: ClassVar[str] = "metric"
    differentiable: ClassVar[bool] = True

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, clean: Float[Tensor, " batch"], corrupted: Float[Tensor, " batch"]) -> None:
        """Raise if the metric is undefined for these clean and corrupted scores."""

    def aggregate(
        self, raw: Float[Tensor, "*grid batch"], clean: Float[Tensor, " batch"], corrupted: Float[Tensor, " batch"]
    ) -> tuple[Float[Tensor, "*grid"], Float[Tensor, "*grid batch"]]:
        """``(values, per_example)`` from the raw scores of patched runs: by default the
        mean over examples and the raw scores themselves."""
        return raw.mean(-1), raw

    def describe(self) -> str:
        return self.name


def _two_columns(values: Tensor) -> Tensor:
    return values[..., 0] - values[..., 1]


def _first_column(values: Tensor) -> Tensor:
    return values[..., 0]


@dataclass(frozen=True)
class LogitDiff(Metric):
    """``logit(answer) - logit(baseline)`` at the read position.

    Args:
        answer: the token scored up (default each pair's clean answer).
        baseline: the token scored down (default each pair's corrupted answer); None for
            the plain logit of ``answer``.

    Example:
        >>> LogitDiff()  # clean answer minus corrupted answer
        LogitDiff(answer='clean', baseline='corrupted')
    """

    answer: TokenSpec = "clean"
    baseline: TokenSpec | None = "corrupted"
    name: ClassVar[str] = "logit_diff"

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:
        ans = pairs.token_ids(model, self.answer, name="LogitDiff.answer")
        if self.baseline is None:
            return BoundMetric(ans[:, None], _first_column)
        base = pairs.token_ids(model, self.baseline, name="LogitDiff.baseline")
        return BoundMetric(torch.stack([ans, base], dim=1), _two_columns)


@dataclass(frozen=True)
class AnswerProb(Metric):
    """The softmax probability of ``answer`` at the read position (default: clean answer)."""

    answer: TokenSpec = "clean"
    name: ClassVar[str] = "answer_prob"

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:
        ans = pairs.token_ids(model, self.answer, name="AnswerProb.answer")

        def score(logits: Tensor) -> Tensor:
            idx = ans.to(logits.device).expand(logits.shape[0], -1)[..., None]
            return logits.log_softmax(-1).gather(-1, idx)[..., 0].exp()

        return BoundMetric(None, score)


@dataclass(frozen=True)
class ReciprocalRank(Metric):
    """``1 / (rank + 1)`` of ``answer`` (rank 0 = top-1), the paper's metric.

    Piecewise constant, so ``attribution_patch`` rejects it (its gradient is zero).
    """

    answer: TokenSpec = "clean"
    name: ClassVar[str] = "reciprocal_rank"
    differentiable: ClassVar[bool] = False

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:
        ans = pairs.token_ids(model, self.answer, name="ReciprocalRank.answer")

        def score(logits: Tensor) -> Tensor:
            rank = readout.rank(logits, ans.to(logits.device).expand(logits.shape[0], -1), where="the patched runs' logits")
            return 1.0 / (rank.to(logits.dtype) + 1.0)

        return BoundMetric(None, score)


@dataclass(frozen=True)
class CallableMetric(Metric):
    """Wrap ``fn(logits [batch, d_vocab]) -> [batch]``: one number per example.

    ``fn`` sees the logits at each example's read position (its last real token), rows in
    the order of the prompt pairs; it is called once per patched site.
    """

    fn: Callable[[Tensor], Tensor]
    name: ClassVar[str] = "callable"

    def describe(self) -> str:
        return f"callable:{getattr(self.fn, '__name__', type(self.fn).__name__)}"

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:
        n = len(pairs)
        fn = self.fn

        def one(logits: Tensor) -> Tensor:
            try:
                out = fn(logits)
            except LensarithError:
                raise
            except Exception as exc:
                raise LensarithError(
                    f"the metric {self.describe()} raised {type(exc).__name__} on logits of shape "
                    f"{tuple(logits.shape)} ([batch, d_vocab] at the read position): {exc}"
                ) from exc
            if not isinstance(out, Tensor):
                raise LensarithError(
                    f"the metric {self.describe()} must return a tensor with one number per example, "
                    f"shape ({n},); got {type(out).__name__}"
                )
            if out.shape != (n,):
                raise LensarithError(
                    f"the metric {self.describe()} must return one number per example, shape ({n},), "
                    f"from logits [batch={n}, d_vocab]; got shape {tuple(out.shape)}"
                    + (" (return per-example values, not their mean)" if out.ndim == 0 else "")
                )
            bad = ~torch.isfinite(out.detach())
            if bool(bad.any()) and bool(torch.isfinite(logits.detach()).all()):
                raise LensarithError(
                    f"the metric {self.describe()} returned non-finite values (NaN or inf) for examples "
                    f"{bad.nonzero().flatten().tolist()[:8]} on finite logits; fix the metric (e.g. no log or division "
                    "at 0)")
            return out.to(logits.dtype)

        def score(logits: Tensor) -> Tensor:
            return torch.stack([one(variant) for variant in logits])

        return BoundMetric(None, score)


@dataclass(frozen=True)
class Recovery(Metric):
    """A base metric normalised to 0 on the corrupted run and 1 on the clean run.

    ``values`` normalise the mean over examples:
    ``(mean(patched) - mean(corrupted)) / (mean(clean) - mean(corrupted))``;
    ``per_example`` normalises each example by its own clean and corrupted scores (NaN where
    they are equal).

    Args:
        base: the metric normalised (default ``LogitDiff()``); a name or callable works too.
    """

    base: Metric | str | Callable[[Tensor], Tensor] = LogitDiff()
    name: ClassVar[str] = "recovery"

    @property
    def _base(self) -> Metric:
        base = resolve_metric(self.base)
        if isinstance(base, Recovery):
            raise LensarithError("Recovery(base=...) cannot normalise another Recovery")
        return base

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return self._base.differentiable

    def describe(self) -> str:
        return f"recovery({self._base.describe()})"

    def bind(self, model: Model, pairs: PromptPairs) -> BoundMetric:
        return self._base.bind(model, pairs)

    def check(self, clean: Float[Tensor, " batch"], corrupted: Float[Tensor, " batch"]) -> None:
        gap = float(clean.mean() - corrupted.mean())
        if gap == 0.0 or gap != gap:
            raise LensarithError(
                f"metric='recovery' is undefined: {self._base.describe()} is the same on the clean and "
                f"corrupted runs (mean {float(clean.mean()):.6g}); pick pairs whose answers differ, "
                "or use metric='logit_diff'"
            )

    def aggregate(
        self, raw: Float[Tensor, "*grid batch"], clean: Float[Tensor, " batch"], corrupted: Float[Tensor, " batch"]
    ) -> tuple[Float[Tensor, "*grid"], Float[Tensor, "*grid batch"]]:
        values = (raw.mean(-1) - corrupted.mean()) / (clean.mean() - corrupted.mean())
        gap = clean - corrupted
        per_example = (raw - corrupted) / torch.where(gap == 0, torch.nan, gap)
        return values, per_example


METRICS: dict[str, Callable[[], Metric]] = {
    "logit_diff": LogitDiff,
    "recovery": Recovery,
    "answer_prob": AnswerProb,
    "reciprocal_rank": ReciprocalRank,
}


def resolve_metric(metric: Metric | str | Callable[[Tensor], Tensor]) -> Metric:
    """A ``Metric`` from a metric object, a built-in name or a callable."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise LensarithError(f"metric={metric!r} is unknown; valid names: {', '.join(METRICS)}, "
                                 "or pass a Metric or a callable logits [batch, d_vocab] -> [batch]")
        return METRICS[metric]()
    if callable(metric):
        return CallableMetric(metric)
    raise LensarithError(f"metric must be a name ({', '.join(METRICS)}), a Metric or a callable; got {type(metric).__name__}")
