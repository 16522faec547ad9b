"""The ``lensarith`` command line.

User mistakes print one line (``lensarith: error: ...``) and exit 2; results go to
``--out`` as JSON + safetensors, written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _model(name: str):
    import lensarith as la

    if name == "tiny":
        return la.tiny_model(n_layers=4, d_model=64)
    return la.load_model(name)


def cmd_lens(args: argparse.Namespace) -> int:
    import lensarith as la
    from lensarith.result import atomic_write_text

    model = _model(args.model)
    examples = la.build_prompts(args.task, n=args.n)
    batch = la.tokenize(model, examples, drop_multi_token=True)
    lens = la.logit_lens(model, batch, stream=args.stream, progress=True)
    answer_rr = lens.reciprocal_rank("answer").mean(-1)
    argument_rr = lens.reciprocal_rank("argument").mean(-1)
    answer_top1, argument_top1 = lens.accuracy("answer"), lens.accuracy("argument")
    _, top = lens.top_tokens(1)
    out = Path(args.out)
    lens.save(out / f"lens-{args.task}")
    rows = [{"layer": name, "answer_mrr": float(a), "argument_mrr": float(g), "answer_top1": float(t),
             "argument_top1": float(u), "first_example_top1": top[i][0][0]}
            for i, (name, a, g, t, u) in enumerate(zip(lens.layers, answer_rr, argument_rr, answer_top1, argument_top1))]
    atomic_write_text(out / f"lens-{args.task}.json", json.dumps({"task": args.task, "n": len(batch),
                                                                  "report": batch.report, "layers": rows}, indent=1))
    print(f"logit lens on {args.model}, task {args.task}, {len(batch)} prompts (first: {examples[0].prompt!r})")
    print(f"{'layer':>8} {'answer MRR':>11} {'arg MRR':>8} {'ans top1':>9} {'arg top1':>9}  top-1 token (first prompt)")
    for r in rows:
        print(f"{r['layer']:>8} {r['answer_mrr']:11.3f} {r['argument_mrr']:8.3f} {r['answer_top1']:9.2f} "
              f"{r['argument_top1']:9.2f}  {r['first_example_top1']!r}")
    print(f"wrote {out / f'lens-{args.task}'} and {out / f'lens-{args.task}.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensarith", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lens", help="logit lens over a task's prompts")
    p.add_argument("--model", default="organism", help="'organism', 'tiny', a hub name or a local directory")
    p.add_argument("--task", default="capitals")
    p.add_argument("--n", type=int, default=64, help="number of prompts")
    p.add_argument("--stream", default="resid_post", choices=["resid_pre", "resid_mid", "resid_post", "all"])
    p.add_argument("--out", default="out")
    p.set_defaults(func=cmd_lens)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lensarith._errors import LensarithError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LensarithError as exc:
        print(f"lensarith: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lensarith: interrupted; no partial outputs were left", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
