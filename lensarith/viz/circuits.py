"""circuitsvis-based renderers that work offline.

circuitsvis's own ``str()`` output imports its JavaScript from a CDN (unpkg), and its
notebook display (``_repr_html_``) probes the network on every render. The renderers here
never call circuitsvis's Python rendering: they read the JavaScript bundle the circuitsvis
wheel ships (``circuitsvis/dist/cdn/iife.js``), make it safe to inline (no ``</script>``,
no URL text, no source-map fetch) and call ``CircuitsVis.render`` on our own ``<div>``.

- ``logit_lens_table``: top-k tokens per layer (a static HTML table; no JavaScript needed).
- ``colored_tokens``: tokens coloured by one value each (per-position DLA, patching ...).
- ``attention_patterns``: attention patterns of chosen heads on one prompt.

Each returns a ``Widget``. ``widget.html()`` is a fragment; in a notebook the widget shows
itself (the bundle inlined in the output, or once per notebook after ``init_notebook()``);
``lensarith.viz.report.Report`` inlines the bundle once per report. Every widget also
carries a static HTML fallback (tokens and values as text), shown where scripts do not run.
"""

from __future__ import annotations

import html as _html
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LensarithError
from ._bundle import bundle_js, bundle_script, find_urls
from .._types import Model

__all__ = [
    "Widget",
    "bundle_js",
    "init_notebook",
    "logit_lens_table",
    "token_table",
    "colored_tokens",
    "attention_patterns",
    "patch_tokens",
    "find_urls",
    "display_tokens",
    "bundle_script",
]

_NOTEBOOK_BUNDLE_SENT = False


def init_notebook() -> Widget:
    """Display this once at the top of a notebook: later widgets then reuse its bundle
    instead of inlining 1.3 MB each (like plotly's ``init_notebook_mode(connected=False)``)."""
    global _NOTEBOOK_BUNDLE_SENT
    _NOTEBOOK_BUNDLE_SENT = True
    return Widget("", {}, "<div style='font-size:11px;color:#888'>lensarith: circuitsvis loaded (offline)</div>",
                  title="", raw_script=bundle_script())


# --------------------------------------------------------------------------- widgets


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _props_json(props: dict[str, Any]) -> str:
    text = json.dumps(_jsonable(props), ensure_ascii=False)
    # Inside <script>: keep the HTML parser out, and keep URL-looking text out of the page.
    return text.replace("</", "<\\/").replace("<!--", "<\\!--").replace("://", ":\\/\\/")


@dataclass(repr=False)
class Widget:
    """One rendered view: a circuitsvis component with props, plus a static fallback.

    Attributes:
        component: the ``CircuitsVis`` component name (empty for static HTML only).
        props: the component's props (JSON-serialisable after ``tolist``).
        fallback: static HTML shown where scripts do not run (and before they do).
        title: a heading shown above the view.
        raw_script: extra script emitted as is (used by ``init_notebook``).
    """

    component: str
    props: dict[str, Any]
    fallback: str
    title: str = ""
    raw_script: str = ""
    id: str = field(default_factory=lambda: "lensarith-" + uuid.uuid4().hex[:12])

    def __repr__(self) -> str:
        kind = self.component or "static HTML"
        return f"Widget({kind}, title={self.title!r}, props={sorted(self.props)})"

    @property
    def needs_bundle(self) -> bool:
        return bool(self.component)

    def html(self, *, include_bundle: bool = False, wait: bool = False) -> str:
        """An HTML fragment: heading, a ``<div>`` holding the fallback, and the render call.

        Args:
            include_bundle: inline circuitsvis's bundle before the call (a standalone fragment).
            wait: poll for ``window.CircuitsVis`` (a bundle loaded by another output).
        """
        head = f"<div class='lensarith-title'>{_html.escape(self.title)}</div>" if self.title else ""
        out = [f"<div class='lensarith-widget'>{head}<div id='{self.id}'>{self.fallback}</div></div>"]
        if self.raw_script:
            out.append(self.raw_script)
        if self.component:
            if include_bundle:
                out.append(bundle_script())
            call = (f"var el=document.getElementById('{self.id}');el.innerHTML='';"
                    f"CircuitsVis.render('{self.id}',CircuitsVis.{self.component},{_props_json(self.props)});")
            tries = 200 if wait else 0
            out.append("<script>(function go(n){if(window.CircuitsVis&&window.CircuitsVis.render){try{" + call +
                       "}catch(e){console.error(e);}}else if(n<" + str(tries) + "){setTimeout(function(){go(n+1);},50);}})(0);"
                       "</script>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        """Notebook display: self-contained (no CDN, no network probe)."""
        if self.raw_script:
            return self.html()
        return self.html(include_bundle=not _NOTEBOOK_BUNDLE_SENT, wait=_NOTEBOOK_BUNDLE_SENT)

    def save(self, path) -> Path:
        """Write a standalone HTML page (bundle inlined) atomically."""
        from .report import Report

        report = Report(self.title or "lensarith")
        report.add_widget(self)
        return report.save(path)


# --------------------------------------------------------------------------- static helpers


def _esc_token(tok: str) -> str:
    return _html.escape(tok.replace("\n", "\\n")) if tok.strip() else _html.escape(repr(tok))


def _colour(value: float, vmax: float, pos: str = "31,119,180", neg: str = "214,39,40") -> str:
    if not math.isfinite(value) or vmax <= 0:
        return "transparent"
    alpha = min(1.0, abs(value) / vmax)
    return f"rgba({pos if value >= 0 else neg},{alpha * 0.85:.3f})"


_TABLE_STYLE = ("border-collapse:collapse;font-family:ui-monospace,Menlo,monospace;font-size:12px;"
                "margin:6px 0")
_CELL = "border:1px solid #ddd;padding:2px 6px;text-align:left;white-space:pre"


def token_table(
    rows: Sequence[str],
    tokens: Sequence[Sequence[str]],
    probs: Any = None,
    *,
    title: str = "",
    highlight: dict[str, str] | None = None,
    row_name: str = "layer",
) -> Widget:
    """A static table: one row per layer, the top-k tokens (and probabilities) in columns.

    Args:
        rows: row labels (layers).
        tokens: ``[row][k]`` token strings.
        probs: ``[row][k]`` probabilities (shade the cells), optional.
        title: heading.
        highlight: ``{token: css colour}``, e.g. ``{" Poland": "#cfe2ff", " Warsaw": "#ffe0b2"}``;
            tokens match with surrounding spaces ignored.
        row_name: the first column's heading.
    """
    if len(rows) != len(tokens):
        raise LensarithError(f"token_table: {len(rows)} row labels but {len(tokens)} rows of tokens")
    marks = {k.strip(): v for k, v in (highlight or {}).items()}
    k = max((len(t) for t in tokens), default=0)
    head = f"<tr><th style='{_CELL}'>{_html.escape(row_name)}</th>" + "".join(
        f"<th style='{_CELL}'>top {i + 1}</th>" for i in range(k)) + "</tr>"
    body = []
    for r, label in enumerate(rows):
        cells = []
        for i, tok in enumerate(tokens[r]):
            style = _CELL
            bg = marks.get(str(tok).strip())
            p = None if probs is None else float(probs[r][i])
            if bg:
                style += f";background:{bg};font-weight:bold"
            elif p is not None:
                style += f";background:rgba(31,119,180,{min(1.0, p) * 0.6:.3f})"
            text = _esc_token(str(tok)) + (f" <span style='color:#555'>{p:.2f}</span>" if p is not None else "")
            cells.append(f"<td style='{style}'>{text}</td>")
        body.append(f"<tr><td style='{_CELL}'>{_html.escape(str(label))}</td>{''.join(cells)}</tr>")
    table = f"<table class='lensarith-lens' style='{_TABLE_STYLE}'>{head}{''.join(body)}</table>"
    return Widget("", {}, table, title=title)


def logit_lens_table(lens, example: int = 0, *, k: int = 5, layers: Sequence[int] | None = None,
                     title: str | None = None, highlight: dict[str, str] | None = None) -> Widget:
    """Top-k logit-lens tokens per layer for one prompt of a ``LensResult``.

    Args:
        lens: a ``LensResult`` (``lensarith.logit_lens``) with a model attached.
        example: which prompt of the result.
        k: tokens per layer.
        layers: indices into ``lens.layers`` to show (default all).
        title: heading (default: the prompt's last line).
        highlight: ``{token: colour}``; default marks the prompt's argument (blue) and
            answer (orange) when the result carries them.

    Returns:
        A ``Widget`` (static HTML table).
    """
    import torch

    n_ex = lens.normed.shape[1]
    if not -n_ex <= example < n_ex:
        raise LensarithError(f"example={example} is out of range: the result holds {n_ex} prompts")
    model = getattr(lens, "_model", None)
    if model is None:
        raise LensarithError("the lens result has no model attached: call result.attach(model) first")
    idx = list(range(len(lens.layers))) if layers is None else list(layers)
    from ..core import readout

    with torch.no_grad():
        x = lens.normed[idx, example]
        logits = readout.unembed(model, x.to(model.cfg.device)).float().cpu()
    probs = logits.softmax(-1)
    top = probs.topk(k, dim=-1)
    toks = [[model.tokenizer.decode([int(i)]) if model.tokenizer is not None else str(int(i)) for i in row]
            for row in top.indices]
    if highlight is None:
        highlight = {}
        for key, colour in (("argument_ids", "#cfe2ff"), ("answer_ids", "#ffe0b2")):
            if key in lens.tensors and int(lens.tensors[key][example]) >= 0:
                highlight[model.tokenizer.decode([int(lens.tensors[key][example])])] = colour
    if title is None:
        prompts = lens.labels.get("batch") or []
        title = f"logit lens: {prompts[example].splitlines()[-2:] if prompts else ''}"
    return token_table([lens.layers[i] for i in idx], toks, top.values.tolist(), title=title, highlight=highlight)


def display_tokens(model: Model, ids) -> list[str]:
    """Token strings for display. Word-level tokenizers drop spaces (``to_str_tokens`` gives
    ``["Q", ":", "What"]``); when decoding puts spaces back, the tokens get them too."""
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    strs = [str(t) for t in model.to_str_tokens(_torch_tensor(ids))]
    tok = model.tokenizer
    if tok is None or len(ids) < 2 or any(t[:1] == " " or t[:1] == "Ġ" for t in strs[1:]):
        return strs
    decoded = tok.decode(ids)
    if len(decoded) > len("".join(strs)) and " " in decoded:
        return strs[:1] + [t if t == "\n" else " " + t for t in strs[1:]]
    return strs


def _torch_tensor(ids: list[int]):
    import torch

    return torch.tensor(ids, dtype=torch.long)


def _check_tokens_values(tokens: Sequence[str], values) -> list[float]:
    vals = [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    if len(tokens) != len(vals):
        raise LensarithError(f"colored_tokens: {len(tokens)} tokens but {len(vals)} values; give one value per token")
    if not tokens:
        raise LensarithError("colored_tokens: tokens is empty")
    return vals


def colored_tokens(tokens: Sequence[str], values, *, title: str = "", min_value: float | None = None,
                   max_value: float | None = None) -> Widget:
    """Tokens coloured by one value each (circuitsvis ``ColoredTokens``): per-position DLA,
    patching recovery, attributions.

    Args:
        tokens: the token strings of one prompt.
        values: one number per token (list, array or tensor).
        title: heading.
        min_value, max_value: the colour scale (default symmetric around 0).
    """
    vals = _check_tokens_values(tokens, values)
    finite = [abs(v) for v in vals if math.isfinite(v)]
    vmax = max(finite, default=1.0) or 1.0
    lo = -vmax if min_value is None else min_value
    hi = vmax if max_value is None else max_value
    spans = "".join(
        f"<span title='{_html.escape(f'{v:.4g}')}' style='background:{_colour(v, max(abs(lo), abs(hi)))};"
        f"padding:1px 2px;margin:1px;border-radius:2px;display:inline-block'>{_esc_token(t)}</span>"
        for t, v in zip(tokens, vals))
    legend = (f"<div style='font-size:11px;color:#555'>values {min(vals):.3g} .. {max(vals):.3g} "
              "(blue positive, red negative; hover for the value)</div>")
    fallback = f"<div class='lensarith-tokens' style='font-family:ui-monospace,monospace;font-size:13px'>{spans}</div>{legend}"
    props = {"tokens": [str(t) for t in tokens], "values": vals, "minValue": lo, "maxValue": hi}
    return Widget("ColoredTokens", props, fallback, title=title)


def attention_patterns(model: Model, prompt, heads: Sequence[tuple[int, int]], *, title: str = "") -> Widget:
    """Attention patterns of chosen heads on one prompt (circuitsvis ``AttentionHeads``).

    Args:
        model: a HookedTransformer.
        prompt: one prompt (a string, an ``Example`` or a token-id tensor ``[pos]``).
        heads: ``[(layer, head), ...]``.
        title: heading.

    Returns:
        A ``Widget``; the fallback lists each head's strongest source tokens for the last position.
    """
    import torch

    from ..core import Site, as_batch, check_layer, collect
    from ..tasks import Example

    if isinstance(prompt, Example):
        prompt = prompt.prompt
    if not heads:
        raise LensarithError("heads is empty: give at least one (layer, head) pair")
    checked = []
    for pair in heads:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise LensarithError(f"heads must be (layer, head) pairs, got {pair!r}")
        layer = check_layer(model, int(pair[0]), name="heads layer")
        head = int(pair[1])
        if not 0 <= head < model.cfg.n_heads:
            raise LensarithError(f"head {head} is out of range: the model has {model.cfg.n_heads} heads per layer")
        checked.append((layer, head))
    batch = as_batch(model, prompt if not isinstance(prompt, str) else [prompt])
    tokens = batch.tokens[:1, : int(batch.lengths[0])].to(model.cfg.device)
    one = batch.take(torch.tensor([0]))
    sites = {layer: Site("pattern", layer) for layer, _ in checked}
    got = collect(model, one, list(sites.values()), stop_at_layer=max(sites) + 1)
    pats = torch.stack([got[sites[layer]][0, head] for layer, head in checked]).float().cpu()
    strs = display_tokens(model, tokens[0])
    labels = [f"L{layer}H{head}" for layer, head in checked]
    rows = []
    for label, pat in zip(labels, pats):
        top = pat[-1].topk(min(3, pat.shape[-1]))
        items = ", ".join(f"{_esc_token(strs[int(i)])} ({float(v):.2f})" for v, i in zip(top.values, top.indices))
        rows.append(f"<li>{label}: last position attends to {items}</li>")
    fallback = f"<ul style='font-size:12px'>{''.join(rows)}</ul>"
    props = {"tokens": strs, "attention": pats, "attentionHeadNames": labels, "maskUpperTri": True}
    return Widget("AttentionHeads", props, fallback, title=title or f"attention patterns: {', '.join(labels)}")


def patch_tokens(result, layer: int | None = None, *, example_tokens: Sequence[str] | None = None,
                 title: str = "") -> Widget:
    """Coloured tokens for a ``[layer, pos]`` activation-patching result at one layer.

    Args:
        result: a ``PatchResult`` whose ``values`` are ``[layer, pos]``.
        layer: index into the result's layers (default: the layer with the largest |value|).
        example_tokens: token strings (default: from the result's ``pos`` labels).
        title: heading.
    """
    values = result.values
    if tuple(result.axes["values"]) != ("layer", "pos"):
        raise LensarithError(f"patch_tokens needs a [layer, pos] result, got axes {result.axes['values']}")
    if layer is None:
        layer = int(values.abs().nan_to_num(0.0).amax(-1).argmax())
    if not 0 <= layer < values.shape[0]:
        raise LensarithError(f"layer={layer} is out of range: the result has {values.shape[0]} layers")
    if example_tokens is None:
        example_tokens = [str(p).split(" ", 1)[1] if " " in str(p) else str(p) for p in result.labels.get("pos", [])]
    label = result.labels.get("layer", [str(i) for i in range(values.shape[0])])[layer]
    return colored_tokens(list(example_tokens), values[layer], title=title or f"patching, layer {label}")
