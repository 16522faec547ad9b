"""Goldens for the backend parity tests: every recipe family, computed on TransformerLens 3.9.

Models (``tests/golden/backends/``):

- ``organism``: the bundled trained model (lensarith's format; a native bridge on 4.x);
- ``tiny``: ``tiny_model(seed=5)`` (the same weights on both versions);
- tiny random Hugging Face models (2 layers, d_model 32, 4 heads, the ~600-word vocabulary of
  the capitals task), saved with ``save_pretrained``: ``gpt2`` (learned positions), ``neox``
  (rotary on half the head, parallel attention and MLP), ``gptj`` (GPT-J rotary, parallel),
  ``bloom`` (ALiBi, embedding LayerNorm), ``llama`` (RMSNorm, gated SiLU MLP, grouped-query
  attention with 2 key/value heads). Norm weights and every bias are randomised (Hugging Face
  initialises them to 1 and 0, which hides norm and bias bugs).

``python tests/golden/backends.py`` (with TransformerLens 3.9) rewrites the Hugging Face
folders and ``goldens.safetensors`` + ``meta.json``; ``--goldens`` only recomputes the goldens
from the folders. ``tests/test_backends.py`` recomputes them on whichever version is installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
DIR = HERE / "backends"
#: The goldens were frozen when only one-token items were scored (see recipes.FROZEN_RULE).
FROZEN_RULE = "single_token"
FILE = DIR / "goldens.safetensors"
META = DIR / "meta.json"
FAMILIES = ("gpt2", "neox", "gptj", "bloom", "llama")
MODELS = ("organism", "tiny") + FAMILIES
PATCH_SITES = ("resid_pre", "attn_out", "mlp_out", "z")


# --------------------------------------------------------------------------- models


def vocab() -> list[str]:
    """Every word of the capitals task and the prompt templates."""
    from lensarith.tasks import default_vocab

    return default_vocab(tasks=("capitals",))


def hf_model(family: str, tokenizer):
    """A seeded random Hugging Face model of ``family`` with randomised norms and biases."""
    import transformers as tf

    V = len(tokenizer)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    configs = {
        "gpt2": lambda: tf.GPT2Config(vocab_size=V, n_positions=64, n_ctx=64, n_embd=32, n_layer=2, n_head=4, **ids),
        "neox": lambda: tf.GPTNeoXConfig(vocab_size=V, max_position_embeddings=64, hidden_size=32,
                                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                         rotary_pct=0.5, use_parallel_residual=True, hidden_act="gelu", **ids),
        "gptj": lambda: tf.GPTJConfig(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                      n_inner=128, activation_function="gelu_new", **ids),
        "bloom": lambda: tf.BloomConfig(vocab_size=V, hidden_size=32, n_layer=2, n_head=4, **ids),
        "llama": lambda: tf.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        rms_norm_eps=1e-6, tie_word_embeddings=False, **ids),
    }
    classes = {"gpt2": tf.GPT2LMHeadModel, "neox": tf.GPTNeoXForCausalLM, "gptj": tf.GPTJForCausalLM,
               "bloom": tf.BloomForCausalLM, "llama": tf.LlamaForCausalLM}
    torch.manual_seed(FAMILIES.index(family))
    model = classes[family](configs[family]())
    gen = torch.Generator().manual_seed(100 + FAMILIES.index(family))
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif p.ndim == 1 and name.endswith("weight"):  # norm scales (embeddings and matrices are 2-d)
                p.copy_(1.0 + 0.2 * noise)
    return model.eval()


def write_models() -> None:
    """Rewrite the Hugging Face folders under ``tests/golden/backends/``."""
    import shutil
    import tempfile

    from lensarith.models import word_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = word_tokenizer(vocab(), tmp)
        for family in FAMILIES:
            out = DIR / family
            shutil.rmtree(out, ignore_errors=True)
            hf_model(family, tok).save_pretrained(str(out))
            tok.save_pretrained(str(out))


def load(name: str):
    import lensarith as la

    if name == "organism":
        return la.load_model("organism")
    if name == "tiny":
        return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=5, vocab=vocab())
    return la.load_model(DIR / name)


def engines(model) -> list[str]:
    """The patching engines this model runs with on the installed TransformerLens."""
    from lensarith.patching._fast import fast_unsupported

    return ["hooks"] + ([] if fast_unsupported(model) else ["fast"])


# --------------------------------------------------------------------------- recipes


def prompts():
    import lensarith as la

    return la.build_prompts("capitals", n=6)


def one_model(model, name: str, patch_engines: list[str] | None = None, gradients: bool = True
              ) -> dict[str, torch.Tensor]:
    """Every recipe family on one model; keys ``<name>/<recipe>/<tensor>`` (``gradients=False``
    leaves out attribution patching, for forward-only backends). Runs under the scoring rule the
    goldens were frozen with (``FROZEN_RULE``)."""
    from lensarith.tasks import scoring_rule

    with scoring_rule(FROZEN_RULE):
        return _one_model(model, name, patch_engines, gradients)


def _one_model(model, name: str, patch_engines: list[str] | None, gradients: bool) -> dict[str, torch.Tensor]:
    import lensarith as la
    from lensarith.ablation import ffn_ablation
    from lensarith.patching import PatchConfig, activation_patch, attribution_patch, pair_examples
    from lensarith.vectors import extract_o_vector, transplant, transplant_contexts

    g: dict[str, torch.Tensor] = {}

    def put(key: str, t) -> None:
        g[f"{name}/{key}"] = torch.as_tensor(t).detach().cpu().contiguous()

    batch = la.tokenize(model, prompts())
    put("tokens", batch.tokens)
    parallel = getattr(model.cfg, "parallel_attn_mlp", False)  # no resid_mid between attention and MLP
    lens = la.logit_lens(model, batch, stream="resid_pre" if parallel else "all")
    put("lens/normed", lens.normed)
    put("lens/rank_answer", lens.rank("answer"))
    put("lens/probs", lens.probs("answer"))
    for gran in ("layer", "head", "neuron"):
        dec = la.decompose_resid(model, batch, granularity=gran)
        if gran == "neuron":  # [component, batch, d_model] is megabytes for the organism: 4 fixed projections
            probe = torch.randn(model.cfg.d_model, 4, generator=torch.Generator().manual_seed(0))
            put(f"decompose_{gran}/components_probe", dec.components @ probe)
        else:
            put(f"decompose_{gran}/components", dec.components)
        put(f"decompose_{gran}/resid", dec.resid)
        dla = la.direct_logit_attribution(model, batch, baselines="argument", granularity=gran)
        put(f"dla_{gran}/attributions", dla.attributions)
        put(f"dla_{gran}/total", dla.total)
    pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)
    for engine in patch_engines if patch_engines is not None else engines(model):
        for site in PATCH_SITES:
            res = activation_patch(model, pairs, site=site, config=PatchConfig(engine=engine))
            put(f"patch_{engine}_{site}/values", res.values)
            put(f"patch_{engine}_{site}/per_example", res.per_example)
    for site in ("resid_pre", "mlp_out", "z") if gradients else ():
        res = attribution_patch(model, pairs, site=site)
        put(f"attribution_{site}/values", res.values)
        put(f"attribution_{site}/clean", res.clean)
    layer = model.cfg.n_layers - 1
    caps = list(la.tokenize(model, la.build_prompts("capitals", n=20), drop_multi_token=True).examples[:8])
    o = extract_o_vector(model, caps[:2], layer=layer)
    put("o/vector", o.vector)
    ctx = transplant_contexts(caps[2:], seed=0)
    for mode in ("replace", "add"):
        res = transplant(model, o.select(0), ctx, layers=[layer], mode=mode, scale=1.0 if mode == "replace" else 1.5)
        put(f"transplant_{mode}/rank_answer", res.tensors["rank_answer"])
        put(f"transplant_{mode}/rank_argument", res.tensors["rank_argument"])
    res = ffn_ablation(model, "capitals", mode="zero", n=12, steps=2)
    for key in ("accuracy", "mrr", "retained"):
        put(f"ablation/{key}", res.tensors[key])
    return g


def compute(names=MODELS) -> tuple[dict[str, torch.Tensor], dict]:
    from lensarith.models import config_hash

    torch.set_num_threads(1)
    out: dict[str, torch.Tensor] = {}
    meta: dict = {}
    for name in names:
        print(f"{name} ...", flush=True)
        model = load(name)
        meta[name] = {"config_hash": config_hash(model), "engines": engines(model)}
        out.update(one_model(model, name))
    return out, meta


if __name__ == "__main__":  # pragma: no cover - re-freezing is a deliberate act
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE.parent.parent))
    if "--goldens" not in sys.argv:
        write_models()
        print(f"wrote the Hugging Face folders in {DIR}")
    tensors, meta = compute()
    save_file(tensors, str(FILE))
    META.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FILE} ({len(tensors)} tensors) and {META}")
