"""Few-shot prompts for function vectors and task vectors (pure Python: no torch).

Function vectors (Todd et al. 2024) and task vectors (Hendel et al. 2023) are taken from
prompts with several demonstrations of a task, written in the task's own template
(``TASKS[task].query``): ``hot : cold\\nbig : small\\nup :`` for the bench tasks,
``Q: What is the capital of France?\\nA: Paris\\nQ: ...`` for capitals. With
``shuffle_labels=True`` the demonstrations' answers are permuted among them, so the
demonstrations no longer show the relation (the prompts on which function vectors' heads
are ranked); the query's answer stays the true one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .._errors import LensarithError, check_int, check_seed
from ..tasks import TASKS, Example, load_pairs

__all__ = ["few_shot_prompts", "demo_text"]


def _check_task(task) -> None:
    if not isinstance(task, str) or task not in TASKS:
        raise LensarithError(f"task={task!r} is unknown; valid tasks: {', '.join(sorted(TASKS))}")


def _query(task: str, row: dict) -> str:
    spec = TASKS[task]
    if task == "uppercase":
        return spec.query.format(question=row["question"])
    return spec.query.format(argument=row["argument"])


def demo_text(task: str, row: dict, answer: str | None = None) -> str:
    """One demonstration of ``row`` in the task's template (with ``answer`` instead of its own)."""
    spec = TASKS[task]
    answer = row["answer"] if answer is None else answer
    sep = ". " if spec.query.startswith("Today") else "\n"
    return f"{_query(task, row)} {answer}{sep}"


def few_shot_prompts(
    task: str,
    *,
    n_shots: int = 5,
    queries: Sequence[dict] | None = None,
    demos: Sequence[dict] | None = None,
    n: int | None = None,
    shuffle_labels: bool = False,
    seed: int = 0,
) -> list[Example]:
    """Prompts with ``n_shots`` demonstrations of a task, then a query.

    Args:
        task: a task name (``TASKS``).
        n_shots: demonstrations per prompt (Todd et al. used 10; 5 fits the organism's
            128-token context for the Q/A tasks).
        queries: the rows asked about (default: the task's rows, shuffled when ``n`` is given).
        demos: the rows demonstrations are drawn from (default: the task's rows); a query's
            own row is never one of its demonstrations.
        n: keep the first ``n`` queries.
        shuffle_labels: permute the demonstrations' answers among them (never the identity);
            the query's answer is the true one. Needs ``n_shots >= 2``; a prompt whose
            demonstrations all share one answer keeps them and records ``shuffled=False``.
            With the same ``seed`` the demonstrations are those of the unshuffled prompts.
        seed: seeds the choice and order of demonstrations and the shuffle.

    Returns:
        ``Example`` objects (task = ``task``; ``meta`` records ``n_shots``, ``shuffled`` and
        the demonstration arguments).

    Example:
        >>> p = few_shot_prompts("antonyms", n_shots=2, n=1, seed=1)[0]
        >>> p.prompt.count("\\n"), p.prompt.endswith(" :")
        (2, True)
    """
    _check_task(task)
    check_int(n_shots, "n_shots", minimum=0)
    check_int(n, "n", minimum=1, allow_none=True)
    check_seed(seed)
    if not isinstance(shuffle_labels, bool):
        raise LensarithError(f"shuffle_labels must be True or False, got {shuffle_labels!r}")
    if shuffle_labels and n_shots < 2:
        raise LensarithError(f"shuffle_labels=True needs n_shots >= 2 (one demonstration has no other label to swap "
                             f"with), got n_shots={n_shots}")
    rng = random.Random(seed)
    label_rng = random.Random(f"labels-{seed}")  # the same demonstrations with and without shuffled labels
    all_rows = load_pairs(task)
    pool = list(all_rows if demos is None else demos)
    qs = list(all_rows if queries is None else queries)
    if queries is None and n is not None:
        rng.shuffle(qs)
    if n is not None:
        qs = qs[:n]
    if not qs:
        raise LensarithError("queries is empty: give at least one row to ask about")
    for name, rows in (("queries", qs), ("demos", pool)):
        bad = next((r for r in rows if not isinstance(r, dict) or not isinstance(r.get("argument"), str)
                    or not isinstance(r.get("answer"), str)), None)
        if bad is not None:
            raise LensarithError(f"{name} must be task rows (dicts with 'argument' and 'answer' strings, as load_pairs "
                                 f"gives), got {bad!r:.80}")
    out = []
    for row in qs:
        options = [r for r in pool if r["argument"] != row["argument"]]
        if len(options) < n_shots:
            raise LensarithError(f"n_shots={n_shots} needs at least {n_shots} demonstration rows other than the query, "
                                 f"got {len(options)}; give more demos or fewer shots")
        shots = rng.sample(options, n_shots)
        answers = [r["answer"] for r in shots]
        shuffled = False
        if shuffle_labels:
            if len(set(answers)) < 2:  # every demonstration has the same answer: nothing to shuffle
                labels = answers
            else:
                shuffled = True
                labels = answers[:]
                while labels == answers:
                    label_rng.shuffle(labels)
            answers = labels
        text = "".join(demo_text(task, r, a) for r, a in zip(shots, answers))
        meta = {"format": "few_shot", "n_shots": n_shots, "shuffled": shuffled,
                "demos": [r["argument"] for r in shots]}
        out.append(Example(text + _query(task, row), " " + row["answer"], " " + row["argument"], task, meta))
    return out
