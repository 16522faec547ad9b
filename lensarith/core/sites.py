"""Typed hook locations: a ``Site`` names a TransformerLens hook point and a slice of it.

Only TransformerLens's legacy hook names are used (``blocks.{l}.hook_resid_pre`` ...),
which ``TransformerBridge`` also serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from .._errors import LensarithError
from .._types import Model

__all__ = ["Site", "SiteKind", "hook_name", "check_layer", "check_layers"]

SiteKind = Literal[
    "embed", "pos_embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
    "mlp_pre", "mlp_post", "z", "result", "q", "k", "v", "pattern", "ln_final_scale",
]
SITE_KINDS: tuple[str, ...] = get_args(SiteKind)

_TEMPLATES = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
    "z": "blocks.{layer}.attn.hook_z",
    "result": "blocks.{layer}.attn.hook_result",
    "q": "blocks.{layer}.attn.hook_q",
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "ln_final_scale": "ln_final.hook_scale",
}
_NO_LAYER = ("embed", "pos_embed", "ln_final_scale")
HEAD_KINDS = ("z", "result", "q", "k", "v", "pattern")


def hook_name(kind: SiteKind, layer: int | None = None) -> str:
    """The TransformerLens hook name of a site kind at a layer."""
    if kind not in _TEMPLATES:
        raise LensarithError(f"site kind {kind!r} is unknown; valid kinds: {', '.join(SITE_KINDS)}")
    if kind in _NO_LAYER:
        return _TEMPLATES[kind]
    if layer is None:
        raise LensarithError(f"site kind {kind!r} needs a layer")
    return _TEMPLATES[kind].format(layer=layer)


@dataclass(frozen=True)
class Site:
    """A hook location and the slice of its activation an intervention touches.

    Args:
        kind: one of ``SITE_KINDS`` (``resid_pre``, ``mlp_out``, ``z`` ...).
        layer: the block (negative counts from the end); None for ``embed``/``pos_embed``.
        position: None for every position; a non-negative int for an absolute position;
            a negative int or ``"last"`` counts back from each row's last real token.
        head: a head index for per-head kinds (``z``, ``result``, ``q``, ``k``, ``v``).

    Example:
        >>> Site("mlp_out", 19, position="last").hook_name
        'blocks.19.hook_mlp_out'
    """

    kind: str  # one of SITE_KINDS (SiteKind); checked in __post_init__ with a clear message
    layer: int | None = None
    position: int | str | None = None  # None, "last" or an int
    head: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _TEMPLATES:
            raise LensarithError(f"Site kind={self.kind!r} is unknown; valid kinds: {', '.join(SITE_KINDS)}")
        if self.kind in _NO_LAYER:
            if self.layer is not None:
                raise LensarithError(f"Site kind={self.kind!r} takes no layer, got layer={self.layer!r}")
        elif not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise LensarithError(f"Site kind={self.kind!r} needs an int layer, got layer={self.layer!r}")
        if self.head is not None and self.kind not in HEAD_KINDS:
            raise LensarithError(f"Site kind={self.kind!r} has no heads; heads exist for {', '.join(HEAD_KINDS)}")
        if self.position is not None and self.position != "last" and (
            not isinstance(self.position, int) or isinstance(self.position, bool)
        ):
            raise LensarithError(f"Site position must be None, 'last' or an int, got {self.position!r}")

    @property
    def hook_name(self) -> str:
        return hook_name(self.kind, self.layer)

    def resolve(self, cfg) -> Site:
        """Check the site against a model config; return it with a non-negative layer."""
        layer = self.layer
        if layer is not None:
            n = cfg.n_layers
            if not -n <= layer < n:
                raise LensarithError(
                    f"Site layer={layer} is out of range for a model with {n} layers: valid is {-n}..{n - 1}"
                )
            layer %= n
        if self.head is not None and not 0 <= self.head < cfg.n_heads:
            raise LensarithError(f"Site head={self.head} is out of range: the model has {cfg.n_heads} heads (0..{cfg.n_heads - 1})")
        if self.kind == "result" and not cfg.use_attn_result:
            raise LensarithError("Site kind='result' needs model.set_use_attn_result(True); use kind='z' otherwise")
        if self.kind == "pos_embed" and cfg.positional_embedding_type != "standard":
            raise LensarithError(f"Site kind='pos_embed' needs standard positional embeddings, the model has {cfg.positional_embedding_type!r}")
        return Site(self.kind, layer, self.position, self.head)


def check_layer(model: Model, layer: int, *, name: str = "layer", allow_end: bool = False) -> int:
    """Validate a layer index (negative counts from the end) and return it non-negative."""
    n = model.cfg.n_layers + (1 if allow_end else 0)
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise LensarithError(f"{name} must be an int, got {layer!r}")
    if not -n <= layer < n:
        raise LensarithError(f"{name}={layer} is out of range for a model with {model.cfg.n_layers} layers: valid is {-n}..{n - 1}")
    return layer % n


def check_layers(model: Model, layers, *, name: str = "layers") -> list[int]:
    """An int, range or list of layers, validated, non-negative and without repeats (order kept)."""
    if isinstance(layers, bool):
        raise LensarithError(f"{name} must be an int, a range or a list of ints, got {layers!r}")
    if isinstance(layers, int):
        layers = [layers]
    if not isinstance(layers, (Sequence, range)) or isinstance(layers, str):
        raise LensarithError(f"{name} must be an int, a range or a list of ints, got {layers!r}")
    if len(layers) == 0:
        raise LensarithError(f"{name} is empty: give at least one layer (valid 0..{model.cfg.n_layers - 1})")
    out: list[int] = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise LensarithError(f"{name} must hold ints, got {layer!r} in {list(layers)!r}")
        n = model.cfg.n_layers
        if not -n <= layer < n:
            raise LensarithError(
                f"{name}={list(layers)!r}: layer {layer} is out of range for a model with {n} layers: valid is {-n}..{n - 1}"
            )
        if layer % n not in out:
            out.append(layer % n)
    return out
