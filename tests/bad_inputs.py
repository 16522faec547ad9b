"""The bad-input table: mistakes a user can make, across the API and the command line.

Each ``Case`` calls lensarith with one wrong input and states the outcome expected: a
``LensarithError`` (or subclass) whose message matches ``match`` (it names the argument and
what would be valid), or — for inputs that are allowed but not as asked — a
``LensarithWarning`` with a report. ``tests/test_bad_inputs.py`` asserts every case;
``benchmarks/bad_inputs.py`` classifies each one's outcome (clear error / report /
traceback / silent) to compare two versions of the code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

import lensarith as la
from lensarith import cli
from lensarith.core import Site, token_ids
from lensarith.tasks import Example

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Any], Any]
    match: str
    expect: str = ERROR  # or WARNING
    exc: type = la.LensarithError


class Env:
    """Shared objects the cases use, built on first use."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lensarith-bad-input-"))

    @cached_property
    def model(self):
        return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)

    @cached_property
    def wide(self):
        return la.tiny_model(n_layers=2, d_model=48, n_heads=4, seed=1)

    @cached_property
    def other_arch(self):
        return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=2, d_mlp=64)

    @cached_property
    def shortformer(self):
        from transformer_lens import HookedTransformerConfig

        from lensarith.models import new_hooked_transformer

        cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_vocab=50, n_ctx=16, act_fn="gelu",
                                      normalization_type="LN", positional_embedding_type="shortformer", seed=5)
        return new_hooked_transformer(cfg)

    @cached_property
    def prompts(self):
        return la.build_prompts("capitals", n=4)

    @cached_property
    def caps(self):
        return list(la.tokenize(self.model, la.build_prompts("capitals", n=30), drop_multi_token=True).examples[:10])

    @cached_property
    def batch(self):
        return la.tokenize(self.model, self.prompts)

    @cached_property
    def pairs(self):
        return la.pair_examples(self.model, la.build_prompts("capitals", format="zero_shot", n=40), n=2)

    @cached_property
    def o(self):
        return la.extract_o_vector(self.model, self.caps[:1], layer=1).select(0)

    @cached_property
    def o_multi(self):
        return la.extract_o_vector(self.model, self.caps[:3], layer=1)

    @cached_property
    def ctx(self):
        return la.transplant_contexts(self.caps[1:5])

    @cached_property
    def lens(self):
        return la.logit_lens(self.model, self.batch)

    @cached_property
    def lens_dir(self):
        return self.lens.save(self.tmp / "lens")

    @cached_property
    def o_dir(self):
        return self.o.save(self.tmp / "o")

    @cached_property
    def ablation(self):
        return la.ffn_ablation(self.model, "capitals", n=6, steps=2)

    # ---- surfaces added since the first audit (issue 23)
    @cached_property
    def ctx4(self):
        return la.transplant_contexts("capitals", n=4, model=self.model)

    @cached_property
    def effects(self):
        return la.vectors.head_effects(self.model, "capitals", n_prompts=4, n_shots=2)

    @cached_property
    def twin(self):
        return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=7)  # same architecture, other weights

    @cached_property
    def fv(self):
        return la.vectors.function_vector(self.model, self.effects, n_heads=3)

    @cached_property
    def tv(self):
        return la.vectors.extract_task_vector(self.model, "capitals", 1, n_prompts=3, n_shots=2)

    @cached_property
    def sweep(self):
        return la.vectors.sweep_layers(self.model, self.o, self.ctx4, scales=(1.0,))

    @cached_property
    def applied(self):
        return la.vectors.apply_vector(self.model, self.o, self.ctx4)

    @cached_property
    def nn(self):
        return la.load_model("organism", backend="nnsight")

    @cached_property
    def hf(self):
        from lensarith.models._export import to_hf_gpt2

        return to_hf_gpt2(self.model)

    @cached_property
    def bench(self):
        return la.vectors.vector_bench(self.model, "capitals", la.vectors.BenchConfig.small_run(
            kinds=("tv",), contexts=("zero_shot",), n=4, n_dev=4, n_sources=4, n_shots=2, n_boot=20))

    def bench_without(self, key: str) -> Path:
        path = self.tmp / f"bench-without-{key}"
        self.bench.save(path)
        doc = json.loads((path / "result.json").read_text())
        doc["meta"].pop(key)
        (path / "result.json").write_text(json.dumps(doc))
        return path

    def file_at(self, name: str) -> Path:
        path = self.tmp / name
        path.write_text("the user's notes")
        return path

    def folder_with_notes(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "notes.txt").write_text("the user's notes")
        return path

    def damaged(self, what: str, model: str = "organism") -> str:
        """A copy of a bundled model folder with one thing wrong."""
        import shutil

        from lensarith._paths import data_dir

        path = self.tmp / f"{model}-{what}"
        if path.exists():
            return str(path)
        shutil.copytree(data_dir() / model, path)
        cfg = json.loads((path / "config.json").read_text())
        if what == "no-tokenizer-config":
            (path / "tokenizer_config.json").unlink()
        elif what == "no-tokenizer":
            (path / "tokenizer.json").unlink()
        elif what == "tiny-tokenizer":
            self.model.tokenizer.save_pretrained(str(path))
        elif what == "corrupt-tokenizer":
            (path / "tokenizer.json").write_text("{not json")
        elif what == "seed-overflow":
            cfg["seed"] = 2 ** 70
        elif what == "seed-string":
            cfg["seed"] = "zero"
        elif what == "wider":
            cfg["d_model"] = 256
        elif what == "truncated-weights":
            data = (path / "model.safetensors").read_bytes()
            (path / "model.safetensors").write_bytes(data[: len(data) // 3])
        elif what == "corrupt-card":
            (path / "lensarith.json").write_text("{not json")
        elif what == "config-list":
            cfg = [cfg]
        elif what == "bad-dtype":
            cfg["dtype"] = "float8"
        (path / "config.json").write_text(json.dumps(cfg))
        return str(path)

    def broken_result(self, what: str) -> Path:
        path = self.tmp / f"broken-{what}"
        la.Result({"x": torch.zeros(3)}, {"x": ("batch",)}).save(path)
        if what == "json":
            (path / "result.json").write_text("{not json")
        elif what == "tensors":
            data = (path / "tensors.safetensors").read_bytes()
            (path / "tensors.safetensors").write_bytes(data[: len(data) // 2])
        elif what == "keys":
            (path / "result.json").write_text(json.dumps({"kind": "result"}))
        return path

    def long_prompt(self) -> str:
        return " ".join(["table"] * (self.model.cfg.n_ctx + 5))


def cli_call(argv: list[str]) -> Callable[[Any], Any]:
    """Run the command line in-process; raise ``CLIError`` with stderr unless it exits 2 with one line."""

    def call(env: Env) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli.main([a.replace("{tmp}", str(env.tmp)) for a in argv])
            except SystemExit as exc:
                rc = exc.code
        raise CLIExit(rc, err.getvalue())

    return call


class CLIExit(Exception):
    def __init__(self, rc, stderr: str) -> None:
        super().__init__(f"exit {rc}: {stderr.strip()}")
        self.rc, self.stderr = rc, stderr


def _rr_metric(logits):
    return logits.mean()


def _boom_metric(logits):
    raise ZeroDivisionError("inside the metric")


def _returns_42(model, prompts):
    return 42


def _bad_recipe(env: Env):
    la.register_recipe("returns_42", overwrite=True)(_returns_42)
    return la.run_recipe("returns_42", env.model, env.prompts)


V = la.vectors
BIG = 2 ** 70


def _nan_grad_metric(logits):
    """Finite value, NaN gradient: sqrt at 0 of a quantity that is exactly 0."""
    return torch.sqrt(logits[:, 0] * 0.0)


def _nan_metric(logits):
    return torch.full(logits.shape[:1], NAN)


def _atp(env, **kw):
    return la.attribution_patch(env.model, env.pairs, site="mlp_out", **kw)


def _fv_from_twin_effects(env):
    return V.function_vector(env.twin, env.effects, n_heads=2)


def _apply_nan_tensor(env):
    return V.apply_vector(env.model, V.OVector.from_tensor(torch.full((32,), NAN), layer=1), env.ctx4)


def _nnsight_tokenizer(env, tok):
    return la.models.wrap_nnsight(env.hf, tokenizer=tok)


E = Example
NAN = float("nan")

CASES: list[Case] = [
    # ---- tasks
    Case("build_prompts unknown task", lambda e: la.build_prompts("nope"), r"task='nope' is unknown; valid tasks"),
    Case("build_prompts task not a string", lambda e: la.build_prompts(123), r"task=123 is unknown"),
    Case("build_prompts format typo", lambda e: la.build_prompts("capitals", format="zeroshot"),
         r"format must be one of 'one_shot', 'extractive', 'counterfactual', 'zero_shot', got 'zeroshot'"),
    Case("build_prompts n=0", lambda e: la.build_prompts("capitals", n=0), r"n must be None or a positive int, got 0"),
    Case("build_prompts n<0", lambda e: la.build_prompts("capitals", n=-3), r"n must be None or a positive int, got -3"),
    Case("build_prompts n as string", lambda e: la.build_prompts("capitals", n="5"), r"n must be None or a positive int, got str '5'"),
    Case("build_prompts n as bool", lambda e: la.build_prompts("capitals", n=True), r"n must be .* got bool True"),
    Case("build_prompts n as float", lambda e: la.build_prompts("capitals", n=2.5), r"n must be .* got float 2.5"),
    Case("build_prompts seed as string", lambda e: la.build_prompts("capitals", seed="x"), r"seed must be an int, got str"),
    Case("build_prompts shuffle as string", lambda e: la.build_prompts("capitals", shuffle="yes"), r"shuffle must be True or False"),
    Case("build_prompts counterfactual past", lambda e: la.build_prompts("past", format="counterfactual"),
         r"format='counterfactual' is defined for capitals"),
    Case("build_prompts extractive past", lambda e: la.build_prompts("past", format="extractive"), r"format='extractive' is defined for"),
    Case("build_prompts counterfactual colours", lambda e: la.build_prompts("uppercase", format="counterfactual"),
         r"counterfactual' is defined for capitals and us_capitals only"),
    Case("load_pairs unknown task", lambda e: la.load_pairs("nope"), r"task='nope' is unknown"),
    Case("random contexts of nothing", lambda e: la.random_token_contexts([]), r"examples must be a non-empty list of lensarith.Example"),
    Case("random contexts of a string", lambda e: la.random_token_contexts("capitals"), r"examples must be a non-empty list"),
    Case("random contexts n_words=0", lambda e: la.random_token_contexts(e.prompts, n_words=0), r"n_words must be a positive int"),
    Case("random contexts repeats=0", lambda e: la.random_token_contexts(e.prompts, repeats=0), r"repeats must be a positive int"),
    Case("random contexts too few words", lambda e: la.random_token_contexts(e.prompts, words=["a"]), r"need at least n_words \+ 1"),
    Case("random contexts n_words bool", lambda e: la.random_token_contexts(e.prompts, n_words=True), r"n_words must be a positive int"),
    # ---- tokenisation and batches
    Case("tokenize nothing", lambda e: la.tokenize(e.model, []), r"examples is empty"),
    Case("tokenize a bare string", lambda e: la.tokenize(e.model, "Q: hello"), r"examples must be a list of strings or Examples"),
    Case("tokenize numbers", lambda e: la.tokenize(e.model, [1, 2]), r"examples must be strings or lensarith.Example objects, got a int"),
    Case("tokenize an over-long prompt", lambda e: la.tokenize(e.model, [e.long_prompt()]),
         r"has 134 tokens, more than the model's n_ctx=128; shorten it"),
    Case("tokenize an over-long Example", lambda e: la.tokenize(e.model, [E(e.long_prompt(), " Paris", " France")]),
         r"more than the model's n_ctx"),
    Case("tokenize prepend_bos string", lambda e: la.tokenize(e.model, ["x"], prepend_bos="yes"), r"prepend_bos must be None, True or False"),
    Case("tokenize unknown answer", lambda e: la.tokenize(e.model, [E("Q: What is the capital of Poland?\nA:", " Zzyzx", " Poland")]),
         r"\[' Zzyzx'\] not in the model's vocabulary; pass drop_multi_token=True"),
    Case("tokenize unknown words in the prompt", lambda e: la.tokenize(e.model, ["Q: What is the capital of Zzyzx?\nA:"]),
         r"1 of 1 prompts contain words outside the model's vocabulary, read as '<unk>'", WARNING),
    Case("as_batch float ids", lambda e: la.as_batch(e.model, torch.tensor([[1.5]])), r"token ids must be an integer tensor"),
    Case("as_batch 3-d ids", lambda e: la.as_batch(e.model, torch.zeros(2, 3, 4, dtype=torch.long)), r"token ids must be an integer tensor \[batch, pos\]"),
    Case("as_batch id too large", lambda e: la.as_batch(e.model, torch.tensor([[10 ** 6]])), r"token ids must lie in 0\.\."),
    Case("as_batch negative id", lambda e: la.as_batch(e.model, torch.tensor([[-1]])), r"token ids must lie in 0\.\."),
    Case("as_batch empty ids", lambda e: la.as_batch(e.model, torch.zeros((0, 3), dtype=torch.long)), r"token ids are empty"),
    Case("as_batch a number", lambda e: la.as_batch(e.model, 42), r"prompts must be a string, a list of strings or Examples"),
    Case("as_batch None", lambda e: la.as_batch(e.model, None), r"prompts must be a string"),
    Case("as_batch empty list", lambda e: la.as_batch(e.model, []), r"prompts is empty"),
    Case("as_batch mixed list", lambda e: la.as_batch(e.model, ["a", 3]), r"prompts must be strings or lensarith.Example"),
    Case("as_batch ids longer than n_ctx", lambda e: la.as_batch(e.model, torch.zeros(1, 129, dtype=torch.long)), r"129 positions, more than the model's n_ctx=128"),
    Case("token_ids of a two-token string", lambda e: token_ids(e.model, " Warsaw Paris", name="answers"),
         r"answers: ' Warsaw Paris' is 2 tokens \['Warsaw', 'Paris'\]; give one token per item"),
    Case("token_ids of an unknown word", lambda e: token_ids(e.model, " Zzyzx", name="answers"), r"answers: ' Zzyzx' is not in the model's vocabulary"),
    Case("token_ids of a bool", lambda e: token_ids(e.model, [True], name="answers"), r"answers: items must be token strings or int ids, got True"),
    Case("token_ids of a float", lambda e: token_ids(e.model, 1.5, name="answers"), r"answers must be a token string, an id"),
    Case("token_ids of a float tensor", lambda e: token_ids(e.model, torch.tensor([1.0]), name="answers"), r"must be an integer tensor"),
    Case("token_ids out of range", lambda e: token_ids(e.model, [10 ** 7], name="answers"), r"token ids must lie in 0\.\."),
    Case("positions typo", lambda e: e.batch.positions("first"), r"position must be 'last' or an int, got 'first'"),
    Case("positions past the end", lambda e: e.batch.positions(99), r"position=99 is past the end of the shortest prompt"),
    Case("positions before the start", lambda e: e.batch.positions(-99), r"position=-99 reaches before the start"),
    Case("positions bool", lambda e: e.batch.positions(True), r"position must be 'last' or an int, got True"),
    Case("chunks of 0", lambda e: list(e.batch.chunks(0)), r"batch_size must be a positive int, got 0"),
    Case("batch indexed by an int", lambda e: e.batch[0], r"Batch supports slicing only"),
    # ---- sites and interventions
    Case("site kind typo", lambda e: Site("mlp", 1), r"Site kind='mlp' is unknown; valid kinds"),
    Case("site without layer", lambda e: Site("mlp_out"), r"Site kind='mlp_out' needs an int layer, got layer=None"),
    Case("site layer bool", lambda e: Site("mlp_out", True), r"needs an int layer, got layer=True"),
    Case("site layer float", lambda e: Site("mlp_out", 1.0), r"needs an int layer, got layer=1.0"),
    Case("embed site with a layer", lambda e: Site("embed", 0), r"Site kind='embed' takes no layer"),
    Case("head on an MLP site", lambda e: Site("mlp_out", 0, head=1), r"Site kind='mlp_out' has no heads"),
    Case("site position float", lambda e: Site("mlp_out", 0, position=1.5), r"Site position must be None, 'last' or an int, got 1.5"),
    Case("site position bool", lambda e: Site("mlp_out", 0, position=True), r"Site position must be None, 'last' or an int, got True"),
    Case("site layer out of range", lambda e: la.collect(e.model, e.batch, [Site("mlp_out", 5)]),
         r"Site layer=5 is out of range for a model with 2 layers: valid is -2\.\.1"),
    Case("site head out of range", lambda e: la.collect(e.model, e.batch, [Site("z", 0, "last", head=9)]), r"Site head=9 is out of range: the model has 4 heads"),
    Case("result site without attn result", lambda e: la.collect(e.model, e.batch, [Site("result", 0, "last")]), r"needs model.set_use_attn_result\(True\)"),
    Case("ablate intervention mode typo", lambda e: la.Ablate(Site("mlp_out", 0), mode="half"), r"Ablate mode must be 'zero' or 'mean', got 'half'"),
    Case("mean ablation without a mean", lambda e: la.Ablate(Site("mlp_out", 0), "mean"), r"Ablate\(mode='mean'\) needs mean=<tensor>"),
    Case("replace value not a tensor", lambda e: la.Replace(Site("mlp_out", 0), "x"), r"Replace value must be a float tensor .* got str"),
    Case("replace without a Site", lambda e: la.Replace("blocks.0.hook_mlp_out", torch.zeros(32)), r"Replace needs a lensarith.Site"),
    Case("add scale as string", lambda e: la.Add(Site("mlp_out", 0), torch.zeros(32), "2"), r"Add scale must be a finite number, got '2'"),
    Case("add scale NaN", lambda e: la.Add(Site("mlp_out", 0), torch.zeros(32), NAN), r"Add scale must be a finite number, got nan"),
    Case("add an int vector", lambda e: la.Add(Site("mlp_out", 0), torch.zeros(32, dtype=torch.long)), r"Add vector must be a float tensor .* got a torch.int64 tensor"),
    Case("patch source not a tensor", lambda e: la.Patch(Site("mlp_out", 0), [1.0]), r"Patch source must be a float tensor"),
    Case("interventions not interventions", lambda e: la.run_with_interventions(e.model, e.batch, [42]), r"interventions must be lensarith interventions"),
    Case("replace with the wrong width", lambda e: la.run_with_interventions(e.model, e.batch, [la.Replace(Site("mlp_out", 0, "last"), torch.zeros(7))]),
         r"cannot apply the intervention at blocks.0.hook_mlp_out: slice shape \(4, 32\), value shape \(7,\)"),
    Case("patch source of another shape", lambda e: la.run_with_interventions(e.model, e.batch, [la.Patch(Site("mlp_out", 0), torch.zeros(1, 2, 32))]),
         r"source shape \(1, 2, 32\) differs from the activation's"),
    Case("NaN put into a run", lambda e: la.run_with_interventions(e.model, e.batch, [la.Replace(Site("mlp_out", 1, "last"), torch.full((32,), NAN))]),
         r"non-finite values \(NaN or inf\) first appear at blocks.1.hook_mlp_out \(layer 1\) for examples \[0, 1, 2, 3\]"),
    Case("inf added into a run", lambda e: la.collect(e.model, e.batch, [Site("resid_post", 1, "last")], interventions=[la.Add(Site("resid_pre", 1), torch.full((32,), float("inf")))]),
         r"first appear at blocks.1.hook_resid_pre \(layer 1\)"),
    Case("collect batch_size 0", lambda e: la.collect(e.model, e.batch, [Site("mlp_out", 0, "last")], batch_size=0), r"batch_size must be >= 1|batch_size must be a positive int"),
    Case("collect batch_size string", lambda e: la.collect(e.model, e.batch, [Site("mlp_out", 0, "last")], batch_size="4"), r"batch_size must be a positive int, got str"),
    # ---- logit lens
    Case("lens stream typo", lambda e: la.logit_lens(e.model, e.prompts, stream="resid"), r"stream must be 'resid_pre', 'resid_mid', 'resid_post' or 'all', got 'resid'"),
    Case("lens position typo", lambda e: la.logit_lens(e.model, e.prompts, position="first"), r"position must be 'last' or an int"),
    Case("lens position past the end", lambda e: la.logit_lens(e.model, e.prompts, position=99), r"position=99 is past the end"),
    Case("lens batch_size 0", lambda e: la.logit_lens(e.model, e.prompts, batch_size=0), r"batch_size must be a positive int"),
    Case("lens of a number", lambda e: la.logit_lens(e.model, 42), r"prompts must be a string"),
    Case("lens rank of the wrong count", lambda e: e.lens.rank([1, 2]), r"ids needs one token per prompt \(4\)"),
    Case("lens rank of a two-token string", lambda e: e.lens.rank(" Warsaw Paris"), r"is 2 tokens"),
    Case("lens top_tokens k=0", lambda e: e.lens.top_tokens(k=0), r"k must be a positive int"),
    Case("lens without a model", lambda e: la.Result.load(e.lens_dir).rank(), r"no model attached: call result.attach\(model\)"),
    Case("lens attached to another model", lambda e: la.Result.load(e.lens_dir).attach(e.wide), r"different model architecture"),
    Case("lens without arguments", lambda e: la.logit_lens(e.model, ["Q: What is the capital of Poland?\nA:"]).rank("argument"),
         r"ids='argument': the prompts carried no arguments"),
    # ---- decomposition and DLA
    Case("decompose layer out of range", lambda e: la.decompose_resid(e.model, e.prompts, layer=5), r"layer=5 is out of range"),
    Case("decompose layer bool", lambda e: la.decompose_resid(e.model, e.prompts, layer=True), r"layer must be an int, got True"),
    Case("decompose layer string", lambda e: la.decompose_resid(e.model, e.prompts, layer="1"), r"layer must be an int, got '1'"),
    Case("decompose stream typo", lambda e: la.decompose_resid(e.model, e.prompts, layer=1, stream="resid"), r"stream must be 'resid_pre', 'resid_mid' or 'resid_post'"),
    Case("decompose granularity typo", lambda e: la.decompose_resid(e.model, e.prompts, granularity="neurons"), r"granularity must be 'layer', 'head' or 'neuron', got 'neurons'"),
    Case("decompose position past the end", lambda e: la.decompose_resid(e.model, e.prompts, position=99), r"position=99 is past the end"),
    Case("DLA unknown answer", lambda e: la.direct_logit_attribution(e.model, e.prompts, answers=" Zzyzx"), r"answers: ' Zzyzx' is not in the model's vocabulary"),
    Case("DLA two-token answer", lambda e: la.direct_logit_attribution(e.model, e.prompts, answers=" Warsaw Paris"), r"answers: ' Warsaw Paris' is 2 tokens"),
    Case("DLA answers of the wrong count", lambda e: la.direct_logit_attribution(e.model, e.prompts, answers=[5, 6]), r"answers needs one token per prompt \(4\)"),
    Case("DLA argument baseline without arguments", lambda e: la.direct_logit_attribution(e.model, ["Q: hi"], answers=5, baselines="argument"),
         r"baselines='argument': the prompts carry no arguments"),
    Case("DLA granularity typo", lambda e: la.direct_logit_attribution(e.model, e.prompts, granularity="x"), r"granularity must be 'layer', 'head' or 'neuron'"),
    Case("DLA answers bool", lambda e: la.direct_logit_attribution(e.model, e.prompts, answers=True), r"answers: items must be token strings or int ids, got True"),
    # ---- patching
    Case("patch without corrupted prompts", lambda e: la.activation_patch(e.model, ["Q: a"]), r"give corrupted prompts, or PromptPairs"),
    Case("patch prompts of different lengths", lambda e: la.activation_patch(e.model, ["Q: What is the capital of Poland?\nA:"], ["Q: What?\nA:"]),
         r"clean and corrupted prompts must have the same token length: pair 0 has \d+ vs \d+ tokens"),
    Case("patch different numbers of prompts", lambda e: la.make_pairs(e.model, ["a b", "c d"], ["a b"]), r"clean has 2 prompts but corrupted has 1"),
    Case("patch site typo", lambda e: la.activation_patch(e.model, e.pairs, site="mlp"), r"site='mlp' is not patchable; valid sites"),
    Case("patch metric typo", lambda e: la.activation_patch(e.model, e.pairs, metric="logitdiff"), r"metric='logitdiff' is unknown; valid names"),
    Case("patch direction typo", lambda e: la.activation_patch(e.model, e.pairs, direction="both"), r"direction must be 'denoise'"),
    Case("patch layer out of range", lambda e: la.activation_patch(e.model, e.pairs, layers=[9]), r"layers=9 is out of range"),
    Case("patch no layers", lambda e: la.activation_patch(e.model, e.pairs, layers=[]), r"layers is empty"),
    Case("patch position out of range", lambda e: la.activation_patch(e.model, e.pairs, positions=[99]), r"positions: 99 is out of range for prompts of"),
    Case("patch position bool", lambda e: la.activation_patch(e.model, e.pairs, positions=[True]), r"positions: True is out of range"),
    Case("patch by_position=False on resid", lambda e: la.activation_patch(e.model, e.pairs, by_position=False), r"is patched by position"),
    Case("patch positions on heads", lambda e: la.activation_patch(e.model, e.pairs, site="z", positions=[1]), r"positions applies to by-position sweeps"),
    Case("patch config as dict", lambda e: la.activation_patch(e.model, e.pairs, config={"engine": "hooks"}), r"config must be a lensarith.PatchConfig"),
    Case("patch config as empty dict", lambda e: la.activation_patch(e.model, e.pairs, config={}), r"config must be a lensarith.PatchConfig"),
    Case("patch config engine typo", lambda e: la.PatchConfig(engine="fastest"), r"PatchConfig.engine must be 'auto', 'fast' or 'hooks'"),
    Case("patch config max_tokens 0", lambda e: la.PatchConfig(max_tokens=0), r"PatchConfig.max_tokens must be a positive int"),
    Case("patch config max_tokens bool", lambda e: la.PatchConfig(max_tokens=True), r"PatchConfig.max_tokens must be a positive int, got bool"),
    Case("patch metric returning a mean", lambda e: la.activation_patch(e.model, e.pairs, metric=_rr_metric),
         r"must return one number per example, shape \(2,\).*return per-example values, not their mean"),
    Case("patch metric raising", lambda e: la.activation_patch(e.model, e.pairs, metric=_boom_metric), r"the metric callable:_boom_metric raised ZeroDivisionError"),
    Case("patch metric of the wrong type", lambda e: la.activation_patch(e.model, e.pairs, metric=42), r"metric must be a name"),
    Case("attribution with ranks", lambda e: la.attribution_patch(e.model, e.pairs, metric="reciprocal_rank"), r"is piecewise constant, so its gradient is zero"),
    Case("attribution method typo", lambda e: la.attribution_patch(e.model, e.pairs, method="atp**"), r"method must be one of 'atp', 'atp\+qk', 'atp\*', 'relp', 'relp\+qk'.*got 'atp\*\*'"),
    Case("attribution method of the wrong type", lambda e: la.attribution_patch(e.model, e.pairs, method=None), r"method must be one of 'atp'.*got None"),
    Case("attribution config as dict", lambda e: la.attribution_patch(e.model, e.pairs, config={}), r"config must be a lensarith.PatchConfig"),
    Case("recovery of identical runs", lambda e: la.activation_patch(e.model, la.make_pairs(e.model, e.pairs.clean, e.pairs.clean), metric="recovery"),
         r"metric='recovery' is undefined"),
    Case("fast engine on a shortformer model", lambda e: la.activation_patch(e.shortformer, la.make_pairs(e.shortformer, torch.tensor([[1, 2, 3]]), torch.tensor([[1, 4, 3]]), answers=[1], corrupted_answers=[2]),
                                                                          config=la.PatchConfig(engine="fast")), r"engine='fast' does not support this model \(shortformer positional embeddings\)"),
    Case("pairs with an unknown answer", lambda e: la.make_pairs(e.model, ["a b"], ["a c"], answers=" Zzyzx"), r"answers: ' Zzyzx' is not in the model's vocabulary"),
    Case("pairs with too few answers", lambda e: la.make_pairs(e.model, ["a b", "c d"], ["a c", "c e"], answers=[5]), r"answers needs one token per prompt \(2\)"),
    Case("pair nothing", lambda e: la.pair_examples(e.model, []), r"examples must be a non-empty list of lensarith.Example"),
    Case("pair strings", lambda e: la.pair_examples(e.model, ["a"]), r"examples must be a non-empty list of lensarith.Example"),
    Case("pair unequal lists", lambda e: la.pair_examples(e.model, e.prompts, corrupted=e.prompts[:2]), r"examples has 4 rows but corrupted has 2"),
    Case("pair a single example", lambda e: la.pair_examples(e.model, e.prompts[:1]), r"no pairs: none of the 1 examples has a partner"),
    Case("pair n=0", lambda e: la.pair_examples(e.model, e.prompts, n=0), r"n must be None or a positive int, got 0"),
    Case("pairs indexed by an int", lambda e: e.pairs[0], r"PromptPairs supports slicing only"),
    Case("pair token spec typo", lambda e: la.activation_patch(e.model, e.pairs, metric=la.patching.LogitDiff("cleen")), r"LogitDiff.answer: 'cleen' is not in the model's vocabulary"),
    # ---- o-vectors and transplant
    Case("extract layer out of range", lambda e: la.extract_o_vector(e.model, e.prompts, layer=9), r"layer=9 is out of range"),
    Case("extract layer bool", lambda e: la.extract_o_vector(e.model, e.prompts, layer=True), r"layer must be an int, got True"),
    Case("extract reduce typo", lambda e: la.extract_o_vector(e.model, e.prompts, layer=1, reduce="sum"), r"reduce must be 'none' \(one vector per prompt\) or 'mean', got 'sum'"),
    Case("extract position past the end", lambda e: la.extract_o_vector(e.model, e.prompts, layer=1, position=99), r"position=99 is past the end"),
    Case("extract batch_size 0", lambda e: la.extract_o_vector(e.model, e.prompts, layer=1, batch_size=0), r"batch_size must be a positive int"),
    Case("o from a 3-d tensor", lambda e: la.OVector.from_tensor(torch.zeros(3, 3, 3)), r"vector must be a float tensor \[d_model\] or \[source, d_model\], got shape \(3, 3, 3\)"),
    Case("o from an int tensor", lambda e: la.OVector.from_tensor(torch.zeros(5, dtype=torch.long)), r"vector must be a float tensor"),
    Case("o from NaN", lambda e: la.OVector.from_tensor(torch.full((32,), NAN)), r"vector holds non-finite values \(NaN or inf\)"),
    Case("o from a list", lambda e: la.OVector.from_tensor([1.0, 2.0]), r"vector must be a float tensor .* got list"),
    Case("o select out of range", lambda e: e.o_multi.select(5), r"index=5 is out of range: o holds 3 source vectors"),
    Case("o single of several", lambda e: e.o_multi.single(), r"o holds 3 source vectors .* pick one with o.select\(i\) or average them with o.mean\(\)"),
    Case("o loaded for a wider model", lambda e: la.OVector.load(e.o_dir, model=e.wide), r"o has d_model=32 but the model has d_model=48"),
    Case("o loaded for another architecture", lambda e: la.OVector.load(e.o_dir, model=e.other_arch), r"o was extracted from another architecture .* config hash"),
    Case("o loaded from a lens result", lambda e: la.OVector.load(e.lens_dir), r"holds a 'logit_lens' result, not an o-vector"),
    Case("transplant into nothing", lambda e: la.transplant(e.model, e.o, []), r"contexts is empty: give at least one Example"),
    Case("transplant into strings", lambda e: la.transplant(e.model, e.o, ["plain text"]), r"contexts must be lensarith.Example objects carrying the answer"),
    Case("transplant mode typo", lambda e: la.transplant(e.model, e.o, e.ctx, mode="swap"), r"mode must be one of 'replace', 'add', 'subtract', got 'swap'"),
    Case("transplant positions typo", lambda e: la.transplant(e.model, e.o, e.ctx, positions="first"), r"positions must be one of 'all', 'last', got 'first'"),
    Case("transplant infinite scale", lambda e: la.transplant(e.model, e.o, e.ctx, scale=float("inf")), r"scale must be a finite number, got inf"),
    Case("transplant scale string", lambda e: la.transplant(e.model, e.o, e.ctx, scale="2"), r"scale must be a finite number, got '2'"),
    Case("transplant layer out of range", lambda e: la.transplant(e.model, e.o, e.ctx, layers=[9]), r"layers=\[9\]: layer 9 is out of range"),
    Case("transplant layers string", lambda e: la.transplant(e.model, e.o, e.ctx, layers="1"), r"layers must be an int, a range or a list of ints, got '1'"),
    Case("transplant layers bool", lambda e: la.transplant(e.model, e.o, e.ctx, layers=True), r"layers must be an int, a range or a list of ints, got True"),
    Case("transplant no layers", lambda e: la.transplant(e.model, e.o, e.ctx, layers=[]), r"layers is empty"),
    Case("transplant a string o", lambda e: la.transplant(e.model, "o", e.ctx), r"o must be an OVector \(extract_o_vector\) or a tensor \[d_model\], got str"),
    Case("transplant a vector of another width", lambda e: la.transplant(e.model, torch.zeros(7), e.ctx, layers=[1]), r"o has d_model=7 but the model has d_model=32"),
    Case("transplant without layers for a raw vector", lambda e: la.transplant(e.model, torch.zeros(32), e.ctx), r"layers is needed: o has no source layer"),
    Case("transplant multi-token contexts", lambda e: la.transplant(e.model, e.o, la.transplant_contexts(la.build_prompts("capitals", n=12))),
         r"contexts: \d+ of 12 examples have a multi-token argument or answer whose first token does not identify the "
         r"answer \(.*\): .*pass drop_multi_token=True"),
    Case("transplant batch_size 0", lambda e: la.transplant(e.model, e.o, e.ctx, batch_size=0), r"batch_size must be a positive int"),
    Case("transplant drop flag string", lambda e: la.transplant(e.model, e.o, e.ctx, drop_multi_token="yes"), r"drop_multi_token must be True or False"),
    Case("contexts kind typo", lambda e: la.transplant_contexts("capitals", kind="zero"), r"kind must be one of 'random', 'zero_shot', got 'zero'"),
    Case("contexts n=0", lambda e: la.transplant_contexts("capitals", n=0), r"n must be None or a positive int, got 0"),
    Case("contexts of strings", lambda e: la.transplant_contexts(["x"]), r"task must be a task name or a non-empty list of Examples"),
    Case("zero-shot contexts of examples", lambda e: la.transplant_contexts(e.prompts, kind="zero_shot"), r"kind='zero_shot' needs a task name"),
    Case("contexts with everything excluded", lambda e: la.transplant_contexts(e.prompts[:1], exclude=[e.prompts[0].argument]), r"no contexts left"),
    Case("search config as dict", lambda e: la.find_layers(e.model, "capitals", config={"n_contexts": 4}), r"config must be a lensarith.SearchConfig"),
    Case("search source out of range", lambda e: la.find_layers(e.model, e.caps, source=99, config=la.SearchConfig(n_prompts=8, n_contexts=4)),
         r"source=99 is out of range: there are \d+ usable task prompts"),
    Case("search source unknown argument", lambda e: la.find_layers(e.model, e.caps, source=" Atlantis", config=la.SearchConfig(n_prompts=8, n_contexts=4)),
         r"source=' Atlantis' matches no usable task prompt's argument"),
    Case("search method typo", lambda e: la.SearchConfig(method="grad"), r"SearchConfig method must be one of 'sweep', 'dla', got 'grad'"),
    Case("search n_prompts 0", lambda e: la.SearchConfig(n_prompts=0), r"SearchConfig n_prompts must be a positive int, got 0"),
    Case("search screen bool", lambda e: la.SearchConfig(screen=True), r"SearchConfig screen must be None or a positive int, got bool True"),
    Case("search scale NaN", lambda e: la.SearchConfig(scale=NAN), r"SearchConfig scale must be a finite number, got nan"),
    Case("search apply mode typo", lambda e: la.SearchConfig(apply_mode="subtract"), r"SearchConfig apply_mode must be one of 'add', 'replace'"),
    Case("search batch_size 0", lambda e: la.find_layers(e.model, "capitals", batch_size=0), r"batch_size must be a positive int"),
    Case("transplant config mode typo", lambda e: la.TransplantConfig(mode="x"), r"TransplantConfig mode must be one of"),
    Case("transplant config layers int", lambda e: la.TransplantConfig(layers=3), r"TransplantConfig layers must be None or a sequence of ints, got 3"),
    Case("transplant config n_contexts 0", lambda e: la.TransplantConfig(n_contexts=0), r"TransplantConfig n_contexts must be None or a positive int"),
    Case("transplant config layer bool", lambda e: la.TransplantConfig(layer=True), r"TransplantConfig layer must be None or an int, got bool True"),
    Case("transplant config contexts typo", lambda e: la.TransplantConfig(contexts="random_token"), r"TransplantConfig contexts must be one of 'random', 'zero_shot'"),
    Case("experiment config as dict", lambda e: la.transplant_experiment(e.model, "capitals", {"layer": 1}), r"config must be a lensarith.TransplantConfig"),
    Case("experiment layer out of range", lambda e: la.transplant_experiment(e.model, "capitals", la.TransplantConfig(layer=9)), r"config.layer=9 is out of range"),
    Case("experiment search as dict", lambda e: la.transplant_experiment(e.model, "capitals", search={}), r"search must be None or a lensarith.SearchConfig"),
    Case("decode k=0", lambda e: la.vectors.decode_o_vector(e.model, e.o, k=0), r"k must be an int in 1\.\."),
    Case("consistency of a number", lambda e: la.vectors.o_vector_consistency(42), r"vectors must be an OVector, a mapping of name to OVector or a list"),
    Case("consistency of nothing", lambda e: la.vectors.o_vector_consistency({}), r"vectors is empty"),
    Case("consistency of a tensor entry", lambda e: la.vectors.o_vector_consistency({"a": torch.zeros(3)}), r"vectors\['a'\] must be an OVector"),
    Case("analogy space typo", lambda e: la.vectors.o_vector_analogy(e.model, e.o, "capitals", space="both"), r"space must be one of 'unembed', 'embed', got 'both'"),
    Case("analogy n_shuffles 0", lambda e: la.vectors.o_vector_analogy(e.model, e.o, "capitals", n_shuffles=0), r"n_shuffles must be a positive int"),
    # ---- ablation
    Case("ablate a task without extractive prompts", lambda e: la.ffn_ablation(e.model, "past"), r"extractive prompts exist for capitals, us_capitals and uppercase"),
    Case("ablate mode typo", lambda e: la.ffn_ablation(e.model, "capitals", mode="half"), r"mode must be 'zero' or 'mean', got 'half'"),
    Case("ablate steps 0", lambda e: la.ffn_ablation(e.model, "capitals", steps=0), r"steps must be a positive int \(the paper removes one sixth at a time: 6\), got 0"),
    Case("ablate n=0", lambda e: la.ffn_ablation(e.model, "capitals", n=0), r"n must be None or a positive int, got 0"),
    Case("ablate an empty mapping", lambda e: la.ffn_ablation(e.model, {}), r"prompts is an empty mapping"),
    Case("ablate an empty set", lambda e: la.ffn_ablation(e.model, {"a": []}), r"prompt set 'a' is empty"),
    Case("ablate a set of strings", lambda e: la.ffn_ablation(e.model, {"a": ["x"]}), r"prompt set 'a' must hold lensarith.Example objects"),
    Case("ablate a number", lambda e: la.ffn_ablation(e.model, 42), r"prompts must be a task name, a mapping"),
    Case("removal steps bool", lambda e: la.ablation.removal_counts(24, steps=True), r"steps must be a positive int"),
    Case("ablation drop of an unknown set", lambda e: e.ablation.drop("nope"), r"set='nope' is unknown; sets: abstractive, extractive"),
    Case("ablation drop at a missing step", lambda e: e.ablation.drop("abstractive", removed=5), r"removed=5 is not a step of this result"),
    # ---- recipes and results
    Case("recipe name with a space", lambda e: la.register_recipe("bad name"), r"recipe name must be an identifier-like string"),
    Case("recipe that is not a function", lambda e: la.register_recipe("not_a_function")(42), r"decorates a function fn\(model, prompts, \*\*options\) -> Result"),
    Case("recipe registered twice", lambda e: la.register_recipe("logit_lens")(lambda m, p: None), r"a recipe named 'logit_lens' is already registered"),
    Case("unknown recipe", lambda e: la.run_recipe("nope", e.model, e.prompts), r"no recipe named 'nope'; registered:"),
    Case("recipe returning a number", _bad_recipe, r"recipe 'returns_42' returned int \(42\); a recipe must return a lensarith.Result"),
    Case("result with too few axis names", lambda e: la.Result({"x": torch.zeros(2, 3)}, {"x": ("a",)}), r"needs one axis name per dimension"),
    Case("result of lists", lambda e: la.Result({"x": [1, 2]}, {"x": ("a",)}), r"tensors must be a dict of name -> torch.Tensor"),
    Case("load a missing result", lambda e: la.Result.load(e.tmp / "missing"), r"is not a saved lensarith result \(no result.json\)"),
    Case("load a result with corrupt JSON", lambda e: la.Result.load(e.broken_result("json")), r"result.json' is corrupted or not a lensarith result file \(JSONDecodeError"),
    Case("load a result with truncated tensors", lambda e: la.Result.load(e.broken_result("tensors")), r"tensors.safetensors' is corrupted or truncated"),
    Case("load a result missing its axes", lambda e: la.Result.load(e.broken_result("keys")), r"result.json' is corrupted or not a lensarith result file \(KeyError: 'axes'\)"),
    Case("load a result from a number", lambda e: la.Result.load(42), r"path must be a folder path \(str or Path\), got int"),
    Case("load a lens result as a patch result", lambda e: la.patching.PatchResult.load(e.lens_dir), r"holds a 'logit_lens' result, not 'activation_patch'"),
    # ---- models
    Case("load a model from a number", lambda e: la.load_model(123), r"name_or_path must be a TransformerLens hub name .* got 123 \(int\)"),
    Case("load a missing directory", lambda e: la.load_model(str(e.tmp / "no-such-dir")), r"does not exist", exc=la.ModelNotAvailableError),
    Case("load an unknown hub name", lambda e: la.load_model("no-such-model-xyz"), r"is neither a local directory, 'organism', nor a TransformerLens hub name",
         exc=la.ModelNotAvailableError),
    Case("load a directory without config", lambda e: la.load_model(str(e.tmp)), r"is not in lensarith's format", exc=la.ModelNotAvailableError),
    Case("load with an unknown backend", lambda e: la.load_model("organism", backend="vllm"), r"backend must be None \(TransformerLens\) or 'nnsight', got 'vllm'"),
    Case("load remote without nnsight", lambda e: la.load_model("organism", remote=True), r"remote=True runs the model on NDIF through nnsight: pass backend='nnsight'"),
    Case("load remote as a string", lambda e: la.load_model("organism", backend="nnsight", remote="yes"), r"remote must be True or False, got 'yes'"),
    Case("load with device and device_map", lambda e: la.load_model("organism", device="cpu", device_map="auto"), r"give device or device_map, not both"),
    Case("load with a numeric device_map", lambda e: la.load_model("organism", device_map=3), r"device_map must be None, a str such as 'auto' or a dict, got 3"),
    Case("load with zero devices", lambda e: la.load_model("organism", n_devices=0), r"n_devices must be a positive int, got 0"),
    # ---- renderers
    Case("heatmap of a missing tensor", lambda e: la.viz.heatmap(e.lens, tensor="nope"), r"tensor='nope' is not in this result"),
    Case("coloured tokens of the wrong count", lambda e: la.viz.colored_tokens(["a"], [1, 2]), r"colored_tokens: 1 tokens but 2 values"),
    Case("attention of no heads", lambda e: la.viz.attention_patterns(e.model, e.prompts[0], []), r"heads is empty"),
    Case("attention of a head out of range", lambda e: la.viz.attention_patterns(e.model, e.prompts[0], [(0, 9)]), r"head 9 is out of range"),
    Case("attention of a layer out of range", lambda e: la.viz.attention_patterns(e.model, e.prompts[0], [(9, 0)]), r"heads layer=9 is out of range"),
    Case("lens table of a missing example", lambda e: la.viz.logit_lens_table(e.lens, example=99), r"example=99 is out of range: the result holds 4 prompts"),
    Case("report widget of a number", lambda e: la.viz.Report("x").add_widget(42), r"add_widget needs a lensarith.viz.circuits.Widget"),
    Case("token grid of mismatched columns", lambda e: la.viz.plots.token_grid([0, 1], {"a": ["x"]}), r"column 'a' has 1 tokens for 2 layers"),
    # ---- the paper's reproduction
    Case("reproduce n=1", lambda e: la.paper.ReproduceConfig(n=1), r"n must be None or an int >= 2"),
    Case("reproduce batch_size 0", lambda e: la.paper.ReproduceConfig(batch_size=0), r"batch_size must be a positive int"),
    Case("reproduce config as dict", lambda e: la.paper.reproduce(e.model, e.tmp / "r", {}), r"config must be a lensarith.paper.ReproduceConfig"),
    Case("reproduce several models as a list", lambda e: __import__("lensarith.paper.reproduce", fromlist=["x"]).reproduce_models([e.model], e.tmp / "r"), r"models must be a non-empty dict"),
    Case("reproduce several models, a path as name", lambda e: __import__("lensarith.paper.reproduce", fromlist=["x"]).reproduce_models({"a/b": e.model}, e.tmp / "r"), r"model names become folder names"),
    Case("cli reproduce empty --model", cli_call(["reproduce", "--model", ",", "--out", "{tmp}/rep"]), r"--model is empty"),
    # ---- the command line (exit 2, one line on stderr)
    Case("cli task typo", cli_call(["lens", "--task", "nope"]), r"argument --task: invalid choice: 'nope'"),
    Case("cli n=0", cli_call(["lens", "--n", "0"]), r"expected a positive integer, got '0'"),
    Case("cli n not a number", cli_call(["lens", "--n", "x"]), r"expected a positive integer, got 'x'"),
    Case("cli reversed layer range", cli_call(["transplant", "--layers", "3-1"]), r"layers range '3-1' runs backwards"),
    Case("cli layer range of letters", cli_call(["transplant", "--layers", "a-b"]), r"layers must look like 18-23 or 18,19,20, got 'a-b'"),
    Case("cli layer out of range", cli_call(["transplant", "--model", "tiny", "--layer", "99", "--n", "4", "--out", "{tmp}/cli"]), r"layer=99 is out of range"),
    Case("cli site typo", cli_call(["patch", "--site", "mlp"]), r"argument --site: invalid choice: 'mlp'"),
    Case("cli unknown model", cli_call(["lens", "--model", "no-such-model-xyz", "--out", "{tmp}/cli"]), r"no-such-model-xyz"),
    Case("cli out is a file", cli_call(["lens", "--model", "tiny", "--out", "{tmp}/a-file"]), r"exists and is not a directory"),
    Case("cli out not writable", cli_call(["lens", "--model", "tiny", "--out", "/proc/lensarith-out"]), r"--out '/proc/lensarith-out' is not writable"),
    Case("cli preset typo", cli_call(["organism-train", "--preset", "nope", "--out", "{tmp}/org"]), r"argument --preset: invalid choice: 'nope' \(choose from 'full'"),
    Case("cli ablate task without extractive prompts", cli_call(["ablate", "--task", "past"]), r"argument --task: invalid choice: 'past'"),
    Case("cli unknown command", cli_call(["nope-command"]), r"invalid choice: 'nope-command'"),
    Case("cli no command", cli_call([]), r"the following arguments are required: COMMAND"),
    Case("cli reproduce n=1", cli_call(["reproduce", "--model", "tiny", "--n", "1", "--out", "{tmp}/rep"]), r"n must be None or an int >= 2"),
    Case("cli infinite scale", cli_call(["transplant", "--model", "tiny", "--layer", "1", "--scale", "inf", "--n", "4", "--out", "{tmp}/cli"]),
         r"scale must be a finite number, got inf"),
    Case("cli stream typo", cli_call(["lens", "--stream", "x"]), r"argument --stream: invalid choice: 'x'"),
    Case("cli metric typo", cli_call(["patch", "--metric", "logitdiff"]), r"argument --metric: invalid choice"),
    Case("cli steps 0", cli_call(["ablate", "--steps", "0"]), r"expected a positive integer, got '0'"),
    Case("cli direction typo", cli_call(["patch", "--direction", "sideways"]), r"argument --direction: invalid choice"),
    Case("cli broken model directory", cli_call(["lens", "--model", "{tmp}", "--out", "{tmp}/cli"]), r"is not in lensarith's format"),
]


CASES_SINCE_FIRST_AUDIT: list[Case] = [
    # ---- few-shot prompts
    Case("few-shot shuffled labels with one shot", lambda e: V.few_shot_prompts("capitals", n_shots=1, n=2, shuffle_labels=True),
         r"shuffle_labels=True needs n_shots >= 2"),
    Case("few-shot negative shots", lambda e: V.few_shot_prompts("capitals", n_shots=-1), r"n_shots must be a non-negative int, got -1"),
    Case("few-shot unknown task", lambda e: V.few_shot_prompts("capitalz"), r"task='capitalz' is unknown; valid tasks"),
    Case("few-shot queries of strings", lambda e: V.few_shot_prompts("capitals", queries=["Poland"]), r"queries must be task rows"),
    Case("few-shot too many shots", lambda e: V.few_shot_prompts("capitals", n_shots=10 ** 4, n=1), r"n_shots=10000 needs at least 10000 demonstration rows"),
    Case("few-shot shuffle_labels string", lambda e: V.few_shot_prompts("capitals", shuffle_labels="yes"), r"shuffle_labels must be True or False"),
    Case("few-shot n=0", lambda e: V.few_shot_prompts("capitals", n=0), r"n must be None or a positive int, got 0"),
    Case("few-shot seed overflows", lambda e: V.few_shot_prompts("capitals", n=1, seed=BIG), r"seed must be an int in"),
    # ---- head effects and function vectors
    Case("head_effects prompts without shuffled", lambda e: V.head_effects(e.model, e.caps[:2]), r"shuffled is needed"),
    Case("head_effects one shot", lambda e: V.head_effects(e.model, "capitals", n_prompts=2, n_shots=1), r"shuffle_labels=True needs n_shots >= 2"),
    Case("head_effects heads_per_forward 0", lambda e: V.head_effects(e.model, "capitals", heads_per_forward=0), r"heads_per_forward must be a positive int"),
    Case("head_effects unknown task", lambda e: V.head_effects(e.model, "capitalz"), r"task='capitalz' is unknown"),
    Case("head_effects prompts without answers", lambda e: V.head_effects(e.model, ["Q: a\nA:"], ["Q: b\nA:"]), r"clean: every prompt needs an answer"),
    Case("head_effects n_prompts bool", lambda e: V.head_effects(e.model, "capitals", n_prompts=True), r"n_prompts must be a positive int, got bool True"),
    Case("head_effects seed overflows", lambda e: V.head_effects(e.model, "capitals", n_prompts=2, n_shots=2, seed=BIG), r"seed must be an int in"),
    Case("head effects top k=0", lambda e: e.effects.top(0), r"k must be a positive int, got 0"),
    Case("function_vector of a tensor", lambda e: V.function_vector(e.model, torch.zeros(2, 4)), r"effects must be a HeadEffects result"),
    Case("function_vector more heads than the model", lambda e: V.function_vector(e.model, e.effects, n_heads=9), r"n_heads=9 is more than the model's 8 heads"),
    Case("function_vector n_heads 0", lambda e: V.function_vector(e.model, e.effects, n_heads=0), r"n_heads must be a positive int, got 0"),
    Case("function_vector of another architecture's effects", lambda e: V.function_vector(e.wide, e.effects, n_heads=2),
         r"effects were measured on another architecture"),
    Case("function_vector of another model's effects", _fv_from_twin_effects, r"effects were measured on another model"),
    Case("extract_function_vector on an nnsight model", lambda e: V.extract_function_vector(e.nn, "capitals", n_heads=2, n_prompts=2, n_shots=2),
         r"nnsight"),
    Case("function vector loaded as a task vector", lambda e: V.TaskVector.load(e.fv.save(e.tmp / "fv")), r"holds a 'function_vector' result, not a 'task_vector'"),
    Case("function vector loaded for another model", lambda e: V.FunctionVector.load(e.fv.save(e.tmp / "fv2"), model=e.wide),
         r"function_vector has d_model=32 but the model has d_model=48"),
    Case("function vector select out of range", lambda e: e.fv.select(5), r"index"),
    # ---- task vectors
    Case("task vector layer out of range", lambda e: V.extract_task_vector(e.model, "capitals", 5), r"layer=5 is out of range for a model with 2 layers"),
    Case("task vector layer far negative", lambda e: V.extract_task_vector(e.model, "capitals", -3), r"layer=-3 is out of range"),
    Case("task vector layer bool", lambda e: V.extract_task_vector(e.model, "capitals", True), r"layer must be an int, got True"),
    Case("task vector site typo", lambda e: V.extract_task_vector(e.model, "capitals", 1, site="resid"), r"site must be one of 'resid_pre', 'resid_mid', 'resid_post'"),
    Case("task vector at mlp_out", lambda e: V.extract_task_vector(e.model, "capitals", 1, site="mlp_out"), r"site must be one of 'resid_pre'"),
    Case("task vector reduce typo", lambda e: V.extract_task_vector(e.model, "capitals", 1, reduce="sum"), r"reduce must be one of 'mean', 'none', got 'sum'"),
    Case("task vector of a task-name typo", lambda e: V.extract_task_vector(e.model, "capitalz", 1), r"prompts='capitalz' is not a task name \(did you mean 'capitali[sz]e?'\?\)"),
    Case("task vector n_prompts 0", lambda e: V.extract_task_vector(e.model, "capitals", 1, n_prompts=0), r"n_prompts must be a positive int, got 0"),
    Case("task vector batch_size 0", lambda e: V.extract_task_vector(e.model, "capitals", 1, batch_size=0), r"batch_size must be a positive int"),
    Case("task vector seed overflows", lambda e: V.extract_task_vector(e.model, "capitals", 1, n_prompts=2, n_shots=2, seed=BIG), r"seed must be an int in"),
    # ---- applying vectors
    Case("application site typo", lambda e: V.Application(e.o, site="mlp"), r"site must be one of 'resid_pre'"),
    Case("application mode typo", lambda e: V.Application(e.o, mode="subtract"), r"mode must be one of 'add', 'replace', got 'subtract'"),
    Case("application positions typo", lambda e: V.Application(e.o, positions="first"), r"positions must be one of 'last', 'all'"),
    Case("application scale NaN", lambda e: V.Application(e.o, scale=NAN), r"scale must be a finite number, got nan"),
    Case("application scale bool", lambda e: V.Application(e.o, scale=True), r"scale must be a finite number, got True"),
    Case("apply_vector layer out of range", lambda e: V.apply_vector(e.model, e.o, e.ctx4, layers=[5]), r"layer.*5 is out of range"),
    Case("apply_vector layer far negative", lambda e: V.apply_vector(e.model, e.o, e.ctx4, layers=-3), r"-3 is out of range"),
    Case("apply_vector function vector without layers", lambda e: V.apply_vector(e.model, e.fv, e.ctx4), r"layers is needed: this FunctionVector has no source layer"),
    Case("apply_vector o-vector at z", lambda e: V.apply_vector(e.model, e.o, e.ctx4, site="z"), r"site='z' puts a function vector's head means"),
    Case("apply_vector z with layers", lambda e: V.apply_vector(e.model, e.fv, e.ctx4, site="z", layers=[1]), r"with site='z' each head goes in at its own layer"),
    Case("apply_vectors of a list", lambda e: V.apply_vectors(e.model, [V.Application(e.o)], e.ctx4), r"applications must be a non-empty mapping"),
    Case("apply_vectors named control", lambda e: V.apply_vectors(e.model, {"control": V.Application(e.o)}, e.ctx4), r"application names must be non-empty strings other than 'control'"),
    Case("apply_vectors of a vector", lambda e: V.apply_vectors(e.model, {"o": e.o}, e.ctx4), r"applications\['o'\] must be an Application"),
    Case("apply_vector to plain strings", lambda e: V.apply_vector(e.model, e.o, ["Q: a\nA:"]), r"contexts must be lensarith.Example objects carrying the answer"),
    Case("apply_vector of a tensor of the wrong width", lambda e: V.apply_vector(e.model, torch.zeros(7), e.ctx4, layers=[1]), r"7"),
    Case("apply_vector of another model's vector", lambda e: V.apply_vector(e.wide, e.o, e.ctx4), r"d_model=32 but the model has d_model=48"),
    Case("apply_vector readout typo", lambda e: V.apply_vector(e.model, e.o, e.ctx4, readout_layers="last"), r"readout_layers must be one of 'final', 'all'"),
    Case("apply_vector baseline string", lambda e: V.apply_vector(e.model, e.o, e.ctx4, baseline="no"), r"baseline must be True or False"),
    Case("apply_vector seed overflows", lambda e: V.apply_vector(e.model, e.o, e.ctx4, seed=BIG), r"seed must be an int in"),
    Case("apply_vector of a NaN vector", _apply_nan_tensor, r"non-finite|vector holds NaN"),
    Case("apply_vector option typo", lambda e: V.apply_vector(e.model, e.o, e.ctx4, batchsize=4), r"batchsize.* is not an option of apply_vector"),
    Case("apply_vector batch_size 0", lambda e: V.apply_vector(e.model, e.o, e.ctx4, batch_size=0), r"batch_size must be a positive int"),
    Case("vector result unknown run", lambda e: e.applied.rank("nope"), r"run must be one of 'control', 'vector', 'vector:random', got 'nope'"),
    Case("vector result metric top0", lambda e: e.applied.metric("vector", "top0"), r"metric must be 'rr' or 'top<k>'"),
    Case("vector result ci minus unknown run", lambda e: e.applied.ci("vector", minus="nope"), r"run must be one of"),
    Case("vector result topk 0", lambda e: e.applied.topk("vector", k=0), r"k must be a positive int"),
    Case("vector result argument rank without arguments", lambda e: V.apply_vector(e.model, e.o, [E("x y z Poland", " Warsaw", None)]).rank("vector", "argument"),
         r"which='argument': the contexts carried no arguments"),
    Case("vector_interventions layer out of range", lambda e: V.vector_interventions(e.model, e.o, layers=[2]), r"2 is out of range"),
    # ---- layer sweeps
    Case("sweep layer key out of range", lambda e: V.sweep_layers(e.model, {5: e.o}, e.ctx4), r"vectors has layer 5, out of range for a model with 2 layers"),
    Case("sweep negative key out of range", lambda e: V.sweep_layers(e.model, {-3: e.o}, e.ctx4), r"vectors has layer -3, out of range"),
    Case("sweep the same layer twice", lambda e: V.sweep_layers(e.model, {1: e.o, -1: e.o}, e.ctx4), r"vectors names layer 1 twice"),
    Case("sweep string keys", lambda e: V.sweep_layers(e.model, {"1": e.o}, e.ctx4), r"vectors must map int layers to vectors"),
    Case("sweep an empty mapping", lambda e: V.sweep_layers(e.model, {}, e.ctx4), r"vectors is empty"),
    Case("sweep layers out of range", lambda e: V.sweep_layers(e.model, e.o, e.ctx4, layers=[5]), r"5 is out of range"),
    Case("sweep no scales", lambda e: V.sweep_layers(e.model, e.o, e.ctx4, scales=()), r"scales must be a non-empty list of numbers"),
    Case("sweep a bare scale", lambda e: V.sweep_layers(e.model, e.o, e.ctx4, scales=2.0), r"scales must be a non-empty list of numbers, got 2.0"),
    Case("sweep at z", lambda e: V.sweep_layers(e.model, e.fv, e.ctx4, site="z"), r"site='z' has no layer to sweep"),
    Case("sweep layers without vectors", lambda e: V.sweep_layers(e.model, {1: e.o}, e.ctx4, layers=[0]), r"vectors has no vector for layers \[0\]"),
    Case("sweep mode typo", lambda e: V.sweep_layers(e.model, e.o, e.ctx4, mode="sub"), r"mode must be one of 'add', 'replace'"),
    Case("sweep scale infinite", lambda e: V.sweep_layers(e.model, e.o, e.ctx4, scales=(1.0, float("inf"))), r"scales must be a finite number, got inf"),
    Case("sweep result curve of an unswept scale", lambda e: e.sweep.curve(scale=3.0), r"scale=3.0 was not swept"),
    Case("sweep result best metric typo", lambda e: e.sweep.best("rr"), r"metric must be one of 'mrr', 'top1'"),
    Case("sweep result curve variant typo", lambda e: e.sweep.curve("baseline"), r"variant must be one of 'vector', 'random'"),
    # ---- random baselines and intervals
    Case("same_norm_random of a tensor", lambda e: V.same_norm_random(torch.zeros(3)), r"vector must be an OVector, FunctionVector or TaskVector"),
    Case("same_norm_random seed overflows", lambda e: V.same_norm_random(e.o, seed=BIG), r"seed must be an int in"),
    Case("bootstrap of a list", lambda e: V.bootstrap_ci([1.0, 2.0]), r"values must be a tensor of per-context scores, got list"),
    Case("bootstrap of NaN", lambda e: V.bootstrap_ci(torch.tensor([1.0, NAN, 0.5])), r"values hold 1 non-finite value.*index 1"),
    Case("bootstrap of inf", lambda e: V.bootstrap_ci(torch.tensor([float("inf"), 1.0])), r"values hold 1 non-finite value.*index 0"),
    Case("bootstrap level 1.5", lambda e: V.bootstrap_ci(torch.ones(3), level=1.5), r"level must lie between 0 and 1, got 1.5"),
    Case("bootstrap of nothing", lambda e: V.bootstrap_ci(torch.ones(0)), r"bootstrap_ci needs at least one value"),
    Case("bootstrap n_boot 0", lambda e: V.bootstrap_ci(torch.ones(3), n_boot=0), r"n_boot must be a positive int"),
    Case("bootstrap seed overflows", lambda e: V.bootstrap_ci(torch.ones(3), seed=BIG), r"seed must be an int in"),
    # ---- the bench
    Case("bench kinds typo", lambda e: V.BenchConfig(kinds=("o", "fvx")), r"BenchConfig kinds must be one of 'o', 'fv', 'tv', got 'fvx'"),
    Case("bench kinds as a string", lambda e: V.BenchConfig(kinds="o"), r"BenchConfig kinds must be a non-empty tuple"),
    Case("bench shots not below sources", lambda e: V.BenchConfig(n_sources=4, n_shots=4), r"n_shots=4 needs n_sources > n_shots"),
    Case("bench infinite scale", lambda e: V.BenchConfig(o_scales=(1.0, float("inf"))), r"BenchConfig o_scales must hold finite numbers"),
    Case("bench seed overflows", lambda e: V.BenchConfig(seed=BIG), r"BenchConfig seed must be an int in"),
    Case("bench ks 0", lambda e: V.BenchConfig(ks=(0,)), r"BenchConfig ks must be a positive int"),
    Case("bench positions typo", lambda e: V.BenchConfig(positions="first"), r"BenchConfig positions must be one of 'last', 'all'"),
    Case("bench task vector at mlp_out", lambda e: V.BenchConfig(tv_site="mlp_out"), r"BenchConfig tv_site must be one of"),
    Case("bench layers out of range", lambda e: V.vector_bench(e.model, "capitals", V.BenchConfig.small_run(layers=(5,))),
         r"BenchConfig layers.*5.* out of range for a model with 2 layers"),
    Case("bench one shot", lambda e: V.vector_bench(e.model, "capitals", V.BenchConfig.small_run(n_shots=1, kinds=("fv",))),
         r"n_shots=1.*shuffle"),
    Case("bench config as dict", lambda e: V.vector_bench(e.model, "capitals", {"n": 4}), r"config must be a lensarith.vectors.BenchConfig"),
    Case("bench unknown task", lambda e: V.vector_bench(e.model, "capitalz"), r"task='capitalz' is unknown"),
    Case("bench on an nnsight model", lambda e: V.vector_bench(e.nn, "capitals", V.BenchConfig.small_run()), r"nnsight"),
    Case("bench result missing its runs", lambda e: V.BenchResult.load(e.bench_without("runs")), r"lacks meta\['runs'\]"),
    Case("bench result missing its config", lambda e: V.BenchResult.load(e.bench_without("config")).ci("zero_shot", "tv"), r"lacks meta\['config'\]"),
    Case("bench result context typo", lambda e: e.bench.values("random", "tv"), r"context must be one of 'zero_shot', got 'random'"),
    Case("bench result metric typo", lambda e: e.bench.values("zero_shot", "tv", "mrr"), r"metric must be 'rr' or 'top<k>'"),
    Case("bench result unknown kind", lambda e: e.bench.best("zero_shot", "fv"), r"kind must be one of 'tv', got 'fv'"),
    Case("bench table of a number", lambda e: V.bench_table(42), r"results must be a BenchResult or a mapping"),
    Case("compare no tasks", lambda e: V.compare_vectors(e.model, []), r"tasks must be a non-empty list of task names"),
    Case("compare tasks as a string", lambda e: V.compare_vectors(e.model, "capitals"), r"tasks must be a non-empty list of task names, got 'capitals'"),
    Case("single-token counts unknown task", lambda e: V.single_token_counts(e.model, ["capitalz"]), r"task='capitalz' is unknown"),
    # ---- saving never destroys what it did not write
    Case("save a vector over a file", lambda e: e.fv.save(e.file_at("notes.txt")), r"exists and is not a folder"),
    Case("save a vector into a folder of notes", lambda e: e.fv.save(e.folder_with_notes("notes-fv")), r"holds files lensarith did not write \(notes.txt\)"),
    Case("save a result over a file", lambda e: e.lens.save(e.file_at("lens.txt")), r"exists and is not a folder"),
    Case("save a result into a folder of notes", lambda e: e.lens.save(e.folder_with_notes("notes-lens")), r"holds files lensarith did not write"),
    Case("save a model over a file", lambda e: la.save_model(e.model, e.file_at("model.txt")), r"exists and is not a folder"),
    Case("save a model into a folder of notes", lambda e: la.save_model(e.model, e.folder_with_notes("notes-model")), r"holds files lensarith did not write"),
    # ---- the nnsight backend
    Case("nnsight torch_dtype ignored", lambda e: la.load_model("organism", backend="nnsight", torch_dtype="float16"), r"torch_dtype"),
    Case("nnsight unknown option", lambda e: la.load_model("organism", backend="nnsight", foo=1), r"foo"),
    Case("nnsight n_devices", lambda e: la.load_model("organism", backend="nnsight", n_devices=2), r"n_devices is TransformerLens's"),
    Case("nnsight device meta", lambda e: la.load_model("organism", backend="nnsight", device="meta"), r"device='meta'"),
    Case("wrap a module in train mode", lambda e: la.models.wrap_nnsight(__import__("copy").deepcopy(e.hf).train(), e.model.tokenizer),
         r"model is in train mode .*call model.eval\(\) before wrap_nnsight"),
    Case("wrap a number", lambda e: la.models.wrap_nnsight(42), r"model must be a Hugging Face causal LM or an nnsight model, got int"),
    Case("wrap a plain module", lambda e: la.models.wrap_nnsight(torch.nn.Linear(2, 2)), r"model must be a Hugging Face causal LM, got a Linear"),
    Case("wrap remote string", lambda e: la.models.wrap_nnsight(e.hf, e.model.tokenizer, remote="no"), r"remote must be True or False, got 'no'"),
    Case("wrap prepend_bos string", lambda e: la.models.wrap_nnsight(e.hf, e.model.tokenizer, prepend_bos="yes"), r"prepend_bos must be None, True or False"),
    Case("wrap name not a string", lambda e: la.models.wrap_nnsight(e.hf, e.model.tokenizer, name=42), r"name must be None or a string .* got 42"),
    Case("wrap tokenizer not a tokenizer", lambda e: _nnsight_tokenizer(e, 42), r"tokenizer must be a Hugging Face tokenizer"),
    Case("wrap a tokenizer of another vocabulary", lambda e: _nnsight_tokenizer(e, e.nn.tokenizer),
         r"tokenizer has 4683 tokens but the model's vocabulary has 3598"),
    Case("nnsight lens position past the end", lambda e: la.logit_lens(e.nn, e.prompts, position=99), r"position=99 is past the end"),
    Case("nnsight site out of range", lambda e: la.collect(e.nn, la.tokenize(e.nn, e.prompts), [Site("mlp_out", 9, "last")]), r"layer=9 is out of range"),
    Case("nnsight decomposition layer", lambda e: la.decompose_resid(e.nn, e.prompts, layer=99), r"layer=99 is out of range"),
    Case("nnsight transplant layer", lambda e: la.transplant_experiment(e.nn, "capitals", la.TransplantConfig(layer=99)), r"config.layer=99 is out of range"),
    # ---- attribution methods
    Case("attribution method typo atp**", lambda e: _atp(e, method="atp**"), r"method must be one of 'atp'"),
    Case("attribution method None", lambda e: _atp(e, method=None), r"method must be one of"),
    Case("relp with the hooks engine", lambda e: _atp(e, method="relp", config=la.PatchConfig(engine="hooks")),
         r"config.engine='hooks'.*method='relp'"),
    Case("atp* with the hooks engine", lambda e: _atp(e, method="atp*", config=la.PatchConfig(engine="hooks")), r"config.engine='hooks'"),
    Case("relp of a piecewise-constant metric", lambda e: _atp(e, method="relp", metric="reciprocal_rank"), r"piecewise constant"),
    Case("attribution metric with a NaN gradient", lambda e: _atp(e, metric=_nan_grad_metric), r"gradient of the metric is not finite at blocks\.\d\.hook_mlp_out"),
    Case("relp metric with a NaN gradient", lambda e: _atp(e, method="relp", metric=_nan_grad_metric), r"gradient of the metric is not finite"),
    Case("attribution metric returning NaN", lambda e: _atp(e, metric=_nan_metric), r"metric .*non-finite|metric returned NaN"),
    Case("patching metric returning NaN", lambda e: la.activation_patch(e.model, e.pairs, site="mlp_out", metric=_nan_metric), r"metric .*non-finite|metric returned NaN"),
    Case("attribution metric of the wrong shape", lambda e: _atp(e, metric=lambda logits: logits.sum()), r"metric"),
    Case("attribution layers out of range", lambda e: _atp(e, layers=[7]), r"7 is out of range"),
    Case("attribution site typo", lambda e: la.attribution_patch(e.model, e.pairs, site="mlp"), r"site"),
    Case("attribution direction typo", lambda e: _atp(e, direction="up"), r"direction must be 'denoise' \(clean into corrupted\) or 'noise'.* got 'up'"),
    Case("attribution of an nnsight model with relp", lambda e: la.attribution_patch(e.nn, la.pair_examples(e.nn, la.build_prompts("capitals", format="zero_shot", n=40), n=2),
                                                                                 site="mlp_out", method="relp"), r"method='relp'.*nnsight|nnsight.*relp"),
    Case("attribution of an nnsight model", lambda e: la.attribution_patch(e.nn, la.pair_examples(e.nn, la.build_prompts("capitals", format="zero_shot", n=40), n=2),
                                                                          site="mlp_out"), r"this recipe needs gradients through the model .* nnsight backend runs forward-only"),
    # ---- damaged copies of a bundled model folder
    Case("model folder without its tokenizer", lambda e: la.load_model(e.damaged("no-tokenizer")), r"has tokenizer_config.json but no tokenizer.json", exc=la.ModelNotAvailableError),
    Case("model folder with another model's tokenizer", lambda e: la.load_model(e.damaged("tiny-tokenizer")), r"tokenizer .* has 3598 tokens but .* d_vocab=4683",
         exc=la.ModelNotAvailableError),
    Case("model folder with a corrupt tokenizer", lambda e: la.load_model(e.damaged("corrupt-tokenizer")), r"tokenizer.json", exc=la.ModelNotAvailableError),
    Case("model folder seed overflows", lambda e: la.load_model(e.damaged("seed-overflow")), r"seed is .* but it must be an int in", exc=la.ModelNotAvailableError),
    Case("model folder seed as text", lambda e: la.load_model(e.damaged("seed-string")), r"seed is 'zero'", exc=la.ModelNotAvailableError),
    Case("model folder wider than its weights", lambda e: la.load_model(e.damaged("wider")), r"model.safetensors", exc=la.ModelNotAvailableError),
    Case("model folder truncated weights", lambda e: la.load_model(e.damaged("truncated-weights")), r"model.safetensors", exc=la.ModelNotAvailableError),
    Case("model folder config a list", lambda e: la.load_model(e.damaged("config-list")), r"holds a JSON list", exc=la.ModelNotAvailableError),
    Case("model folder dtype float8", lambda e: la.load_model(e.damaged("bad-dtype")), r"dtype is 'float8'", exc=la.ModelNotAvailableError),
    Case("planted folder with another model's tokenizer", lambda e: la.load_model(e.damaged("tiny-tokenizer", "organism-planted")),
         r"has 3598 tokens", exc=la.ModelNotAvailableError),
    Case("load on the meta device", lambda e: la.load_model("organism", device="meta"), r"device='meta' holds shapes, not weights: a model there cannot run"),
    Case("load on xpu", lambda e: la.load_model("organism", device="xpu"), r"device='xpu'"),
    Case("load planted on xpu", lambda e: la.load_model("organism-planted", device="xpu"), r"device='xpu'"),
    # ---- the command line
    Case("cli vectors --heads 1000", cli_call(["vectors", "--model", "tiny", "--task", "capitals", "--small", "--heads", "1000", "--out", "{tmp}/v"]),
         r"--heads 1000 is more than the model's 16 heads"),
    Case("cli vectors --shots 50", cli_call(["vectors", "--model", "tiny", "--task", "capitals", "--small", "--shots", "50", "--n-sources", "60", "--out", "{tmp}/v"]),
         r"--shots 50"),
    Case("cli vectors --shots 1 with fv", cli_call(["vectors", "--model", "tiny", "--task", "capitals", "--small", "--shots", "1", "--kinds", "fv", "--out", "{tmp}/v"]),
         r"--shots 1"),
    Case("cli vectors --n-sources 1", cli_call(["vectors", "--model", "tiny", "--task", "capitals", "--n-sources", "1", "--out", "{tmp}/v"]),
         r"n_sources must be an int >= 2|--n-sources"),
    Case("cli vectors unknown task", cli_call(["vectors", "--task", "capitalz"]), r"unknown task 'capitalz'"),
    Case("cli vectors kinds typo", cli_call(["vectors", "--kinds", "o,fvx"]), r"expected a comma-separated subset of o,fv,tv"),
    Case("cli vectors contexts typo", cli_call(["vectors", "--contexts", "rand"]), r"expected a comma-separated subset of random,zero_shot"),
    Case("cli vectors task twice", cli_call(["vectors", "--task", "capitals,capitals"]), r"a task is listed twice"),
    Case("cli vectors out is a file", cli_call(["vectors", "--model", "tiny", "--out", "{tmp}/a-file"]), r"exists and is not a directory"),
    Case("cli vectors seed overflows", cli_call(["vectors", "--model", "tiny", "--task", "capitals", "--small", "--seed", str(BIG), "--out", "{tmp}/v"]),
         r"seed must be an int in"),
    Case("cli patch damaged model", lambda e: e.damaged("no-tokenizer") and cli_call(["patch", "--model", "{tmp}/organism-no-tokenizer", "--out", "{tmp}/p"])(e),
         r"has tokenizer_config.json but no tokenizer.json"),
    Case("cli patch seed overflows", cli_call(["patch", "--model", "tiny", "--n", "2", "--seed", str(BIG), "--out", "{tmp}/p"]), r"seed must be an int in"),
    Case("cli transplant positions typo", cli_call(["transplant", "--positions", "first"]), r"argument --positions: invalid choice"),
    Case("cli transplant layers out of range", cli_call(["transplant", "--model", "tiny", "--layer", "1", "--layers", "0-9", "--n", "4", "--out", "{tmp}/t"]),
         r"out of range"),
    Case("cli transplant seed overflows", cli_call(["transplant", "--model", "tiny", "--layer", "1", "--n", "4", "--seed", str(BIG), "--out", "{tmp}/t"]),
         r"seed must be an int in"),
    Case("reproduce into a folder of notes", lambda e: la.paper.reproduce(e.model, e.folder_with_notes("notes-reproduce"),
                                                                        la.paper.ReproduceConfig.small_run(n=2)),
         r"holds files lensarith did not write \(notes.txt\)"),
    Case("cli ablate mode typo", cli_call(["ablate", "--mode", "half"]), r"argument --mode: invalid choice"),
    Case("cli ablate into a folder of notes", lambda e: e.folder_with_notes("notes-cli/ablate-capitals") and cli_call(["ablate", "--model", "tiny", "--n", "6", "--steps", "2", "--out", "{tmp}/notes-cli"])(e),
         r"holds files lensarith did not write"),
]

CASES = CASES + CASES_SINCE_FIRST_AUDIT


def run_case(case: Case, env: Env) -> tuple[str, str]:
    """``(outcome, detail)``: outcome is ``clear`` (the expected error type and message, or the
    expected warning), ``report`` (a LensarithWarning where an error was expected), ``traceback``
    (another exception, or an unclear message), or ``silent`` (nothing raised or warned)."""
    import re
    import warnings

    (env.tmp / "a-file").write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            case.call(env)
        except CLIExit as exc:
            lines = [ln for ln in exc.stderr.strip().splitlines() if ln.strip()]
            ok = exc.rc == 2 and len(lines) == 1 and lines[0].startswith("lensarith: error:") and re.search(case.match, lines[0])
            if ok:
                return "clear", lines[0]
            return ("traceback" if "Traceback" in exc.stderr or exc.rc not in (0, 2) else
                    "silent" if exc.rc == 0 else "unclear"), str(exc)[:300]
        except la.LensarithError as exc:
            if case.expect == ERROR and isinstance(exc, case.exc) and re.search(case.match, str(exc)):
                return "clear", str(exc)
            return "unclear", f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # noqa: BLE001 - the point is to classify
            return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    warned = [w for w in caught if issubclass(w.category, getattr(la, "LensarithWarning", UserWarning))]
    if warned:
        text = str(warned[0].message)
        if case.expect == WARNING and re.search(case.match, text):
            return "clear", text
        return "report", text
    return "silent", ""


def main(argv: list[str] | None = None) -> None:
    """Run every case (outside pytest, so no runtime type-checking hook intervenes, as for a
    user) and write ``{name: [outcome, detail]}`` as JSON to the path given, or print counts."""
    import argparse
    import collections
    import sys

    ap = argparse.ArgumentParser(description="run the bad-input table")
    ap.add_argument("--json", help="write the outcomes here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    env = Env()
    results = {c.name: run_case(c, env) for c in CASES}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    counts = collections.Counter(outcome for outcome, _ in results.values())
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("clear", "report", "unclear", "traceback", "silent")))
    for name, (outcome, detail) in results.items():
        if outcome != "clear":
            print(f"  {outcome:9} {name}: {detail[:160]}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()


__all__ = ["CASES", "Case", "Env", "run_case"]
