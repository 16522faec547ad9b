"""The command line: one-line errors with exit status 2, complete outputs, no half-written files."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lensarith as la

from lensarith import cli
from lensarith._io import atomic_write_text
from lensarith.core import Result

ROOT = Path(__file__).resolve().parent.parent


def run(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lensarith: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def no_temp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*")]


def test_bad_model_name_from_the_shell(tmp_path):
    """The installed entry point: exit 2, one line on stderr, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "lensarith.cli", "lens", "--model", "no-such-model-xyz", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert_one_line_error(proc.returncode, proc.stderr, "no-such-model-xyz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, needle", [
    (["bogus"], "invalid choice"),
    (["reproduce", "--n", "0"], "--n"),
    (["lens", "--task", "nope"], "--task"),
    (["transplant", "--layers", "a-b"], "--layers"),
    (["lens", "--n"], "expected one argument"),
])
def test_bad_arguments_are_one_line(argv, needle, capsys):
    rc, _, err = run(argv, capsys)
    assert_one_line_error(rc, err, needle)


def test_missing_organism_is_one_line(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tasks").symlink_to(ROOT / "data" / "tasks")
    monkeypatch.setenv("LENSARITH_DATA", str(data))
    rc, _, err = run(["reproduce", "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(rc, err, "organism")
    assert not (tmp_path / "out").exists()


def test_gpt2_medium_fails_fast_offline(tmp_path, monkeypatch, capsys):
    from lensarith.models._hub import _hub_cached

    if _hub_cached("gpt2-medium"):
        pytest.skip("gpt2-medium is in the local Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    rc, _, err = run(["reproduce", "--model", "gpt2-medium", "--out", str(tmp_path / "out")], capsys)
    assert time.perf_counter() - t0 < 10
    assert_one_line_error(rc, err, "gpt2-medium")


def test_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run(["lens", "--model", "tiny", "--out", str(f)], capsys)
    assert_one_line_error(rc, err, "not a directory")


def test_lens_writes_complete_outputs(tmp_path, capsys):
    rc, out, _ = run(["lens", "--model", "tiny", "--n", "4", "--out", str(tmp_path)], capsys)
    assert rc == 0 and "report:" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens-capitals"]
    run_dir = tmp_path / "lens-capitals"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["lens-capitals.html", "lens-capitals.json", "lens-capitals.png", "result"]
    doc = json.loads((run_dir / "lens-capitals.json").read_text())
    assert doc["n"] >= 1 and len(doc["layers"]) == 4
    assert Result.load(run_dir / "result").normed.shape[0] == 4
    html = (run_dir / "lens-capitals.html").read_text()
    assert "https://" not in html and "http://" not in html and "unpkg" not in html
    assert no_temp_files(tmp_path) == []


@pytest.mark.parametrize("argv, stem", [
    (["patch", "--n", "2"], "patch-capitals-resid_pre"),
    (["transplant", "--n", "4", "--layer", "2"], "transplant-capitals"),
    (["ablate", "--n", "4"], "ablate-capitals"),
])
def test_recipe_subcommands(argv, stem, tmp_path, capsys):
    rc, out, err = run(argv + ["--model", "tiny", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    run_dir = tmp_path / stem
    for name in ("result", f"{stem}.json", f"{stem}.png", f"{stem}.html"):
        assert (run_dir / name).exists(), name
    json.loads((run_dir / f"{stem}.json").read_text())
    la.Result.load(run_dir / "result")
    assert no_temp_files(tmp_path) == []


def test_interrupted_run_leaves_no_partial_files(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle: exit 130; the outputs are the previous run's as a set (here: none,
    then the first run's), and no temporary file is left."""
    from lensarith.viz import plots

    real = plots.save_png

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "save_png", interrupt)
    rc, _, err = run(["lens", "--model", "tiny", "--n", "4", "--out", str(tmp_path)], capsys)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert no_temp_files(tmp_path) == [] and not (tmp_path / "lens-capitals").exists()
    monkeypatch.setattr(plots, "save_png", real)
    assert run(["lens", "--model", "tiny", "--n", "4", "--out", str(tmp_path)], capsys)[0] == 0
    first = (tmp_path / "lens-capitals" / "lens-capitals.json").read_text()
    monkeypatch.setattr(plots, "save_png", interrupt)
    assert run(["lens", "--model", "tiny", "--n", "3", "--out", str(tmp_path)], capsys)[0] == 130
    assert (tmp_path / "lens-capitals" / "lens-capitals.json").read_text() == first  # the first run's set, whole
    assert (tmp_path / "lens-capitals" / "lens-capitals.png").exists() and no_temp_files(tmp_path) == []


def test_atomic_write_leaves_nothing_when_the_rename_is_interrupted(tmp_path, monkeypatch):
    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "summary.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_organism_subcommands_report_bad_input(capsys):
    rc, _, err = run(["organism-train", "--preset", "no-such-preset", "--out", "/nonexistent/x"], capsys)
    assert_one_line_error(rc, err, "no-such-preset")


def test_organism_eval_writes_a_folder(tmp_path, capsys):
    rc, out, err = run(["organism-eval", "--model", "tiny", "--n", "2", "--quick", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "In-context learning" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["organism-eval"]
    folder = tmp_path / "organism-eval"
    assert sorted(p.name for p in folder.iterdir()) == ["organism-eval.html", "organism-eval.json", "organism-eval.md"]
    assert json.loads((folder / "organism-eval.json").read_text())["table"]["icl"]
    assert "In-context learning" in (folder / "organism-eval.md").read_text()
    assert no_temp_files(tmp_path) == []


def test_organism_train_presets_and_default_out(capsys, monkeypatch):
    """--help names every preset (kept equal to PRESETS); the default --out is never inside data/."""
    from lensarith.organism.train import PRESETS

    assert tuple(sorted(PRESETS)) == tuple(sorted(cli.ORGANISM_PRESETS))
    rc, out, _ = run(["organism-train", "--help"], capsys)
    assert rc == 0
    text = " ".join(out.split())
    assert all(name in text for name in PRESETS) and "default data/organism" not in text
    args = cli.build_parser().parse_args(["organism-train"])
    assert args.out is None
    seen = {}

    def fake_train(config, out, **kw):
        seen["out"] = out
        raise KeyboardInterrupt  # stop before any training

    import lensarith.organism.train as train_mod

    monkeypatch.setattr(train_mod, "train", fake_train)
    rc, _, _ = run(["organism-train", "--preset", "smoke"], capsys)
    assert rc == 130 and seen["out"] == "out/organism-smoke"
    assert not Path(seen["out"]).resolve().is_relative_to((ROOT / "data").resolve())


def test_organism_train_writes_the_card_of_its_preset(tmp_path, capsys, monkeypatch):
    """organism-train goes through make_organism: the planted preset gets the planted model's card."""
    import lensarith.organism.card as card
    import lensarith.organism.train as train_mod

    calls = []

    class Trained:
        lensarith_meta = {"organism": {}}

    monkeypatch.setattr(train_mod, "train", lambda config, out, **kw: Trained())
    monkeypatch.setattr(card, "write_card", lambda *a, **kw: calls.append("card"))
    monkeypatch.setattr(card, "write_planted_card", lambda *a, **kw: calls.append("planted card"))
    for preset in ("planted", "smoke"):
        rc, out, err = run(["organism-train", "--preset", preset, "--out", str(tmp_path / preset)], capsys)
        assert rc == 0, err
        assert f"card: {(tmp_path / preset / 'card.md').resolve()}" in out
    assert calls == ["planted card", "card"]


def test_every_help_lists_models_and_tasks(capsys):
    from lensarith._paths import BUNDLED_MODELS, REAL_MODEL_NAMES
    from lensarith.tasks import TASKS

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split()).replace("- ", "-")
        if name != "organism-train":
            for model in BUNDLED_MODELS + REAL_MODEL_NAMES:
                assert model in text, (name, model)
        if name in ("lens", "patch", "transplant", "vectors"):
            for task in TASKS:
                assert task in text, (name, task)
        if name == "ablate":
            assert all(t in text for t in cli.ABLATE_TASKS)
    for task in ("antonyms", "singular_plural"):  # function-vector tasks are accepted, not only listed
        assert cli.build_parser().parse_args(["lens", "--task", task]).task == task


def test_help_stays_light():
    """--help lists tasks and models without importing torch."""
    code = "import sys; from lensarith import cli; cli.build_parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr


def test_cut_n_is_said_and_recorded(tmp_path, capsys):
    """capitals has 248 rows; asking for more prints a note and records why in the JSON."""
    rc, out, err = run(["lens", "--model", "organism", "--n", "5000", "--out", str(tmp_path), "--quiet"], capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "lens-capitals" / "lens-capitals.json").read_text())
    assert doc["n_requested"] == 5000 and doc["n_used"] == doc["n"] < 248
    assert "the task has 248" in doc["n_note"] and "several tokens" in doc["n_note"]
    assert f"note: --n 5000: {doc['n']} prompts used" in out
    # nothing cut: nothing said, and the JSON says so
    capsys.readouterr()
    got = cli._n_used(4, 4, available=248, report={"dropped": [], "n_input": 4})
    assert got == {"n_requested": 4, "n_used": 4, "n_note": None} and capsys.readouterr().out == ""
    got = cli._n_used(8, 5, what="pairs")
    assert got["n_note"] == "--n 8: 5 pairs used" and "note: --n 8: 5 pairs used" in capsys.readouterr().out


def test_cut_n_in_ablate(tmp_path, capsys):
    rc, out, err = run(["ablate", "--model", "organism", "--n", "100", "--steps", "2", "--out", str(tmp_path), "--quiet"],
                       capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "ablate-capitals" / "ablate-capitals.json").read_text())
    abstractive = doc["n"]["abstractive"]
    assert abstractive["n_requested"] == 100 and abstractive["n_used"] == doc["sizes"]["abstractive"]
    if abstractive["n_used"] < 100:
        assert "several tokens" in abstractive["n_note"] and abstractive["n_note"] in out
