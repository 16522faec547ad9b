"""Golden outputs of every recipe, frozen before the one-core refactor.

``compute()`` runs every recipe family on tiny random models with each final
normalisation (LN, LNPre from folded weights, RMS, None) and returns a flat dict of
tensors; ``python tests/golden/recipes.py`` writes them to ``tests/golden/recipes.safetensors``
(run it only to re-freeze on purpose). ``tests/test_golden.py`` recomputes them and compares.

Recipes that raised before the refactor (DLA, ``run_with_interventions`` and the layer
search, which ranks by DLA, on a model without a final norm) have no golden; ``test_no_final_norm`` checks them by identities.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
FILE = HERE / "recipes.safetensors"
NORMS = ("LN", "LNPre", "RMS", "None")
#: The goldens were frozen when lensarith scored only items whose answer and argument are one token
#: each; the first-token rule (the default since, which also scores multi-token items whose first
#: token identifies the answer) is tested in tests/test_scoring.py. The goldens recompute under the
#: rule they were frozen with.
FROZEN_RULE = "single_token"


def models() -> dict:
    import lensarith as la

    out = {}
    for norm in NORMS:
        if norm == "LNPre":
            m = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=2)
            m.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
        else:
            m = la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=3,
                              normalization_type=None if norm == "None" else norm)
        out[norm] = m
    return out


def _prompts():
    import lensarith as la

    return la.build_prompts("capitals", n=4) + la.build_prompts("past", n=3) + la.build_prompts("uppercase", n=2)


def one_model(model, norm: str) -> dict[str, torch.Tensor]:
    """Every recipe on one model; keys ``<norm>/<recipe>/<tensor>``."""
    import lensarith as la
    from lensarith.patching import PatchConfig, activation_patch, attribution_patch, pair_examples
    from lensarith.vectors import (SearchConfig, TransplantConfig, decode_o_vector, extract_o_vector, find_layers,
                                   o_vector_analogy, o_vector_consistency, transplant, transplant_contexts,
                                   transplant_experiment)
    from lensarith.ablation import ffn_ablation

    g: dict[str, torch.Tensor] = {}

    def put(name: str, t) -> None:
        g[f"{norm}/{name}"] = torch.as_tensor(t).detach().cpu().contiguous()

    prompts = _prompts()
    batch = la.tokenize(model, prompts)
    # lens
    lens = la.logit_lens(model, batch, stream="all")
    put("lens/normed", lens.normed)
    put("lens/rank_answer", lens.rank("answer"))
    put("lens/rank_argument", lens.rank("argument"))
    put("lens/probs", lens.probs("answer"))
    put("lens/top3", lens.top_tokens(3)[0])
    lens2 = la.logit_lens(model, batch, stream="resid_mid", position=-2)
    put("lens_mid_pos-2/logits", lens2.logits("answer"))
    # decomposition
    for gran in ("layer", "head", "neuron"):
        dec = la.decompose_resid(model, batch, granularity=gran)
        put(f"decompose_{gran}/components", dec.components)
        put(f"decompose_{gran}/resid", dec.resid)
    dec = la.decompose_resid(model, batch, layer=1, stream="resid_mid", granularity="head")
    put("decompose_mid1/components", dec.components)
    # DLA, interventions (no golden where the old code raised)
    if norm != "None":
        for gran in ("layer", "head", "neuron"):
            dla = la.direct_logit_attribution(model, batch, baselines="argument", granularity=gran)
            put(f"dla_{gran}/attributions", dla.attributions)
            put(f"dla_{gran}/total", dla.total)
        dla = la.direct_logit_attribution(model, batch)
        put("dla_plain/attributions", dla.attributions)
        put("run_with_interventions/plain", la.run_with_interventions(model, batch))
        ivs = [la.Ablate(la.Site("mlp_out", 0)), la.Add(la.Site("resid_pre", 1, "last"), torch.ones(32), 0.5)]
        put("run_with_interventions/edited", la.run_with_interventions(model, batch, ivs))
    got = la.collect(model, batch, [la.Site("resid_mid", 1, "last"), la.Site("z", 0, -2), la.Site("mlp_post", 1, 0)])
    for i, (site, t) in enumerate(got.items()):
        put(f"collect/{i}", t)
    # patching
    pairs = pair_examples(model, la.build_prompts("capitals", format="zero_shot", n=40), n=4)
    for engine in ("fast", "hooks"):
        cfg = PatchConfig(engine=engine)
        for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z"):
            res = activation_patch(model, pairs, site=site, config=cfg)
            put(f"patch_{engine}_{site}/values", res.values)
            put(f"patch_{engine}_{site}/per_example", res.per_example)
        res = activation_patch(model, pairs, site="z", by_position=True, config=cfg)
        put(f"patch_{engine}_z_pos/values", res.values)
        for metric in ("recovery", "answer_prob", "reciprocal_rank"):
            res = activation_patch(model, pairs, site="resid_pre", metric=metric, config=cfg)
            put(f"patch_{engine}_{metric}/per_example", res.per_example)
        res = activation_patch(model, pairs, site="attn_out", direction="noise", config=cfg)
        put(f"patch_{engine}_noise/values", res.values)
    for site in ("resid_pre", "mlp_out", "z"):
        res = attribution_patch(model, pairs, site=site)
        put(f"attribution_{site}/values", res.values)
        put(f"attribution_{site}/clean", res.clean)
    # o-vectors
    caps = list(la.tokenize(model, la.build_prompts("capitals", n=20), drop_multi_token=True).examples[:8])
    o = extract_o_vector(model, caps[:2], layer=1)
    put("o/vector", o.vector)
    o1 = o.select(0)
    ctx = transplant_contexts(caps[2:], seed=0)
    for mode in ("replace", "add", "subtract"):
        for positions in ("all", "last"):
            res = transplant(model, o1, ctx, layers=[0, 1] if mode == "replace" else [1], mode=mode,
                             positions=positions, scale=1.5 if mode != "replace" else 1.0)
            put(f"transplant_{mode}_{positions}/rank_answer", res.tensors["rank_answer"])
            put(f"transplant_{mode}_{positions}/rank_argument", res.tensors["rank_argument"])
            put(f"transplant_{mode}_{positions}/top1", res.tensors["top1"])
    searchable = norm != "None"  # the search ranks MLPs by DLA, which raised without a final norm
    for screen in ((None, 1) if searchable else ()):
        cfg = SearchConfig(n_prompts=12, n_contexts=12, screen=screen, after_argument=screen is None)
        found = find_layers(model, "capitals", config=cfg, batch_size=4)
        for key, t in found.tensors.items():
            put(f"find_layers_screen{screen}/{key}", t)
        put(f"find_layers_screen{screen}/layers", torch.tensor([found.application_layer, found.start_layer]))
    if searchable:
        found = find_layers(model, "capitals", config=SearchConfig(method="dla", n_prompts=12, n_contexts=8))
        put("find_layers_dla/layers", torch.tensor([found.application_layer, found.start_layer]))
    dec = decode_o_vector(model, o1, k=5)
    put("decode/scores", dec.tensors["scores"])
    dec = decode_o_vector(model, o1, k=5, through_ln=False)
    put("decode_raw/scores", dec.tensors["scores"])
    past = list(la.tokenize(model, la.build_prompts("past", n=10), drop_multi_token=True).examples[:3])
    cons = o_vector_consistency({"capitals": o, "past": extract_o_vector(model, past, layer=1)})
    put("consistency/cosine", cons.tensors["cosine"])
    put("consistency/group_mean", cons.tensors["group_mean"])
    for space in ("unembed", "embed"):
        ana = o_vector_analogy(model, o1, caps, space=space, n_shuffles=3)
        for key, t in ana.tensors.items():
            put(f"analogy_{space}/{key}", t)
    # ablation
    for mode in ("zero", "mean"):
        res = ffn_ablation(model, "capitals", mode=mode, n=12, steps=2)
        for key in ("accuracy", "mrr", "retained"):
            put(f"ablation_{mode}/{key}", res.tensors[key])
    # the whole transplant recipe
    if searchable:
        res = transplant_experiment(model, "capitals", TransplantConfig(n_contexts=8),
                                    search=SearchConfig(n_prompts=12, n_contexts=12))
        put("experiment/rank_answer", res.tensors["rank_answer"])
    res = transplant_experiment(model, "capitals", TransplantConfig(n_contexts=8, layer=1, mode="add", scale=2.0))
    put("experiment_add/rank_answer", res.tensors["rank_answer"])
    return g


def compute() -> dict[str, torch.Tensor]:
    from lensarith.tasks import scoring_rule

    torch.set_num_threads(1)
    out: dict[str, torch.Tensor] = {}
    with scoring_rule(FROZEN_RULE):
        for norm, model in models().items():
            out.update(one_model(model, norm))
    return out


def reproduce_small(out_dir: Path) -> dict:
    """``reproduce --small`` on the organism: the figures' numbers (no timings, no paths)."""
    import lensarith as la
    from lensarith.paper.reproduce import ReproduceConfig, reproduce

    from lensarith.tasks import scoring_rule

    torch.set_num_threads(1)
    model = la.load_model("organism")
    with scoring_rule(FROZEN_RULE):
        summary = reproduce(model, out_dir, ReproduceConfig.small_run(), model_name="organism", progress=False)
    # the word2vec comparison needs the optional GloVe package: tests/test_word2vec.py and test_reproduce.py cover it
    return {"figures": {k: v for k, v in summary["figures"].items() if k != "word2vec"}, "layers": summary["layers"]}


if __name__ == "__main__":  # pragma: no cover - re-freezing is a deliberate act
    import json
    import tempfile

    from safetensors.torch import save_file

    what = sys.argv[1:] or ["recipes", "reproduce"]
    if "recipes" in what:
        save_file(compute(), str(FILE))
        print(f"wrote {FILE}")
    if "reproduce" in what:
        with tempfile.TemporaryDirectory() as tmp:
            data = reproduce_small(Path(tmp))
        (HERE / "reproduce_small.json").write_text(json.dumps(data, indent=1, default=str))
        print(f"wrote {HERE / 'reproduce_small.json'}")
