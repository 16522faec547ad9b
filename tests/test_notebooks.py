"""The notebooks run top to bottom in small mode (LENSARITH_NB_SMALL=1) and are stored without outputs."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
NAMES = ["01_logit_lens_and_decomposition", "02_direct_logit_attribution", "03_activation_patching",
         "04_ffn_transplantation_and_ablation", "05_paper_figures", "06_vector_bench", "07_operator_loop"]


def test_all_notebooks_present_and_clean():
    import nbformat

    assert [p.stem for p in NOTEBOOKS] == NAMES
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} is stored with outputs"
        assert "LENSARITH_NB_SMALL" in code[0].source, f"{path.name}: parameters belong in the first code cell"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LENSARITH_NB_SMALL", "1")
    monkeypatch.setenv("LENSARITH_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    html = "".join(o.get("data", {}).get("text/html", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    for marker in ("https://", "http://", "unpkg", "//cdn"):
        assert marker not in html, f"{path.name}: notebook output references {marker}"
    if path.stem == "07_operator_loop":
        assert (tmp_path / "out" / "guard.html").is_file()
    if path.stem == "05_paper_figures":
        assert (tmp_path / "out" / "report.html").is_file()
        assert (tmp_path / "out" / "summary.json").is_file()
