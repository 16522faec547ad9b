"""Every bad input in ``tests/bad_inputs.py`` gives a clear error (type and message) or the warned report.

The table runs once in a subprocess, as a user would call lensarith: under pytest the
jaxtyping/beartype hook would reject wrongly-typed arguments before lensarith's own checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES, Case, Env, run_case

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("bad") / "outcomes.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, str(HERE / "bad_inputs.py"), "--json", str(out)], capture_output=True,
                          text=True, timeout=900, env=env, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_table_is_wide():
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.call.__qualname__.startswith("cli_call") for c in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, outcomes):
    outcome, detail = outcomes[case.name]
    assert outcome == "clear", f"{outcome}: {detail}"


def test_the_classifier_can_fail():
    import lensarith as la

    env = Env()
    assert run_case(Case("silent", lambda e: 1, "x"), env)[0] == "silent"
    assert run_case(Case("traceback", lambda e: 1 / 0, "x"), env)[0] == "traceback"
    assert run_case(Case("unclear", lambda e: la.build_prompts("nope"), "some other words"), env)[0] == "unclear"
