"""Types shared across the package: what a ``model`` argument is.

A leaf: it imports nothing of lensarith and nothing heavy.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

__all__ = ["Model"]

Model: TypeAlias = Annotated[
    Any, "a model lensarith runs: a TransformerLens HookedTransformer (3.x) or TransformerBridge (4.x), "
    "an NNsightModel (lensarith.models.wrap_nnsight), or a model whose backend was registered"]
"""The type of every ``model`` argument: a model lensarith runs.

A TransformerLens 3.x ``HookedTransformer``, a 4.x ``TransformerBridge``, an
``lensarith.models.NNsightModel`` (from ``wrap_nnsight``), or a model of any class whose backend
was added with ``lensarith.core.backends.register_backend``.

An annotated ``Any`` rather than a class or a protocol: which objects are models is decided by the
backend registry at run time (a backend can be registered for any class), and lensarith checks a
model itself, with an error that names the supported kinds and says what to do; a stricter
annotation would let the runtime type checker answer first, with less to say.
"""
