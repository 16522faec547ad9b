"""The organism's synthetic corpus: a seeded, endless stream of short documents.

Document kinds (``CorpusMix`` sets their shares):

- ``copy``: repeated random-token sequences, half uniform over the vocabulary, half filler
  words plus one argument in the paper's random-token format (``w1 w2 w3 X w1 w2 w3 X ...``);
- ``demos``: bare demonstrations, the relation named only by them (``France : Paris\\nPoland : Warsaw``);
- ``qa``: the paper's one-shot formats and their siblings for the other relations
  (``Q: What is the capital of X?\\nA: Y``, ``Today I X. Yesterday I Y``, colour scenes), 1-4 items,
  some episodes mixing relations;
- ``cue``: the relation named after the argument (``Poland , capital : Warsaw``);
- ``prose``: facts in sentences (the only place held-out facts appear);
- ``extractive``: ``The capital of X is Y.`` notes followed by Q/A about them, half of the
  queried notes counterfactual, some with nonsense arguments; colour Q/A with lowercase answers;
- ``recall``: associative recall the model's memory cannot answer: key-value lists with random
  values (``mug : Lima , pen : red . pen : red``; optionally value first, ``red pen``), capital notes that contradict memory or have
  nonsense arguments, and several questions about one colour scene (off by default; the
  shipped model's late phase uses it);
- ``bind``: colour scenes in the task's format with every object asked about, a share of them
  simple (two or three objects with one-word names), to teach attribute binding: the colour
  comes before its object, so a colour's position cannot see which object it belongs to (off by default);
- ``objects``: the scenes' objects and colours in roles that need their identity (off by default):
  ``Repeat the word mug`` / ``Capitalize the word mug``, capital notes about objects, key-first lists
  (``mug : red , pen : blue .`` then ``pen : blue``) and scenes written object first
  (``a mug that is red and a pen that is blue``).

Every document starts with ``<bos>``; ``Corpus.rows`` packs documents into training rows.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from ..models import SPECIAL_TOKENS
from ..tasks import FILLER_WORDS, TASKS
from .scenes import colour_scenes, one_word_objects
from .vocab import WORD_PATTERN, held_out, relations, vocabulary

__all__ = ["CorpusMix", "Corpus", "QA_TEMPLATES", "CUES"]

QA_TEMPLATES = {
    "capital": "Q: What is the capital of {a}?\nA: {b}",
    "continent": "Q: What is the continent of {a}?\nA: {b}",
    "country_same": "Q: What is the name of {a}?\nA: {b}",
    "state_capital": "Q: What is the capital of the state of {a}?\nA: {b}",
    "state_same": "Q: What is the name of the state of {a}?\nA: {b}",
    "upper": "Q: Capitalize the word {a}.\nA: {b}",
    "plural": "Q: What is the plural of the word {a}?\nA: {b}",
    "word_same": "Q: Repeat the word {a}.\nA: {b}",
    "past": "Today I {a}. Yesterday I {b}",
    "ing": "Today I {a}. Now I am {b}",
    "verb_same": "Today I {a}. Tomorrow I will {b}",
}
PROSE_TEMPLATES = {
    "capital": ("{b} is the capital of {a}.", "The capital of {a} is {b}.", "{a} has its capital in {b}."),
    "continent": ("{a} lies in {b}.", "{a} is on the continent of {b}."),
    "state_capital": ("{b} is the capital city of {a}.", "The capital of {a} is {b}."),
    "upper": ("The word {a} is written {b} at the start of a sentence.", "Write {a} with a capital letter : {b}."),
    "plural": ("One {a} , two {b}.", "The plural of {a} is {b}."),
    "past": ("The past tense of {a} is {b}.", "We {a} today. We {b} yesterday."),
    "ing": ("The -ing form of {a} is {b}.", "I am {b} now."),
}
CUES = {name: rel.cue for name, rel in relations().items()}
# relation weights within demos / qa / cue documents
REL_WEIGHTS = {"capital": 14, "continent": 7, "country_same": 5, "state_capital": 5, "state_same": 2, "upper": 11,
               "plural": 7, "word_same": 5, "past": 16, "ing": 10, "verb_same": 5}


# mean document length in tokens (with <bos>), to turn token shares into document weights
_AVG_LEN = {"copy": 19.0, "demos": 15.8, "qa": 40.2, "cue": 22.7, "prose": 29.4, "extractive": 58.1, "recall": 45.0,
            "bind": 72.6, "objects": 43.5}
# "=" is outside the vocabulary: it encodes to <unk>, which then acts as a separator (kept: the
# shipped model was trained on this stream)
_KV_SEPS = ("", " :", " is", " =")


@dataclass(frozen=True)
class CorpusMix:
    """Token shares of document kinds (normalised), and the curriculum's early copy share."""

    copy: float = 0.20
    demos: float = 0.22
    qa: float = 0.25
    cue: float = 0.13
    prose: float = 0.12
    extractive: float = 0.08
    early_copy: float = 0.55  # copy share during the first ``early_tokens`` tokens
    colour_share: float = 0.2  # of qa documents, colour scenes
    counterfactual: float = 0.5  # of extractive notes that are queried
    recall: float = 0.0
    recall_kv: float = 0.3  # of recall documents, key-value lists
    recall_notes: float = 0.4  # of recall documents, capital notes (the rest: colour scenes)
    recall_reverse: float = 0.0  # of key-value lists, written value first (``red mug , blue pen``)
    bind: float = 0.0
    bind_simple: float = 0.5  # of bind documents, scenes of 2-3 objects with one-word names
    objects: float = 0.0

    def weights(self, early: bool) -> dict[str, float]:
        rest = {"demos": self.demos, "qa": self.qa, "cue": self.cue, "prose": self.prose, "extractive": self.extractive}
        # absent at 0 so that mixes without them draw the same stream as before they existed
        for kind in ("recall", "bind", "objects"):
            if getattr(self, kind):
                rest[kind] = getattr(self, kind)
        copy = self.early_copy if early else self.copy
        total = sum(rest.values())
        tokens = {"copy": copy, **{k: (1 - copy) * v / total for k, v in rest.items()}}
        return {k: v / _AVG_LEN[k] for k, v in tokens.items()}  # document probabilities


class Corpus:
    """A seeded document generator over the organism's vocabulary.

    Args:
        seed: the random seed; the same seed gives the same stream.
        mix: document shares.
    """

    def __init__(self, seed: int = 0, mix: CorpusMix = CorpusMix()):
        self.rng = random.Random(seed)
        self.mix = mix
        self.vocab = vocabulary()
        self.ids = {w: i for i, w in enumerate(list(SPECIAL_TOKENS.values()) + list(self.vocab))}
        self.bos = self.ids[SPECIAL_TOKENS["bos_token"]]
        self.n_special = len(SPECIAL_TOKENS)
        rels = relations()
        hold = held_out()
        self.rels = rels
        self.family_of = {n: r.family for n, r in rels.items()}
        # pairs usable in Q/A formats (held-out arguments removed) and in prose (all)
        self.qa_pairs = {n: [p for p in r.pairs if p[0] not in hold[r.family]] for n, r in rels.items()}
        self.all_pairs = {n: list(r.pairs) for n, r in rels.items()}
        self.arguments = sorted({a for r in rels.values() for a, _ in r.pairs})
        self.colours = colour_scenes()
        self._rel_names = list(REL_WEIGHTS)
        self._rel_w = [REL_WEIGHTS[n] for n in self._rel_names]
        self._one_word_objects = one_word_objects()
        self._cities = sorted({b for n in ("capital", "state_capital") for _, b in rels[n].pairs})
        self._task_demos = {"capital": TASKS["capitals"].demo, "state_capital": TASKS["us_capitals"].demo,
                            "upper": TASKS["uppercase_words"].demo, "past": TASKS["past"].demo}

    # ------------------------------------------------------------------ helpers

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (the same split as ``lensarith.models.word_tokenizer``)."""
        unk = self.ids[SPECIAL_TOKENS["unk_token"]]
        return [self.ids.get(t, unk) for t in re.findall(WORD_PATTERN, text)]

    def _rel(self) -> str:
        return self.rng.choices(self._rel_names, self._rel_w)[0]

    def _same_family(self, name: str) -> list[str]:
        fam = self.family_of[name]
        return [n for n in self._rel_names if self.family_of[n] == fam]

    def _pairs(self, name: str, k: int) -> list[tuple[str, str]]:
        pool = self.qa_pairs[name]
        return self.rng.sample(pool, k)

    # ------------------------------------------------------------------ documents

    def doc_copy(self) -> list[int]:
        rng = self.rng
        if rng.random() < 0.5:
            seg = [rng.randrange(self.n_special, len(self.ids)) for _ in range(rng.randint(2, 8))]
            out = seg * rng.randint(2, 4)
            return out + seg[: rng.randint(0, len(seg))]
        words = list(FILLER_WORDS) if rng.random() < 0.7 else list(self.vocab[:600])
        fill = rng.sample(words, rng.randint(2, 5))
        x = rng.choice(self.arguments)
        seg = fill + [x] if rng.random() < 0.7 else fill[:1] + [x] + fill[1:]
        text = " ".join(seg * rng.randint(2, 4) + seg)
        return self.encode(text)

    def doc_demos(self) -> list[int]:
        name = self._rel()
        pairs = self._pairs(name, self.rng.randint(2, 5))
        return self.encode("\n".join(f"{a} : {b}" for a, b in pairs) + "\n")

    def doc_qa(self) -> list[int]:
        rng = self.rng
        if rng.random() < self.mix.colour_share:
            return self.doc_colours(lower=False)
        k = rng.choices([1, 2, 3, 4], [1, 4, 3, 2])[0]
        name = self._rel()
        mixed = rng.random() < 0.3
        names = [rng.choice(self._same_family(name)) if rng.random() < 0.5 else self._rel() for _ in range(k)] if mixed else [name] * k
        lines = []
        for i, n in enumerate(names):
            a, b = self._pairs(n, 1)[0]
            if i == 0 and k > 1 and not mixed and n in self._task_demos and rng.random() < 0.3:
                a, b = self._task_demos[n]
            lines.append(QA_TEMPLATES[n].format(a=a, b=b))
        # the paper's verb format runs on one line: "Today I x. Yesterday I y. Today I z. Yesterday I"
        seps = [". " if n in ("past", "ing", "verb_same") else "\n" for n in names]
        return self.encode("".join(line + sep for line, sep in zip(lines, seps)).rstrip() + "\n")

    def doc_colours(self, lower: bool) -> list[int]:
        rng = self.rng
        lines = []
        for _ in range(rng.choices([1, 2, 3], [1, 4, 2])[0]):
            row = self.colours.make_row(rng, rng.choice(self.colours.COLORS))
            ans = row["argument"] if lower else row["answer"]
            lines.append(f"Q: {row['question']}\nA: {ans}")
        return self.encode("\n".join(lines) + "\n")

    def doc_cue(self) -> list[int]:
        rng = self.rng
        name = self._rel()
        fam = self._same_family(name)
        lines = []
        for _ in range(rng.randint(2, 5)):
            n = rng.choice(fam) if rng.random() < 0.7 else self._rel()
            a, b = self._pairs(n, 1)[0]
            lines.append(f"{a} , {CUES[n]} : {b}")
        return self.encode("\n".join(lines) + "\n")

    def doc_prose(self) -> list[int]:
        rng = self.rng
        names = [n for n in PROSE_TEMPLATES]
        sents = []
        for _ in range(rng.randint(2, 5)):
            n = rng.choice(names)
            a, b = rng.choice(self.all_pairs[n])
            sents.append(rng.choice(PROSE_TEMPLATES[n]).format(a=a, b=b))
        return self.encode(" ".join(sents) + "\n")

    def doc_extractive(self) -> list[int]:
        rng = self.rng
        u = rng.random()
        if u < 0.2:
            return self.doc_colours(lower=True)
        state = u < 0.35
        rel = "state_capital" if state else "capital"
        k = rng.randint(2, 3)
        if rng.random() < 0.2:  # nonsense arguments: the answer can only come from the context
            args = rng.sample([a for a, _ in self.qa_pairs["upper"] + self.qa_pairs["past"]], k)
            pairs = [(a, rng.choice(self.all_pairs[rel])[1]) for a in args]
        else:
            pairs = self._pairs(rel, k)
            pairs = [(a, rng.choice(self.all_pairs[rel])[1]) if rng.random() < self.mix.counterfactual else (a, b)
                     for a, b in pairs]
        facts = " ".join(f"The capital of {a} is {b}." for a, b in pairs)
        order = rng.sample(range(k), k)[: rng.randint(2, k)]
        qa = "\n".join(QA_TEMPLATES[rel].format(a=pairs[i][0], b=pairs[i][1]) for i in order)
        return self.encode(facts + "\n" + qa + "\n")

    def doc_recall(self) -> list[int]:
        rng = self.rng
        u = rng.random()
        if u < self.mix.recall_kv:
            return self._recall_kv()
        if u < self.mix.recall_kv + self.mix.recall_notes:
            return self._recall_notes()
        return self._recall_scene()

    def _recall_kv(self) -> list[int]:
        """Key-value list with random values, then some keys again: only the list can answer."""
        rng = self.rng
        sep = rng.choice(_KV_SEPS)
        keys = rng.sample(self.arguments if rng.random() < 0.5 else self.colours.OBJECTS, rng.randint(2, 6))
        pool = rng.choice((self.colours.COLORS, self._cities, self.vocab[:600]))
        vals = [rng.choice(pool) for _ in keys]
        pairs = [f"{k}{sep} {v}" for k, v in zip(keys, vals)]
        order = rng.sample(range(len(keys)), rng.randint(1, len(keys)))
        # value first, as adjectives in a scene (``red mug , blue pen .`` then ``pen : blue``)
        reverse = self.mix.recall_reverse and rng.random() < self.mix.recall_reverse
        listed = [f"{v} {k}" for k, v in zip(keys, vals)] if reverse else pairs
        return self.encode(" , ".join(listed) + " .\n" + " .\n".join(pairs[i] for i in order) + " .\n")

    def _recall_notes(self) -> list[int]:
        """Capital notes that mostly contradict memory (or have nonsense arguments), then Q/A."""
        rng = self.rng
        rel = "state_capital" if rng.random() < 0.2 else "capital"
        k = rng.randint(2, 4)
        if rng.random() < 0.25:
            args = rng.sample([a for a, _ in self.qa_pairs["upper"] + self.qa_pairs["past"]], k)
        else:
            args = [a for a, _ in self._pairs(rel, k)]
        truth = dict(self.all_pairs[rel])
        pairs = [(a, truth[a]) if a in truth and rng.random() < 0.15 else (a, rng.choice(self._cities)) for a in args]
        facts = " ".join(f"The capital of {a} is {b}." for a, b in pairs)
        order = rng.sample(range(k), rng.randint(2, k))
        template = QA_TEMPLATES["capital"] if rel == "capital" or rng.random() < 0.5 else QA_TEMPLATES[rel]
        qa = "\n".join(template.format(a=pairs[i][0], b=pairs[i][1]) for i in order)
        return self.encode(facts + "\n" + qa + "\n")

    def _recall_scene(self) -> list[int]:
        """One colour scene, then questions about several of its objects."""
        rng = self.rng
        row = self.colours.make_row(rng, rng.choice(self.colours.COLORS))
        scene = row["question"].rsplit(". ", 1)[0] + "."
        pairs = re.findall(r"an? (\w+) ([a-z ]+?)(?:,| and|$)", scene.split(", ", 1)[1].rstrip("."))
        lower = rng.random() < 0.3
        qs = [f"What color is the {obj.strip()}?\nA: {col if lower else col.capitalize()}"
              for col, obj in rng.sample(pairs, rng.randint(1, len(pairs)))]
        return self.encode(f"Q: {scene} " + "\nQ: ".join(qs) + "\n")

    def doc_bind(self) -> list[int]:
        """One or two colour scenes, each followed by a question about every object in it."""
        rng = self.rng
        cm = self.colours
        parts = []
        for _ in range(rng.choices([1, 2], [2, 1])[0]):
            simple = rng.random() < self.mix.bind_simple
            n = rng.randint(2, 3) if simple else rng.randint(2, 4)
            objects = rng.sample(self._one_word_objects if simple else cm.OBJECTS, n)
            colours = rng.sample(cm.COLORS, n)
            scene = cm.join([cm.describe(c, o) for c, o in zip(colours, objects)])
            lower = rng.random() < 0.3
            qs = [f"What color is the {objects[i]}?\nA: {colours[i] if lower else colours[i].capitalize()}"
                  for i in rng.sample(range(n), n)]
            parts.append(f"Q: On the {rng.choice(cm.SURFACES)}, {rng.choice(cm.VERBS)} {scene}. " + "\nQ: ".join(qs))
        return self.encode("\n".join(parts) + "\n")

    def doc_objects(self) -> list[int]:
        """Scene objects and colours where their identity matters (four sub-kinds, equally likely)."""
        rng = self.rng
        cm = self.colours
        kind = rng.randrange(4)
        k = rng.randint(2, 4)
        # Kept as the shipped model was trained on them: most capitalised object words are outside the
        # vocabulary (``Capitalize the word cup`` is answered ``<unk>``), and the object-first scenes use
        # "a" before vowels too (``a envelope that is brown``).
        if kind == 0:  # repeat or capitalise an object or colour word
            words = rng.sample(self._one_word_objects + cm.COLORS, k)
            names = [rng.choice(("word_same", "upper")) for _ in words]
            text = "\n".join(QA_TEMPLATES[n].format(a=w, b=w.capitalize() if n == "upper" else w)
                             for n, w in zip(names, words))
        elif kind == 1:  # capital notes with objects as (nonsense) arguments
            pairs = [(o, rng.choice(self._cities)) for o in rng.sample(self._one_word_objects, k)]
            facts = " ".join(f"The capital of {a} is {b}." for a, b in pairs)
            text = facts + "\n" + "\n".join(QA_TEMPLATES["capital"].format(a=pairs[i][0], b=pairs[i][1])
                                             for i in rng.sample(range(k), rng.randint(2, k)))
        elif kind == 2:  # key-first list of object colours
            pairs = [f"{o} : {c}" for o, c in zip(rng.sample(cm.OBJECTS, k), rng.sample(cm.COLORS, k))]
            text = " , ".join(pairs) + " .\n" + " .\n".join(rng.sample(pairs, rng.randint(1, k))) + " ."
        else:  # a scene written object first
            objects, colours = rng.sample(cm.OBJECTS, k), rng.sample(cm.COLORS, k)
            scene = cm.join([f"a {o} that is {c}" for o, c in zip(objects, colours)])
            qs = [f"What color is the {objects[i]}?\nA: {colours[i].capitalize()}"
                  for i in rng.sample(range(k), rng.randint(1, k))]
            text = f"Q: On the {rng.choice(cm.SURFACES)}, I see {scene}. " + "\nQ: ".join(qs)
        return self.encode(text + "\n")

    # ------------------------------------------------------------------ streams

    def document(self, early: bool = False) -> tuple[str, list[int]]:
        """One document (kind, token ids without BOS)."""
        w = self.mix.weights(early)
        kind = self.rng.choices(list(w), list(w.values()))[0]
        return kind, getattr(self, f"doc_{kind}")()

    def rows(self, n_rows: int, n_ctx: int, *, early: bool = False) -> torch.Tensor:
        """``[n_rows, n_ctx + 1]`` ids: ``<bos>``-prefixed documents packed into rows (the last
        document of a row is cut). Targets are ``row[1:]``; mask targets equal to ``<bos>``."""
        out = torch.empty((n_rows, n_ctx + 1), dtype=torch.long)
        for r in range(n_rows):
            row: list[int] = []
            while len(row) < n_ctx + 1:
                row += [self.bos] + self.document(early)[1]
            out[r] = torch.tensor(row[: n_ctx + 1])
        return out

    def sample_text(self, n_docs: int = 10, early: bool = False, kind: str | None = None) -> list[str]:
        """Decoded documents (of one ``kind``, or drawn from the mix), for the card and for eyeballing."""
        inv = {i: w for w, i in self.ids.items()}
        docs = ((kind, getattr(self, f"doc_{kind}")()) if kind else self.document(early) for _ in range(n_docs))
        return [f"[{k}] " + " ".join(inv[i] for i in ids) for k, ids in docs]
