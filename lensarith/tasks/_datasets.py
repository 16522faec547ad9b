"""Task datasets and the paper's prompt formats (pure Python: no torch, no TransformerLens).

Datasets are JSON Lines files in ``data/tasks/`` with ``argument`` and ``answer`` fields
(``colors.jsonl`` adds the scene ``question``). Prompts follow Merullo et al. 2023: one
demonstration, then the query; the model is scored on the first token of ``" " + answer``.
Tokenising prompts into batches is ``lensarith.core``'s job (``tokenize``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from .._errors import LensarithError, check_choice, check_int
from .._paths import data_dir

__all__ = [
    "Example",
    "TaskSpec",
    "TASKS",
    "PAPER_TASKS",
    "EXTRA_TASKS",
    "BENCH_TASKS",
    "load_pairs",
    "build_prompts",
    "random_token_contexts",
    "default_vocab",
    "FILLER_WORDS",
    "WORD_PATTERN",
]

#: The one word pattern: words and numbers (with inner apostrophes, hyphens and
#: underscores), newlines and single punctuation marks. The word tokenizer, the default
#: vocabulary and the organism's corpus all split text with it.
WORD_PATTERN = r"\n|[A-Za-z0-9\u00C0-\u024F'_-]+|[^\sA-Za-z0-9\u00C0-\u024F]"

Format = Literal["one_shot", "extractive", "counterfactual", "zero_shot"]


@dataclass(frozen=True)
class Example:
    """One prompt with the answer and argument it is scored on.

    ``answer`` and ``argument`` carry the leading space the paper scores (``" Warsaw"``).
    """

    prompt: str
    answer: str
    argument: str
    task: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class TaskSpec:
    """A dataset file and how its one-shot prompts are phrased."""

    name: str
    files: tuple[str, ...]
    query: str  # the question about {argument}; the answer follows
    demo: tuple[str, str]  # default demonstration (argument, answer)
    fallback_demo: tuple[str, str]
    fact: str = ""  # a context statement for extractive prompts


_CAPITAL_Q = "Q: What is the capital of {argument}?\nA:"
TASKS: dict[str, TaskSpec] = {
    "capitals": TaskSpec("capitals", ("capitals.jsonl",), _CAPITAL_Q, ("France", "Paris"), ("Japan", "Tokyo"),
                         fact="The capital of {argument} is {answer}."),
    "us_capitals": TaskSpec("us_capitals", ("us_capitals.jsonl",), "Q: What is the capital of the state of {argument}?\nA:",
                            ("Texas", "Austin"), ("Ohio", "Columbus"), fact="The capital of {argument} is {answer}."),
    "uppercase": TaskSpec("uppercase", ("colors.jsonl",), "Q: {question}\nA:", ("", ""), ("", "")),
    "uppercase_words": TaskSpec("uppercase_words", ("uppercase_words.jsonl",), "Q: Capitalize the word {argument}.\nA:",
                                ("table", "Table"), ("river", "River")),
    "past": TaskSpec("past", ("past_regular.jsonl", "past_irregular.jsonl"), "Today I {argument}. Yesterday I",
                     ("abandon", "abandoned"), ("walk", "walked")),
    "past_regular": TaskSpec("past_regular", ("past_regular.jsonl",), "Today I {argument}. Yesterday I",
                             ("abandon", "abandoned"), ("walk", "walked")),
    "past_irregular": TaskSpec("past_irregular", ("past_irregular.jsonl",), "Today I {argument}. Yesterday I",
                               ("go", "went"), ("see", "saw")),
}

#: The tasks of Merullo et al. (2023); ``default_vocab`` (and so ``tiny_model`` and the
#: organism's vocabulary) covers these.
PAPER_TASKS: tuple[str, ...] = tuple(TASKS)

#: Out-of-domain sets added for real tokenizers (only 50 US states exist: too few once a real
#: tokenizer's multi-token names are dropped). Not in ``PAPER_TASKS``: the bundled models'
#: vocabularies were built without them, so on those models their items are unknown words.
EXTRA_TASKS: dict[str, TaskSpec] = {
    "region_capitals": TaskSpec("region_capitals", ("region_capitals.jsonl",), _CAPITAL_Q, ("Texas", "Austin"),
                                ("Ohio", "Columbus"), fact="The capital of {argument} is {answer}."),
}
TASKS.update(EXTRA_TASKS)

#: Function-vector-style tasks (Todd et al. 2024; Hendel et al. 2023): bare ``x : y``
#: demonstrations, the relation only in the examples. ``present_past`` and ``capitalize``
#: reuse the paper tasks' files in this format.
_BARE = "{argument} :"
BENCH_TASKS: dict[str, TaskSpec] = {
    "antonyms": TaskSpec("antonyms", ("antonyms.jsonl",), _BARE, ("hot", "cold"), ("good", "bad")),
    "synonyms": TaskSpec("synonyms", ("synonyms.jsonl",), _BARE, ("big", "large"), ("begin", "start")),
    "singular_plural": TaskSpec("singular_plural", ("singular_plural.jsonl",), _BARE, ("table", "tables"),
                                ("river", "rivers")),
    "present_participle": TaskSpec("present_participle", ("present_participle.jsonl",), _BARE, ("walk", "walking"),
                                   ("play", "playing")),
    "present_past": TaskSpec("present_past", ("past_regular.jsonl", "past_irregular.jsonl"), _BARE, ("walk", "walked"),
                             ("go", "went")),
    "capitalize": TaskSpec("capitalize", ("uppercase_words.jsonl",), _BARE, ("table", "Table"), ("river", "River")),
    "lowercase": TaskSpec("lowercase", ("lowercase.jsonl",), _BARE, ("Table", "table"), ("River", "river")),
    "country_continent": TaskSpec("country_continent", ("country_continent.jsonl",), _BARE, ("France", "Europe"),
                                  ("Japan", "Asia")),
    "country_currency": TaskSpec("country_currency", ("country_currency.jsonl",), _BARE, ("Japan", "yen"),
                                 ("France", "euro")),
    "first_letter": TaskSpec("first_letter", ("first_letter.jsonl",), _BARE, ("table", "t"), ("river", "r")),
    "last_letter": TaskSpec("last_letter", ("last_letter.jsonl",), _BARE, ("table", "e"), ("river", "r")),
    "next_item": TaskSpec("next_item", ("next_item.jsonl",), _BARE, ("one", "two"), ("Monday", "Tuesday")),
    "prev_item": TaskSpec("prev_item", ("prev_item.jsonl",), _BARE, ("two", "one"), ("Tuesday", "Monday")),
    "english_french": TaskSpec("english_french", ("english_french.jsonl",), _BARE, ("cat", "chat"), ("dog", "chien")),
}
TASKS.update(BENCH_TASKS)

FILLER_WORDS: tuple[str, ...] = (
    "table", "mug", "free", "window", "green", "paper", "run", "happy", "stone", "music", "light",
    "road", "cold", "book", "chair", "water", "fast", "open", "little", "garden", "door", "money",
    "sound", "simple", "cloud", "field", "glass", "morning", "house", "bright", "pencil", "dream",
)


FORMATS = ("one_shot", "extractive", "counterfactual", "zero_shot")


def _check_task(task: str) -> TaskSpec:
    if not isinstance(task, str) or task not in TASKS:
        raise LensarithError(f"task={task!r} is unknown; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task]


@lru_cache(maxsize=None)
def _read_jsonl(filename: str) -> tuple[dict, ...]:
    path = data_dir() / "tasks" / filename
    if not path.is_file():
        raise LensarithError(f"task file {str(path)!r} is missing; is $LENSARITH_DATA pointing at lensarith's data folder?")
    with path.open(encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def load_pairs(task: str) -> list[dict]:
    """The raw rows of a task (dicts with ``argument``, ``answer`` and task-specific fields)."""
    spec = _check_task(task)
    rows: list[dict] = []
    for filename in spec.files:
        rows.extend(dict(r, source=filename.removesuffix(".jsonl")) for r in _read_jsonl(filename))
    return rows


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _color_demo(rows: Sequence[dict], exclude: dict) -> dict:
    for row in rows:
        if row["argument"] != exclude["argument"]:
            return row
    raise LensarithError("the colour dataset needs at least two colours for a demonstration")


def build_prompts(
    task: str,
    *,
    format: Format = "one_shot",
    n: int | None = None,
    seed: int = 0,
    shuffle: bool = False,
) -> list[Example]:
    """The paper's prompts for a task.

    Args:
        task: one of ``TASKS`` (capitals, us_capitals, region_capitals, uppercase,
            uppercase_words, past, past_regular, past_irregular, and the bench tasks).
        format: ``one_shot`` (the paper's format); ``extractive`` (the answer is in the
            context: capitals state the facts first, colours use a lowercase demo answer so
            the answer is the colour word in the question); ``counterfactual`` (capitals
            only: the context states a wrong capital, which becomes the expected answer);
            ``zero_shot`` (no demonstration).
        n: keep the first ``n`` examples (after shuffling).
        seed: seeds shuffling and counterfactual capitals.
        shuffle: shuffle the rows first.

    Returns:
        A list of ``Example``.

    Example:
        >>> build_prompts("capitals", n=1)[0].prompt.splitlines()[-2:]
        ['Q: What is the capital of Abkhazia?', 'A:']
    """
    spec = _check_task(task)
    check_choice(format, FORMATS, "format")
    check_int(n, "n", minimum=1, allow_none=True)
    check_int(seed, "seed")
    if not isinstance(shuffle, bool):
        raise LensarithError(f"shuffle must be True or False, got {shuffle!r}")
    rows = load_pairs(task)
    if format in ("extractive", "counterfactual") and task not in ("capitals", "us_capitals", "region_capitals", "uppercase"):
        raise LensarithError(f"format={format!r} is defined for capitals, us_capitals, region_capitals and uppercase, "
                             f"not task={task!r}")
    if format == "counterfactual" and task == "uppercase":
        raise LensarithError("format='counterfactual' is defined for capitals and us_capitals only")
    rng = random.Random(seed)
    if shuffle:
        rows = rows[:]
        rng.shuffle(rows)
    if n is not None:
        rows = rows[:n]
    all_answers = [r["answer"] for r in load_pairs(task)]
    examples = []
    for row in rows:
        arg, ans = row["argument"], row["answer"]
        if task == "uppercase":
            demo = _color_demo(load_pairs(task), row)
            demo_answer = demo["answer"] if format == "one_shot" else demo["argument"]
            answer = ans if format != "extractive" else arg
            query = spec.query.format(question=row["question"])
            shot = f"Q: {demo['question']}\nA: {demo_answer}\n"
            prompt = query if format == "zero_shot" else shot + query
            examples.append(Example(prompt, " " + answer, " " + arg, task, {"format": format, "object": row.get("object")}))
            continue
        d_arg, d_ans = spec.demo if spec.demo[0] != arg else spec.fallback_demo
        demo_text = spec.query.format(argument=d_arg) + f" {d_ans}" + (". " if spec.query.startswith("Today") else "\n")
        query = spec.query.format(argument=arg)
        answer = ans
        context = ""
        if format in ("extractive", "counterfactual"):
            if format == "counterfactual":
                answer = rng.choice([a for a in all_answers if a != ans])
            context = spec.fact.format(argument=d_arg, answer=d_ans) + " " + spec.fact.format(argument=arg, answer=answer) + "\n"
        prompt = query if format == "zero_shot" else context + demo_text + query
        examples.append(Example(prompt, " " + answer, " " + arg, task, {"format": format, "source": row["source"]}))
    return examples


def random_token_contexts(
    examples: Sequence[Example],
    *,
    n_words: int = 3,
    repeats: int = 3,
    seed: int = 0,
    words: Sequence[str] = FILLER_WORDS,
) -> list[Example]:
    """The paper's random-token contexts: ``w1 w2 w3 X w1 w2 w3 X w1 w2 w3`` -> `` X``.

    Args:
        examples: give the argument (X) and the answer a transplanted o-vector should
            produce; the new examples keep both, but the prompt no longer names the relation.
        n_words: random filler words per segment.
        repeats: how many times the segment with the argument appears.
        seed: seeds the choice of filler words.
        words: the filler vocabulary (keep it single-token under your tokenizer).

    Returns:
        One new ``Example`` per input example (task ``"random:<task>"``).
    """
    check_int(n_words, "n_words", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    check_int(seed, "seed")
    if isinstance(examples, (str, Example)) or not isinstance(examples, Sequence) or not examples \
            or not all(isinstance(e, Example) for e in examples):
        raise LensarithError("examples must be a non-empty list of lensarith.Example (e.g. build_prompts('capitals'))")
    if len(set(words)) < n_words + 1:
        raise LensarithError(f"need at least n_words + 1 = {n_words + 1} distinct filler words, got {len(set(words))}")
    rng = random.Random(seed)
    out = []
    for ex in examples:
        arg = ex.argument.strip()
        fill = [w for w in rng.sample(list(words), n_words + 1) if w != arg][:n_words]
        segment = " ".join(fill)
        prompt = " ".join([f"{segment} {arg}"] * repeats + [segment])
        out.append(Example(prompt, ex.answer, ex.argument, f"random:{ex.task}", {"filler": fill}))
    return out


def default_vocab(tasks: Sequence[str] | None = None) -> list[str]:
    """Every word of the prompt templates, filler words and the files of ``tasks`` (default
    ``PAPER_TASKS``: the bench tasks' words are not in it, so tiny models and the organism stay as
    they were)."""
    texts: list[str] = ["Q: A: What is the capital of the state of ? . , \n Today I Yesterday Capitalize word"]
    texts += list(FILLER_WORDS)
    for task in PAPER_TASKS if tasks is None else tasks:
        for row in load_pairs(task):
            texts.extend(str(v) for k, v in row.items() if k in ("argument", "answer", "question"))
            texts.append(row["argument"][:1].upper() + row["argument"][1:])
    seen: dict[str, None] = {}
    for text in texts:
        for tok in re.findall(WORD_PATTERN, text):
            seen.setdefault(tok, None)
    return list(seen)
