"""A built wheel carries the task data and the organism, and the main job runs from it.

The wheel is built from this checkout and installed (not editable) into a fresh virtual
environment outside the repository; its dependencies come from the test environment's
site-packages through a ``.pth`` file, so nothing is downloaded. ``lensarith reproduce
--small`` then runs in a working directory elsewhere.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=600)
    (path,) = out.glob("lensarith-*.whl")
    return path


def test_wheel_holds_every_subpackage_and_the_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "lensarith").rglob("__init__.py")}
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"subpackages missing from the wheel (list them in pyproject.toml): {missing}"
    data = {p.relative_to(ROOT / "data").as_posix() for p in (ROOT / "data").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert data and not [d for d in data if f"lensarith/data/{d}" not in names]
    assert "lensarith/data/organism/model.safetensors" in names
    assert "lensarith/data/organism-planted/model.safetensors" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "benchmarks/"))]


def test_reproduce_small_runs_from_the_installed_wheel(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # dependencies (torch, transformer-lens, ...) from this environment, lensarith from the wheel only
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    Path(purelib, "lensarith-test-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LENSARITH_DATA", "PYTHONPATH")}
    where = subprocess.run([str(py), "-c", "import lensarith, lensarith._paths as p; print(lensarith.__file__); "
                            "print(p.data_dir())"], cwd=work, env=env, check=True, capture_output=True, text=True)
    module_file, data = where.stdout.split()
    assert module_file.startswith(purelib) and data.startswith(purelib), where.stdout
    res = subprocess.run([str(env_dir / "bin" / "lensarith"), "reproduce", "--small", "--quiet", "--out", "out"],
                         cwd=work, env={**env, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert summary["model"] == "organism" and summary["config"]["small"] is True
    assert (work / "out" / "report.html").stat().st_size > 10_000
