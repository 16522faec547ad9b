"""Task datasets, the paper's prompt formats, and tokenisation into padded batches.

Datasets are JSON Lines files in ``data/tasks/`` with ``argument`` and ``answer`` fields
(``colors.jsonl`` adds the scene ``question``). Prompts follow Merullo et al. 2023: one
demonstration, then the query; the model is scored on the first token of ``" " + answer``.

Batches are right-padded: every row keeps its real positions (0..length-1), so a batched
forward equals one-by-one forwards exactly, and per-row readout positions pick the last
real token.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from ._errors import LensarithError
from .models import data_dir

__all__ = [
    "Example",
    "Batch",
    "TASKS",
    "load_pairs",
    "build_prompts",
    "random_token_contexts",
    "tokenize",
    "as_batch",
    "default_vocab",
    "FILLER_WORDS",
]

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

FILLER_WORDS: tuple[str, ...] = (
    "table", "mug", "free", "window", "green", "paper", "run", "happy", "stone", "music", "light",
    "road", "cold", "book", "chair", "water", "fast", "open", "little", "garden", "door", "money",
    "sound", "simple", "cloud", "field", "glass", "morning", "house", "bright", "pencil", "dream",
)


def _check_task(task: str) -> TaskSpec:
    if task not in TASKS:
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
        task: one of ``TASKS`` (capitals, us_capitals, uppercase, uppercase_words, past,
            past_regular, past_irregular).
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
        ['Q: What is the capital of Afghanistan?', 'A:']
    """
    spec = _check_task(task)
    rows = load_pairs(task)
    if format in ("extractive", "counterfactual") and task not in ("capitals", "us_capitals", "uppercase"):
        raise LensarithError(f"format={format!r} is defined for capitals, us_capitals and uppercase, not task={task!r}")
    if format == "counterfactual" and task == "uppercase":
        raise LensarithError("format='counterfactual' is defined for capitals and us_capitals only")
    rng = random.Random(seed)
    if shuffle:
        rows = rows[:]
        rng.shuffle(rows)
    if n is not None:
        if n < 1:
            raise LensarithError(f"n must be a positive number of examples, got {n!r}")
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
    if len(words) < n_words:
        raise LensarithError(f"need at least n_words={n_words} filler words, got {len(words)}")
    rng = random.Random(seed)
    out = []
    for ex in examples:
        arg = ex.argument.strip()
        fill = [w for w in rng.sample(list(words), n_words + 1) if w != arg][:n_words]
        segment = " ".join(fill)
        prompt = " ".join([f"{segment} {arg}"] * repeats + [segment])
        out.append(Example(prompt, ex.answer, ex.argument, f"random:{ex.task}", {"filler": fill}))
    return out


def default_vocab() -> list[str]:
    """Every word of the bundled task files, prompt templates and filler words."""
    import re

    texts: list[str] = ["Q: A: What is the capital of the state of ? . , \n Today I Yesterday Capitalize word"]
    texts += list(FILLER_WORDS)
    for task in TASKS:
        for row in load_pairs(task):
            texts.extend(str(v) for k, v in row.items() if k in ("argument", "answer", "question"))
            texts.append(row["argument"][:1].upper() + row["argument"][1:])
    seen: dict[str, None] = {}
    for text in texts:
        for tok in re.findall(r"\n|[A-Za-z0-9\u00C0-\u024F'_-]+|[^\sA-Za-z0-9\u00C0-\u024F]", text):
            seen.setdefault(tok, None)
    return list(seen)


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids with per-row lengths and scored token ids.

    Attributes:
        tokens: ``[batch, pos]`` ids, padded on the right with the pad id.
        lengths: ``[batch]`` number of real tokens per row (BOS included).
        answer_ids: ``[batch]`` first token of each answer, or None.
        argument_ids: ``[batch]`` first token of each argument, or None.
        examples: the examples the rows came from (None for raw tokens).
        report: counts of multi-token answers/arguments and dropped rows.
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
            raise TypeError("Batch supports slicing only, e.g. batch[0:8]")
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

    def chunks(self, size: int) -> Iterator[Batch]:
        """Consecutive sub-batches of at most ``size`` rows, each trimmed to its own width."""
        if size < 1:
            raise LensarithError(f"batch_size must be >= 1, got {size!r}")
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
    model,
    examples: Sequence[Example | str],
    *,
    drop_multi_token: bool = False,
    prepend_bos: bool | None = None,
) -> Batch:
    """Tokenise examples into a right-padded ``Batch``.

    Args:
        model: a HookedTransformer with a tokenizer.
        examples: ``Example`` objects (answers and arguments are scored) or plain strings.
        drop_multi_token: drop examples whose answer or argument is more than one token
            (the paper scores the first token; the report says how many there are either way).
        prepend_bos: override the model's default BOS handling.

    Returns:
        A ``Batch``; ``batch.report`` counts multi-token and out-of-vocabulary items.

    Raises:
        LensarithError: empty input, an answer or argument that is out of the vocabulary
            (word-level tokenizers), or a prompt longer than the model's context.
    """
    if model.tokenizer is None:
        raise LensarithError("the model has no tokenizer; pass token ids (a tensor) instead of strings")
    if len(examples) == 0:
        raise LensarithError("examples is empty: give at least one prompt")
    exs = [Example(e, "", "") if isinstance(e, str) else e for e in examples]
    unk = model.tokenizer.unk_token_id
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    report: dict = {"n_input": len(exs), "multi_token_answer": [], "multi_token_argument": [], "unknown": [], "dropped": []}
    rows, answers, arguments, kept = [], [], [], []
    for i, ex in enumerate(exs):
        ids = model.to_tokens(ex.prompt, prepend_bos=bos)[0]
        ans = _token_ids(model, ex.answer) if ex.answer else []
        arg = _token_ids(model, ex.argument) if ex.argument else []
        bad = [w for w, t in ((ex.answer, ans), (ex.argument, arg)) if t and unk is not None and unk in t
               and model.tokenizer.unk_token not in w]
        if bad:
            report["unknown"].append((i, bad))
            if drop_multi_token:
                report["dropped"].append(i)
                continue
            raise LensarithError(
                f"example {i} ({ex.prompt[-40:]!r}): {bad} not in the model's vocabulary; "
                "pass drop_multi_token=True to drop such examples"
            )
        multi = False
        if len(ans) > 1:
            report["multi_token_answer"].append(i)
            multi = True
        if len(arg) > 1:
            report["multi_token_argument"].append(i)
            multi = True
        if multi and drop_multi_token:
            report["dropped"].append(i)
            continue
        if len(ids) > model.cfg.n_ctx:
            raise LensarithError(f"example {i} has {len(ids)} tokens, more than the model's n_ctx={model.cfg.n_ctx}")
        rows.append(ids)
        answers.append(ans[0] if ans else -1)
        arguments.append(arg[0] if arg else -1)
        kept.append(ex)
    if not rows:
        raise LensarithError(f"no examples left after dropping {len(report['dropped'])} multi-token or unknown ones")
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


def as_batch(model, inputs) -> Batch:
    """Coerce prompts (str, list of str or Example), token ids, or a Batch into a Batch."""
    if isinstance(inputs, Batch):
        return inputs
    if isinstance(inputs, str):
        return tokenize(model, [inputs])
    if isinstance(inputs, Tensor):
        if inputs.dtype not in (torch.int64, torch.int32) or inputs.ndim not in (1, 2):
            raise LensarithError(f"token ids must be an integer tensor [batch, pos] or [pos], got dtype {inputs.dtype} shape {tuple(inputs.shape)}")
        tokens = inputs if inputs.ndim == 2 else inputs[None]
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise LensarithError(f"token ids are empty: shape {tuple(tokens.shape)}")
        if int(tokens.max()) >= model.cfg.d_vocab or int(tokens.min()) < 0:
            raise LensarithError(f"token ids must lie in 0..{model.cfg.d_vocab - 1}, got {int(tokens.min())}..{int(tokens.max())}")
        return Batch(tokens.long(), torch.full((tokens.shape[0],), tokens.shape[1]))
    if isinstance(inputs, Sequence):
        if len(inputs) == 0:
            raise LensarithError("prompts is empty: give at least one prompt")
        if not all(isinstance(x, (str, Example)) for x in inputs):
            raise LensarithError("prompts must be strings or lensarith.Example objects")
        return tokenize(model, list(inputs))
    raise LensarithError(f"prompts must be a string, a list of strings or Examples, token ids or a Batch; got {type(inputs).__name__}")


def token_ids(model, tokens: Sequence[str | int] | Tensor | str | int, *, name: str = "tokens") -> Int[Tensor, " n"]:
    """Single-token ids for strings (first token of each) or ids; raises on out-of-vocabulary."""
    if isinstance(tokens, (str, int)):
        tokens = [tokens]
    if isinstance(tokens, Tensor):
        ids = tokens.long().flatten()
    else:
        out = []
        for t in tokens:
            if isinstance(t, str):
                got = _token_ids(model, t)
                unk = model.tokenizer.unk_token_id if model.tokenizer is not None else None
                if not got or (unk is not None and unk in got):
                    raise LensarithError(f"{name}: {t!r} is not in the model's vocabulary")
                out.append(got[0])
            else:
                out.append(int(t))
        ids = torch.tensor(out, dtype=torch.long)
    if len(ids) and (int(ids.max()) >= model.cfg.d_vocab or int(ids.min()) < 0):
        raise LensarithError(f"{name}: token ids must lie in 0..{model.cfg.d_vocab - 1}, got {ids.tolist()[:8]}")
    return ids
