import json
import subprocess
import sys
import time

import pytest
import torch

import lensarith as la
from lensarith.models import cfg_from_json as _cfg_from_json
from lensarith.models import cfg_to_json as _cfg_to_json


def test_word_tokenizer_end_to_end(model):
    toks = model.to_str_tokens("Q: What is the capital of Poland?\nA:")
    assert toks[0] == "<bos>"  # BOS is one special token, not '<', 'bos', '>'
    assert toks[1:] == ["Q", ":", "What", "is", "the", "capital", "of", "Poland", "?", "\n", "A", ":"]
    assert model.to_single_token(" Warsaw") == model.to_single_token("Warsaw")
    assert model.to_tokens("Warsaw", prepend_bos=False).shape == (1, 1)
    assert model.tokenizer.bos_token_id == 1 and model.tokenizer.pad_token_id == 3
    assert model.to_string(model.to_tokens("Poland", prepend_bos=False)[0]) == "Poland"
    unk = model.to_tokens("Zzyzzxq", prepend_bos=False)[0, 0]
    assert int(unk) == model.tokenizer.unk_token_id


def test_save_load_roundtrip(model, tmp_path):
    path = la.save_model(model, tmp_path / "m", extra={"note": "tiny"})
    assert sorted(p.name for p in path.iterdir()) >= ["config.json", "lensarith.json", "model.safetensors", "tokenizer.json"]
    again = la.load_model(path)
    tokens = model.to_tokens("Q: What is the capital of Poland?\nA:")
    torch.testing.assert_close(again(tokens), model(tokens))
    assert again.to_str_tokens("Poland ?") == model.to_str_tokens("Poland ?")
    la.save_model(model, path)  # overwrite in place, atomically
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_config_dtype_roundtrip(model):
    data = _cfg_to_json(model.cfg)
    assert data["dtype"] == "float32"
    json.dumps(data)
    cfg = _cfg_from_json(data)
    assert cfg.dtype == torch.float32 and cfg.n_layers == model.cfg.n_layers


def test_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setattr("lensarith.models._load._hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(la.ModelNotAvailableError, match=r"cannot load 'gpt2-medium'.*organism"):
        la.load_model("gpt2-medium")
    assert time.perf_counter() - start < 10


def test_hub_name_fails_fast_for_real():
    """No monkeypatching: on a machine without network this must still fail within 10 s."""
    code = ("import time, lensarith as la\nt=time.perf_counter()\n"
            "try:\n la.load_model('gpt2')\nexcept la.ModelNotAvailableError as e: print('ERR', time.perf_counter()-t)\n"
            "else: print('LOADED', time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    kind, seconds = out.split()[-2:]
    if kind == "ERR":
        assert float(seconds) < 10


def test_unknown_name_and_missing_directory():
    with pytest.raises(la.ModelNotAvailableError, match="neither a local directory, 'organism', nor a TransformerLens hub name"):
        la.load_model("not-a-model-xyz")
    with pytest.raises(la.ModelNotAvailableError, match="does not exist"):
        la.load_model("./no/such/dir")


def test_directory_in_wrong_format(tmp_path):
    with pytest.raises(la.ModelNotAvailableError, match="not in lensarith's format"):
        la.load_model(tmp_path)


def test_organism_not_bundled_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSARITH_DATA", str(tmp_path))
    with pytest.raises(la.ModelNotAvailableError, match="organism is not bundled"):
        la.load_model("organism")


def test_tiny_model_is_deterministic_and_randomises_ln():
    a, b = la.tiny_model(seed=3), la.tiny_model(seed=3)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert not torch.allclose(a.ln_final.w, torch.ones_like(a.ln_final.w))
