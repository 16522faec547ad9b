"""Backends on GPUs: parity checks and the patching benchmark in fp32, bf16 and fp16, one or several GPUs.

On a machine with CUDA GPUs this script

1. runs the forward-only recipe families of ``tests/golden/backends.py`` through the nnsight
   backend on the organism and the tiny GPT-2 / GPT-J / BLOOM / Llama folders, on the GPU, in
   each dtype, and prints the largest difference per recipe from the goldens (TransformerLens
   3.9 in fp32 on the CPU); fp32 must stay within 1e-4, the half precisions are reported;
2. times an activation patching sweep (resid_pre, every layer x position, 8 pairs of 20 tokens)
   on a random GPT-2-small-shaped model (12 layers, d_model 768) through TransformerLens and
   through nnsight, per dtype: time, peak GPU memory, traces and the largest difference;
3. with two or more GPUs, splits that model with ``device_map="balanced"`` (nnsight / Hugging
   Face, and TransformerLens 4's ``boot_transformers`` when 4.x is installed) and repeats the
   sweep: the numbers must match the single-GPU run.

Without CUDA it says so and exits 0 (``--device cpu`` runs the same steps on the CPU, small,
to check the script itself).

Usage::

    python benchmarks/gpu_backends.py
    python benchmarks/gpu_backends.py --device cpu   # a dry run on the CPU
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FAMILIES = ("gpt2", "neox", "gptj", "bloom", "llama")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def memory_gib(device: str) -> str:
    if not device.startswith("cuda"):
        return "n/a"
    peak = sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    return f"{peak / 2**30:.2f} GiB"


def reset_memory(device: str) -> None:
    if device.startswith("cuda"):
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def parity(device: str, dtype_name: str) -> bool:
    """Step 1: recipe families through nnsight on ``device`` against the fp32 goldens."""
    import backends as B
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    import lensarith as la
    from lensarith.models import to_hf_gpt2, wrap_nnsight
    from lensarith.models._tokenizer import load_tokenizer

    golden, dtype, ok = load_file(str(B.FILE)), DTYPES[dtype_name], True
    for name in ("organism",) + FAMILIES:
        if name == "organism":
            tl = la.load_model("organism")
            model = wrap_nnsight(to_hf_gpt2(tl).to(device=device, dtype=dtype), tokenizer=tl.tokenizer,
                                 name="organism", prepend_bos=tl.cfg.default_prepend_bos)
        else:
            hf = AutoModelForCausalLM.from_pretrained(str(B.DIR / name), attn_implementation="eager", dtype=dtype)
            model = wrap_nnsight(hf.to(device).eval(), tokenizer=load_tokenizer(B.DIR / name), name=name)
        t = time.perf_counter()
        fresh = B.one_model(model, name, patch_engines=["hooks"], gradients=False)
        sync(device)
        diffs: dict[str, float] = {}
        for key, want in golden.items():
            if not key.startswith(name + "/") or key.split("/")[1].startswith(("attribution", "patch_fast")):
                continue
            got = fresh[key].float()
            finite = torch.isfinite(want.float()) & torch.isfinite(got)
            d = float((want.float()[finite] - got[finite]).abs().max()) if finite.any() else 0.0
            recipe = key.split("/")[1]
            diffs[recipe] = max(diffs.get(recipe, 0.0), d)
        worst = max(v for k, v in diffs.items() if k != "tokens")
        fine = worst <= 1e-4 or dtype_name != "fp32"
        ok &= fine
        print(f"  {name:<9} {dtype_name}: worst {worst:.1e} ({'ok' if fine else 'FAILS 1e-4'}) in "
              f"{time.perf_counter() - t:.1f} s; " + ", ".join(f"{k} {v:.0e}" for k, v in sorted(diffs.items())))
    return ok


def gpt2_small(folder: Path, small: bool) -> None:
    """A random GPT-2-small-shaped Hugging Face model (smaller for a CPU dry run), saved to ``folder``."""
    import transformers as tf

    import backends as B
    from lensarith.models import word_tokenizer

    tok = word_tokenizer(B.vocab(), str(folder))
    cfg = tf.GPT2Config(vocab_size=len(tok), n_positions=64, n_ctx=64, n_embd=128 if small else 768,
                        n_layer=2 if small else 12, n_head=4 if small else 12, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    tf.GPT2LMHeadModel(cfg).eval().save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def sweep(model, pairs, device: str):
    import lensarith as la

    la.activation_patch(model, pairs, site="resid_pre", layers=[0])  # warm-up
    sync(device)
    reset_memory(device)
    t = time.perf_counter()
    res = la.activation_patch(model, pairs, site="resid_pre")
    sync(device)
    return res, time.perf_counter() - t


def patching(device: str, small: bool) -> bool:
    """Steps 2 and 3: the sweep per dtype through TransformerLens and nnsight, then split over GPUs."""
    import lensarith as la
    from lensarith.models._version import tl_major

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2-small-random"
        folder.mkdir()
        gpt2_small(folder, small)
        texts = la.build_prompts("capitals", format="zero_shot", n=40)
        pairs = la.pair_examples(la.load_model(folder, device=device), texts, n=8)
        ref32 = None
        for dtype_name, dtype in DTYPES.items():
            tl_d = la.load_model(folder, device=device)  # fresh each time: a cast back to fp32 would keep the rounding
            tl_d = tl_d.to(dtype) if dtype != torch.float32 else tl_d
            ref, t_tl = sweep(tl_d, pairs, device)
            m_tl = memory_gib(device)
            nn = la.load_model(folder, backend="nnsight", device=device)
            nn.module.to(dtype)
            nn.cfg.dtype = dtype
            got, t_nn = sweep(nn, pairs, device)
            m_nn = memory_gib(device)
            diff = float((ref.values - got.values).abs().max())
            ref32 = got.values if ref32 is None else ref32
            fine = diff <= 1e-4 or dtype_name != "fp32"
            ok &= fine
            print(f"  sweep {got.values.numel()} sites {dtype_name}: TransformerLens {t_tl:.2f} s ({m_tl}), nnsight "
                  f"{t_nn:.2f} s ({m_nn}, {got.meta['traces']} traces), ratio {t_nn / t_tl:.2f}, max diff {diff:.1e}"
                  f"{'' if fine else '  FAILS 1e-4'}")
        n_gpu = torch.cuda.device_count() if device.startswith("cuda") else 0
        if n_gpu < 2:
            print(f"  device maps: {n_gpu} GPU(s), nothing to split")
            return ok
        split = la.load_model(folder, backend="nnsight", device_map="balanced")
        placed = sorted({str(p.device) for p in split.module.parameters()})
        got, t = sweep(split, pairs, "cuda")
        diff = float((got.values - ref32.to(got.values.device)).abs().max())
        ok &= diff <= 1e-4
        print(f"  nnsight split over {placed}: {t:.2f} s ({memory_gib('cuda')}), max diff vs one GPU {diff:.1e}")
        if tl_major() >= 4:
            bridge = la.load_model(folder, device_map="balanced")
            got, t = sweep(bridge, pairs, "cuda")
            diff = float((got.values - ref32.to(got.values.device)).abs().max())
            ok &= diff <= 1e-4
            print(f"  TransformerBridge split (n_devices={bridge.cfg.n_devices}): {t:.2f} s, max diff {diff:.1e}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu for a dry run")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("gpu_backends: no CUDA GPU on this machine; nothing to run (use --device cpu for a dry run on the CPU)")
        return 0
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_backends: --device cuda but CUDA is not available")
        return 1
    torch.set_num_threads(1 if device == "cpu" else torch.get_num_threads())
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device != "cpu" else ["cpu"]
    print(f"gpu_backends on {device}: {names}")
    ok = True
    for dtype_name in DTYPES if device != "cpu" else ("fp32",):
        print(f"parity, {dtype_name}:")
        ok &= parity(device, dtype_name)
    print("patching benchmark:")
    ok &= patching(device, small=device == "cpu")
    print("all fp32 checks within 1e-4" if ok else "SOME fp32 CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
