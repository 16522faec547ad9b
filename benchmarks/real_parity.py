"""Parity of the real models (gemma-3-270m, smollm2-135m) with the Hugging Face model built from the same
cache: max |log-prob difference| over a few one-shot prompts, argmax agreement, and the logit lens's answer
ranks against Hugging Face's own hidden states (identical, and identical up to logits within --tol).

    python benchmarks/real_parity.py [--n 16] [--tol 1e-4] [--backend transformer_lens|nnsight]

Prints one line per model; exits 1 if log-probs differ by more than 1e-4 or a rank differs beyond near-ties.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lensarith as la  # noqa: E402
from lensarith.models import REAL_MODELS, ensure_converted  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--backend", choices=("transformer_lens", "nnsight"), default="transformer_lens")
    ap.add_argument("--models", default=",".join(REAL_MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    bad = False
    for name in args.models.split(","):
        start = time.perf_counter()
        model = la.load_model(name, backend=None if args.backend == "transformer_lens" else "nnsight")
        load_s = time.perf_counter() - start
        hf = AutoModelForCausalLM.from_pretrained(str(ensure_converted(REAL_MODELS[name])), dtype=torch.float32,
                                                  attn_implementation="eager").eval()
        prompts = la.build_prompts("capitals", n=args.n)
        lens = la.logit_lens(model, prompts)
        ranks, answers = lens.rank("answer"), lens.tensors["answer_ids"]
        worst, argmax_same, exact, near, total = 0.0, 0, 0, 0, 0
        for i, ex in enumerate(prompts):
            ids = model.to_tokens(ex.prompt)
            with torch.no_grad():
                ours = model(ids).log_softmax(-1)[0] if args.backend == "transformer_lens" else None
                out = hf(ids, output_hidden_states=True)
            theirs = out.logits.float().log_softmax(-1)[0]
            if ours is not None:
                worst = max(worst, float((ours - theirs).abs().max()))
                argmax_same += int(torch.equal(ours.argmax(-1), theirs.argmax(-1)))
            for layer in range(model.cfg.n_layers):
                with torch.no_grad():
                    logits = (out.logits[0, -1] if layer == model.cfg.n_layers - 1 else
                              hf.lm_head(hf.model.norm(out.hidden_states[layer + 1][:, -1]))[0]).float()
                a = float(logits[answers[i]])
                r = int(ranks[layer, i])
                exact += int((logits > a).sum()) == r
                near += int((logits > a + args.tol).sum()) <= r <= int((logits >= a - args.tol).sum()) - 1
                total += 1
        line = (f"{name} ({args.backend}): load {load_s:.1f} s; lens ranks identical {exact}/{total}, "
                f"up to near-ties {near}/{total}")
        if args.backend == "transformer_lens":
            line += f"; max |log-prob diff| {worst:.2e}, argmax identical {argmax_same}/{len(prompts)} prompts"
            bad |= worst > 1e-4
        bad |= near != total
        print(line, flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
