"""Which items a recipe can score, and why the others are dropped: the first-token rule.

A recipe scores an item on one token of its answer (and tracks one token of its argument):
the rank of that token in the logit lens. Under a word-level tokenizer every answer is one
token; under a real tokenizer (SentencePiece, byte-level BPE) many are several. The rule
(``scoring="first_token"``, the default):

- an item whose answer and argument are one token each is scored as it is (``single_token``);
- an item with a multi-token answer or argument is scored on the *first* token of each
  (``first_token``) when

  1. the answer's first token differs from the argument's first token, and
  2. a multi-token answer's first token identifies it within the task: no other answer of
     the task starts with that token (the task's answers are every answer in its data files,
     plus the answers of the items given);

- otherwise it is dropped, counted under its reason (``DROP_REASONS``): ``argument_first_token``
  (rule 1 fails), ``shared_first_token`` (rule 2 fails), ``unknown`` (a word-level tokenizer
  does not know the word), or, with ``scoring="single_token"`` (every multi-token item dropped,
  lensarith's rule before the real models), ``multi_token``.

Single-token items are kept as they always were, even when the answer equals the argument
(``Singapore`` -> ``Singapore``): the rule only decides how a multi-token item is scored.

This module is pure Python: it takes token ids (or an ``encode`` function) and returns
statuses; ``lensarith.core.tokenize`` applies it and writes the counts into ``batch.report``.

Example:
    >>> enc = {" Rome": [1], " Italy": [2], " San Marino": [3, 4], " San": [3],
    ...        " Santiago": [3, 5], " Chile": [6], " Kuwait": [7], " Kuwait City": [7, 8]}.__getitem__
    >>> items = [("t", " Italy", " Rome"), ("t", " San", " San Marino"), ("t", " Chile", " Santiago"),
    ...          ("t", " Kuwait", " Kuwait City")]
    >>> classify_items(items, enc, universe={})
    ['single_token', 'argument_first_token', 'shared_first_token', 'argument_first_token']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from .._errors import LensarithError, check_choice

__all__ = ["Scoring", "SCORING_RULES", "DROP_REASONS", "KEPT", "base_task", "task_answers", "classify_items",
           "scoring_counts", "default_scoring", "scoring_rule"]

Scoring = Literal["first_token", "single_token"]
SCORING_RULES: tuple[str, ...] = ("first_token", "single_token")

_DEFAULT: list[str] = ["first_token"]


def default_scoring() -> str:
    """The rule ``tokenize(scoring=None)`` applies: ``"first_token"`` unless ``scoring_rule`` says otherwise."""
    return _DEFAULT[-1]


@contextmanager
def scoring_rule(rule: str) -> Iterator[None]:
    """Apply ``rule`` wherever a recipe tokenizes without naming one, inside the block (restored after,
    also on error). Recipes such as ``find_layers`` or ``transplant`` take no ``scoring=``; this picks
    the rule for them, e.g. ``"single_token"`` to score only one-token items as lensarith did before
    the first-token rule.

    Example:
        >>> with scoring_rule("single_token"):
        ...     inside = default_scoring()
        >>> inside, default_scoring()
        ('single_token', 'first_token')
    """
    check_choice(rule, SCORING_RULES, "rule")
    _DEFAULT.append(rule)
    try:
        yield
    finally:
        _DEFAULT.pop()


#: statuses of an item that is scored
KEPT: dict[str, str] = {
    "single_token": "answer and argument are one token each",
    "first_token": "scored on the first token of a multi-token answer or argument (the first-token rule)",
}

#: why an item is not scored (the keys of ``report["fails_rule"]`` and of the counts' ``dropped``)
DROP_REASONS: dict[str, str] = {
    "unknown": "answer or argument outside the tokenizer's vocabulary",
    "argument_first_token": "answer first token equals argument first token",
    "shared_first_token": "answer first token shared with another answer of the task",
    "multi_token": "answer or argument not one token (scoring='single_token')",
}


def base_task(task: str) -> str:
    """The dataset a task label comes from: ``"random:capitals"`` -> ``"capitals"``."""
    return task.split(":", 1)[1] if task.startswith("random:") else task


def task_answers(task: str) -> list[str]:
    """Every answer of ``task``'s data files as scored (with the leading space); [] for a label
    that names no task (a user's own examples: then only the items given count)."""
    from ._datasets import TASKS, load_pairs

    name = base_task(task)
    if name not in TASKS:
        return []
    return [" " + r["answer"] for r in load_pairs(name)]


def classify_items(
    items: Sequence[tuple[str, str, str]],
    encode: Callable[[str], Sequence[int]],
    *,
    scoring: str = "first_token",
    universe: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """One status per item: a key of ``KEPT`` (scored) or of ``DROP_REASONS`` (not scored).

    Args:
        items: ``(task, argument, answer)`` per item, answer and argument as scored (``" Rome"``);
            an empty string is not scored (a plain prompt).
        encode: text -> token ids, no BOS (``lensarith.core`` passes the model's tokenizer).
        scoring: ``"first_token"`` (the rule above) or ``"single_token"`` (drop every
            multi-token item).
        universe: the answers each task is compared with (``{task: answers}``); by default
            ``task_answers(task)``. The items' own answers are always added.

    Returns:
        Statuses, in the order of ``items`` (never ``"unknown"``: the caller checks that).
    """
    check_choice(scoring, SCORING_RULES, "scoring")
    if isinstance(items, (str, tuple)) or not isinstance(items, Sequence):
        raise LensarithError(f"items must be a list of (task, argument, answer) tuples, got {type(items).__name__}")
    cache: dict[str, tuple[int, ...]] = {}

    def ids(text: str) -> tuple[int, ...]:
        if text not in cache:
            cache[text] = tuple(int(t) for t in encode(text)) if text else ()
        return cache[text]

    firsts: dict[str, dict[int, set[str]]] = {}  # task -> first token -> the answers starting with it

    def owners(task: str) -> dict[int, set[str]]:
        if task not in firsts:
            answers = list(universe.get(task, ()) if universe is not None else task_answers(task))
            answers += [a for t, _, a in items if t == task and a]
            table: dict[int, set[str]] = {}
            for answer in dict.fromkeys(answers):
                got = ids(answer)
                if got:
                    table.setdefault(got[0], set()).add(answer)
            firsts[task] = table
        return firsts[task]

    out = []
    for task, argument, answer in items:
        ans, arg = ids(answer), ids(argument)
        if len(ans) <= 1 and len(arg) <= 1:
            out.append("single_token")
        elif scoring == "single_token":
            out.append("multi_token")
        elif ans and arg and ans[0] == arg[0]:
            out.append("argument_first_token")
        elif len(ans) > 1 and owners(task).get(ans[0], set()) - {answer}:
            out.append("shared_first_token")
        else:
            out.append("first_token")
    return out


def scoring_counts(report: Mapping) -> dict:
    """The counts a ``batch.report`` holds, for summaries: items given, items scored (single-token
    and by the first-token rule), items dropped per reason, and items scored although they fail
    the rule (``drop_multi_token=False``: the paper's first-token scoring of every item).

    Example:
        >>> scoring_counts({"n_input": 5, "n": 3, "scoring": "first_token", "first_token": [1],
        ...                 "dropped": [2, 4], "fails_rule": {"shared_first_token": [2], "unknown": [4]}})["dropped"]
        {'shared_first_token': 1, 'unknown': 1}
    """
    dropped = set(report.get("dropped", []))
    fails = report.get("fails_rule", {})
    first = len(report.get("first_token", []))
    n = int(report.get("n", 0))
    return {
        "items": int(report.get("n_input", 0)),
        "scored": n,
        "single_token": n - first - sum(len(set(v) - dropped) for v in fails.values()),
        "first_token": first,
        "dropped": {r: len(set(v) & dropped) for r, v in fails.items() if set(v) & dropped},
        "kept_failing_rule": {r: len(set(v) - dropped) for r, v in fails.items() if set(v) - dropped},
        "scoring": report.get("scoring", "single_token"),
    }
