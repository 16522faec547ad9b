#!/usr/bin/env python3
"""Deterministically generate colors.jsonl and colors_scenes.jsonl.

Prompts follow the BIG-bench "reasoning about colored objects" format:
a short scene listing 2-4 coloured objects on a surface, followed by a
question about the colour of one of them. Standard library only; the
output depends only on the fixed seed below (random.Random(0)).

colors_scenes.jsonl holds the word lists (one row per list), which the
organism's corpus reads as data to write scenes of its own
(lensarith.organism.scenes); tests check both files equal this script's output.

Usage: python3 data/tasks/build_colors.py
"""
import json
import os
import random

SEED = 0
ROWS_PER_COLOR = 14  # 19 colours x 14 = 266 rows

COLORS = [
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
    "black", "grey", "white", "silver", "gold", "teal", "magenta", "mauve",
    "turquoise", "burgundy", "fuchsia",
]

OBJECTS = [
    "sheet of paper", "mug", "pen", "pencil", "notebook", "keychain",
    "stress ball", "fidget spinner", "booklet", "paperclip", "dog leash",
    "cat toy", "envelope", "jug", "pair of sunglasses", "crayon", "puzzle",
    "teddy bear", "plate", "cup", "textbook", "phone charger", "bracelet",
    "necklace", "hat", "scarf", "umbrella", "backpack", "water bottle",
    "candle", "wallet", "bowl",
]

SURFACES = [
    "floor", "table", "desk", "nightstand", "bed", "shelf", "counter",
    "dresser", "couch", "windowsill",
]

VERBS = ["I see", "you see", "there is"]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def describe(color, obj):
    return f"{article(color)} {color} {obj}"


def join(items):
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def make_row(rng, target_color):
    n = rng.randint(2, 4)
    surface = rng.choice(SURFACES)
    verb = rng.choice(VERBS)
    objects = rng.sample(OBJECTS, n)
    others = rng.sample([c for c in COLORS if c != target_color], n - 1)
    pos = rng.randrange(n)  # where the asked-about object sits in the list
    colors = others[:pos] + [target_color] + others[pos:]
    scene = join([describe(c, o) for c, o in zip(colors, objects)])
    target_obj = objects[pos]
    question = (f"On the {surface}, {verb} {scene}. "
                f"What color is the {target_obj}?")
    return {
        "question": question,
        "argument": target_color,
        "answer": target_color.capitalize(),
        "object": target_obj,
        "surface": surface,
    }


def build():
    rng = random.Random(SEED)
    rows, seen = [], set()
    for _ in range(ROWS_PER_COLOR):
        for color in COLORS:
            while True:
                row = make_row(rng, color)
                if row["question"] not in seen:
                    break
            seen.add(row["question"])
            rows.append(row)
    rows.sort(key=lambda r: (r["argument"], r["question"]))
    return rows


def scene_lists():
    """The word lists, one row per list, as colors_scenes.jsonl holds them."""
    return [{"list": "colors", "words": COLORS}, {"list": "objects", "words": OBJECTS},
            {"list": "surfaces", "words": SURFACES}, {"list": "verbs", "words": VERBS}]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {path}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    write_jsonl(os.path.join(here, "colors.jsonl"), build())
    write_jsonl(os.path.join(here, "colors_scenes.jsonl"), scene_lists())


if __name__ == "__main__":
    main()
