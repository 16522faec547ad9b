"""Prompt pairs for patching: clean and corrupted prompts aligned token by token.

``make_pairs`` pairs your own prompts row by row; ``pair_examples`` pairs task examples
(of the same token length, with different answers). Both return ``PromptPairs``, which
``activation_patch`` and ``attribution_patch`` take as ``clean``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from jaxtyping import Int
from torch import Tensor

from .._errors import LensarithError, check_int
from .._types import Model
from ..core import Batch, as_batch, resolve_ids, tokenize
from ..tasks import Example
from ._metrics import TokenSpec

__all__ = ["PromptPairs", "make_pairs", "pair_examples", "as_pairs"]

_PAIR_TOKENS = ("clean", "corrupted", "clean_argument", "corrupted_argument")


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
            raise LensarithError(f"PromptPairs supports slicing only, e.g. pairs[0:8], got {idx!r}")
        return PromptPairs(self.clean[idx], self.corrupted[idx], self.report)

    @property
    def read(self) -> Int[Tensor, " batch"]:
        """The position each pair is scored at: its last real token."""
        return self.clean.last

    def token_ids(self, model: Model, spec: TokenSpec, *, name: str = "tokens") -> Int[Tensor, " batch"]:
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
        return resolve_ids(model, self.clean, spec, name).cpu()


def _with_answers(model, batch: Batch, answers, name: str) -> Batch:
    if answers is None:
        return batch
    if isinstance(answers, str) and answers in ("answer", "argument"):
        raise LensarithError(f"{name}={answers!r}: give the answer tokens themselves (strings or ids), one per prompt")
    return replace(batch, answer_ids=resolve_ids(model, batch, answers, name))


def make_pairs(model: Model, clean, corrupted, *, answers=None, corrupted_answers=None) -> PromptPairs:
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
        >>> pairs = make_pairs(model, ["Q: What is the capital of Poland?\\nA:"],
        ...                    ["Q: What is the capital of China?\\nA:"], answers=" Warsaw", corrupted_answers=" Beijing")
        >>> len(pairs), pairs.clean.tokens.shape == pairs.corrupted.tokens.shape
        (1, True)
    """
    c = _with_answers(model, as_batch(model, clean), answers, "answers")
    k = _with_answers(model, as_batch(model, corrupted), corrupted_answers, "corrupted_answers")
    return PromptPairs(c, k, {"n": len(c), "source": "make_pairs"})


def pair_examples(model: Model, examples: Sequence[Example], corrupted: Sequence[Example] | None = None, *,
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
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=8)
        >>> len(pairs), bool((pairs.clean.answer_ids != pairs.corrupted.answer_ids).all())
        (8, True)
    """
    check_int(n, "n", minimum=1, allow_none=True)
    check_int(seed, "seed")
    for name, exs in (("examples", examples), ("corrupted", corrupted)):
        if exs is not None and (not exs or not all(isinstance(e, Example) for e in exs)):
            raise LensarithError(f"{name} must be a non-empty list of lensarith.Example (e.g. build_prompts('capitals'))")
    if corrupted is not None and len(corrupted) != len(examples):
        raise LensarithError(f"examples has {len(examples)} rows but corrupted has {len(corrupted)}: give one each")
    sides = [examples] if corrupted is None else [examples, corrupted]
    info: list[dict[int, tuple[int, int]]] = []  # per side: input row -> (length, answer id)
    for exs in sides:
        # pairs differ in one token: multi-token items are dropped, not scored by their first token
        batch = tokenize(model, list(exs), drop_multi_token=drop_multi_token, scoring="single_token")
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


def as_pairs(model: Model, clean, corrupted) -> PromptPairs:
    """``PromptPairs`` from pairs, or from clean and corrupted prompts."""
    if isinstance(clean, PromptPairs):
        if corrupted is not None:
            raise LensarithError("clean is already PromptPairs; leave corrupted=None")
        return clean
    if corrupted is None:
        raise LensarithError("give corrupted prompts, or PromptPairs (make_pairs / pair_examples) as clean")
    return make_pairs(model, clean, corrupted)
