"""Colour scenes: the colour task's word lists (``data/tasks/colors_scenes.jsonl``) and its scene writer.

The corpus and the binding diagnostics write scenes like the colour task's prompts ("On the desk,
I see a red mug and a blue pen. What color is the pen?"). The word lists are data, written by
``data/tasks/build_colors.py`` next to ``colors.jsonl``; ``make_row`` draws a scene as that script
does, call for call (a test keeps the two, and the committed data, equal to the script's).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache

from .._errors import LensarithError
from .._paths import data_dir

__all__ = ["ColourScenes", "colour_scenes", "one_word_objects"]

#: the data file of the word lists, under data/tasks
SCENES_FILE = "colors_scenes.jsonl"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(color: str, obj: str) -> str:
    """``a red mug``."""
    return f"{article(color)} {color} {obj}"


def join(items: list[str]) -> str:
    """``x and y``, ``x, y, and z``."""
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


@dataclass(frozen=True, eq=False)
class ColourScenes:
    """The colour task's word lists (as lists: the corpus draws from them with ``random.Random``)."""

    COLORS: list[str]
    OBJECTS: list[str]
    SURFACES: list[str]
    VERBS: list[str]

    describe = staticmethod(describe)
    join = staticmethod(join)

    def make_row(self, rng: random.Random, target_color: str) -> dict:
        """One colour-task row about an object of ``target_color`` (the generator's draws, in its order)."""
        n = rng.randint(2, 4)
        surface = rng.choice(self.SURFACES)
        verb = rng.choice(self.VERBS)
        objects = rng.sample(self.OBJECTS, n)
        others = rng.sample([c for c in self.COLORS if c != target_color], n - 1)
        pos = rng.randrange(n)  # where the asked-about object sits in the list
        colors = others[:pos] + [target_color] + others[pos:]
        scene = join([describe(c, o) for c, o in zip(colors, objects)])
        target_obj = objects[pos]
        question = f"On the {surface}, {verb} {scene}. What color is the {target_obj}?"
        return {"question": question, "argument": target_color, "answer": target_color.capitalize(),
                "object": target_obj, "surface": surface}


@lru_cache(maxsize=None)
def colour_scenes() -> ColourScenes:
    """The word lists, read once from ``data/tasks/colors_scenes.jsonl`` (one row per list)."""
    path = data_dir() / "tasks" / SCENES_FILE
    if not path.is_file():
        raise LensarithError(f"colour-scene data {str(path)!r} is missing; is $LENSARITH_DATA pointing at lensarith's "
                             "data folder? (python3 data/tasks/build_colors.py writes it)")
    with path.open(encoding="utf-8") as fh:
        lists = {row["list"]: list(row["words"]) for row in map(json.loads, filter(str.strip, fh))}
    return ColourScenes(COLORS=lists["colors"], OBJECTS=lists["objects"], SURFACES=lists["surfaces"], VERBS=lists["verbs"])


def one_word_objects() -> list[str]:
    """The colour task's objects whose names are one word (``mug``, not ``stress ball``)."""
    return [o for o in colour_scenes().OBJECTS if " " not in o]
