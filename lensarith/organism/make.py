"""Make an organism: train it from a preset (or re-measure a trained one) and write its card.

``make_organism`` is the one entry point: ``lensarith organism-train`` calls it, and so does
``python -m lensarith.organism.train`` (``main`` below, whose defaults write into ``data/``:
``--out data/organism``, or ``data/organism-planted`` with ``--planted``). A preset with a planted
mechanism (``TrainConfig.planted``) gets the planted model's card (``write_planted_card``), every
other preset the organism's (``write_card``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

from . import train as _train
from .config import PRESETS, TrainConfig

__all__ = ["make_organism", "main"]


def make_organism(config: TrainConfig, out: str | os.PathLike[str], *, run_dir: str | os.PathLike[str] | None = None,
                  card: bool = True, eval_n: int | None = None, notes: str | os.PathLike[str] | None = None,
                  eval_only: bool = False, card_only: bool = False, log: Callable[[str], None] = print,
                  progress: bool | None = None):
    """Train ``config`` into the model folder ``out`` (or load it from there) and write its card.

    Args:
        config: the run (``PRESETS[name]``, possibly with another ``n_tokens``).
        out: the model folder (``save_model`` replaces it as a whole).
        run_dir: checkpoints and ``log.jsonl``; a matching checkpoint there is resumed.
        card: evaluate the model and write ``table.json`` and ``card.md`` into ``out``.
        eval_n: prompts per task for the card (None: the card's default).
        notes: a Markdown file for the card's notes section (default: ``out/attempts.md``, kept
            across the retraining that replaces the folder).
        eval_only: load the model in ``out`` instead of training it, then rewrite the card.
        card_only: as ``eval_only``, with the measurements read from ``out/table.json``.
        log, progress: as for ``lensarith.organism.train.train``.

    Returns:
        The model (trained, or loaded from ``out``).
    """
    out_dir = Path(out)
    notes_path = Path(notes) if notes else out_dir / "attempts.md"
    notes_text = notes_path.read_text() if notes_path.is_file() else None
    if eval_only or card_only:
        from ..models import load_model

        model = load_model(out, device="cpu")
        meta = json.loads((out_dir / "lensarith.json").read_text())
    else:
        model = _train.train(config, out, checkpoint_dir=run_dir, log=log, progress=progress)
        meta = model.lensarith_meta
    if notes_text is not None:
        (out_dir / "attempts.md").write_text(notes_text)  # save_model replaced the folder
    if not card:
        return model
    table = json.loads((out_dir / "table.json").read_text()) if card_only else None
    from .card import write_card, write_planted_card

    if config.planted is not None:
        write_planted_card(model, out_dir, meta, table=table, notes=notes_text, **({} if eval_n is None else {"n": eval_n}))
    else:
        write_card(model, out_dir, meta, notes=notes_text, table=table, n=eval_n)
    return model


def main(argv: list[str] | None = None) -> None:
    """``python -m lensarith.organism.train``: train into ``data/`` (the bundled models) and write the card."""
    parser = argparse.ArgumentParser(description="Train the lensarith organism, evaluate it and write its card.")
    parser.add_argument("--out", default=None, help="output model directory (default data/organism, "
                                                     "data/organism-planted with --planted)")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default full (planted with --planted)")
    parser.add_argument("--planted", action="store_true",
                        help="the planted organism: preset planted, out data/organism-planted, its own card")
    parser.add_argument("--n-tokens", type=int, default=None, help="override the preset's token count")
    parser.add_argument("--run-dir", default=None, help="checkpoints and logs (default runs/organism-<preset>)")
    parser.add_argument("--notes", default=None,
                        help="markdown for the card's 'What we tried' (default: the out folder's attempts.md, kept)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the model in --out and rewrite its card")
    parser.add_argument("--card-only", action="store_true", help="rewrite the card from the table.json in --out")
    args = parser.parse_args(argv)
    preset = args.preset or ("planted" if args.planted else "full")
    config = PRESETS[preset]
    if args.n_tokens:
        config = dataclasses.replace(config, n_tokens=args.n_tokens)
    make_organism(config, args.out or ("data/organism-planted" if args.planted else "data/organism"),
                  run_dir=args.run_dir or f"runs/organism-{preset}", notes=args.notes, eval_only=args.eval_only,
                  card_only=args.card_only, log=lambda s: print(s, flush=True), progress=False)
