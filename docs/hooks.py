"""MkDocs hook: the pages the site reads from the repository at build time.

Included, never copied: the README (the home page), the bundled models' cards, the task cards,
the command line's ``--help`` and the API reference (one page per package, one entry per name in
its ``__all__``). Links between repository files are rewritten to the pages that show them; a link
to a file the site does not show becomes its path in code, so ``mkdocs build --strict`` stays
green without the sources having to know about the site.
"""

from __future__ import annotations

import importlib
import os
import posixpath
import re
import typing
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]

#: reference pages: (page, title, module); the entries are the module's ``__all__``
PACKAGES = [
    ("core", "lensarith.core: the execution core", "lensarith.core"),
    ("models", "lensarith.models", "lensarith.models"),
    ("tasks", "lensarith.tasks", "lensarith.tasks"),
    ("lens", "lensarith.lens", "lensarith.lens"),
    ("decompose", "lensarith.decompose", "lensarith.decompose"),
    ("attribution", "lensarith.attribution", "lensarith.attribution"),
    ("ablation", "lensarith.ablation", "lensarith.ablation"),
    ("patching", "lensarith.patching", "lensarith.patching"),
    ("vectors", "lensarith.vectors", "lensarith.vectors"),
    ("viz", "lensarith.viz", "lensarith.viz"),
    ("paper", "lensarith.paper", "lensarith.paper"),
    ("guard", "lensarith.guard: the operator's loop", "lensarith.guard"),
    ("errors", "Errors and warnings", "lensarith._errors"),
]

CARDS = {"data/organism/card.md": "models/organism.md", "data/organism-planted/card.md": "models/organism-planted.md",
         "data/real/gemma-3-270m/card.md": "models/gemma-3-270m.md",
         "data/real/smollm2-135m/card.md": "models/smollm2-135m.md",
         "data/tasks/README.md": "tasks/datasets.md", "CONTRIBUTING.md": "contributing.md"}

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")


def _task_cards() -> list[str]:
    return sorted(p.stem for p in (ROOT / "data" / "tasks").glob("*.md") if p.name != "README.md")


def _site_path(repo_path: str) -> str | None:
    """The page that shows a repository file, or None."""
    if repo_path == "README.md":
        return "index.md"
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    if repo_path in CARDS:
        return CARDS[repo_path]
    m = re.fullmatch(r"data/tasks/([a-z_]+)\.md", repo_path)
    if m and (ROOT / repo_path).is_file():
        return f"tasks/{m.group(1)}.md"
    if re.fullmatch(r"notebooks/[^/]+\.ipynb", repo_path):
        return repo_path
    if repo_path in ("notebooks", "docs/notebooks"):
        return "notebooks/index.md"
    return None


def rewrite_links(text: str, repo_path: str, page: str) -> str:
    """Point links written for the repository (relative to ``repo_path``) at the site's pages."""

    def fix(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        full = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))
        site = _site_path(full)
        if site is None:
            return f"{label} (`{full}`)" if label.strip("`") != full else f"`{full}`"
        rel = posixpath.relpath(site, posixpath.dirname(page) or ".")
        return f"[{label}]({rel}{'#' + anchor if anchor else ''})"

    return _LINK.sub(fix, text)


def _public(module: str) -> list[str]:
    if module == "lensarith._errors":
        return ["LensarithError", "ModelNotAvailableError", "LensarithWarning"]
    return list(importlib.import_module(module).__all__)


def _ident(module: str, name: str) -> str:
    """The dotted path mkdocstrings can read statically (names a package loads lazily live elsewhere)."""
    lazy = getattr(importlib.import_module(module), "_LAZY", {})
    return f"{module}{lazy[name]}.{name}" if name in lazy else f"{module}.{name}"


def _reference_page(title: str, module: str) -> str:
    mod = importlib.import_module(module)
    doc = (mod.__doc__ or "").strip()
    lines = [f"# {title}", ""]
    if module != "lensarith._errors" and doc:
        lines += [doc, ""]
    lines += [f"Every public name of `{module}` (its `__all__`), documented from its docstring.", ""]
    for name in _public(module):
        lines += [f"::: {_ident(module, name)}", ""]
    return "\n".join(lines)


def _reference_index() -> str:
    import lensarith

    lines = ["# API reference", "",
             "`import lensarith as la` gives the names a notebook needs (`la.__all__`, below); the result classes and "
             "helpers live in the subpackages, each with its own page. Every entry is generated from the docstring, "
             "examples included (they run as doctests on a tiny model).", "",
             "| `la.` name | documented at | what |", "|---|---|---|"]
    where = {}
    for page, _, module in PACKAGES:
        for name in _public(module):
            where.setdefault(name, (page, module))
    for name in lensarith.__all__:
        page, module = where[name]
        obj = getattr(lensarith, name)
        first = ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
        if isinstance(obj, dict):
            first = "the task specs, by name"
        if typing.get_origin(obj) is typing.Annotated:  # a documented alias: its description is its metadata
            first = str(obj.__metadata__[0])
        lines.append(f"| `{name}` | [{module}.{name}]({page}.md#{_ident(module, name)}) | {first.replace('|', '/')} |")
    lines += ["", "## Subpackages", ""]
    for page, title, module in PACKAGES:
        lines.append(f"- [{title}]({page}.md): " + ", ".join(f"`{n}`" for n in _public(module)))
    return "\n".join(lines) + "\n"


def _cli_help() -> str:
    from lensarith import cli

    parser = cli.build_parser()
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        out += [f"## `lensarith {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _notebooks_index() -> str:
    lines = ["# Notebooks", "",
             "Each notebook runs top to bottom on the bundled organism; parameters are in the first cell, "
             "`LENSARITH_NB_SMALL=1` gives CI sizes and `LENSARITH_NB_MODEL` picks the model. The pages here were "
             "executed in small mode when the site was built (the notebooks are stored without outputs; the test "
             "suite runs all of them the same way).", ""]
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        lines.append(f"- [{p.stem}]({p.name})")
    return "\n".join(lines) + "\n"


def _tasks_index() -> str:
    from lensarith.tasks import TASKS

    lines = ["# Tasks", "",
             "The datasets in `data/tasks/`, each with a card (shown on its own page, read from the repository at build "
             "time). `la.build_prompts(task, format=...)` builds the paper's one-shot prompts and their `extractive` / "
             "`counterfactual` / `zero_shot` variants; `la.random_token_contexts` builds `table mug free China table mug "
             "free China ...`; `la.tokenize` right-pads a batch, records each prompt's answer and argument first-token "
             "ids, and reports (or with `drop_multi_token=True` drops) multi-token answers and arguments.", "",
             "- [How the datasets were built](datasets.md)", "", "| task name (`la.TASKS`) | card |", "|---|---|"]
    cards = set(_task_cards())
    for name, spec in TASKS.items():
        stems = [Path(f).stem for f in getattr(spec, "files", ())]
        card = ", ".join(f"[{s}]({s}.md)" for s in stems if s in cards) or "–"
        lines.append(f"| `{name}` | {card} |")
    return "\n".join(lines) + "\n"


def _add(files, config, uri: str, content: str) -> None:
    old = files.get_file_from_path(uri)
    if old is not None:
        files.remove(old)
    files.append(File.generated(config, uri, content=content))


def _example_sections() -> None:
    """lensarith's docstrings head their doctests ``Example:``, which griffe's Google parser reads as prose
    (so ``x[0]`` then ``['a']`` looks like a Markdown reference link); read them as examples (code)."""
    try:
        from griffe._internal.docstrings import google
        from griffe import DocstringSectionKind
    except ImportError:  # another griffe layout: the build's strict mode says what broke
        return
    table = getattr(google, "_section_kind", None)
    if isinstance(table, dict):
        table.setdefault("example", DocstringSectionKind.examples)


def on_config(config):
    _example_sections()
    # the notebooks run in small mode (CI sizes) while the site builds, and tqdm's note that ipywidgets is
    # missing (progress bars in a kernel) stays out of the rendered outputs
    os.environ.setdefault("LENSARITH_NB_SMALL", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")
    nav = config["nav"]
    for entry in nav:
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = ["reference/index.md"] + [{t: f"reference/{p}.md"} for p, t, _ in PACKAGES]
        if isinstance(entry, dict) and "Tasks" in entry:
            entry["Tasks"] = ["tasks/index.md", {"How the datasets were built": "tasks/datasets.md"}] + [
                {n: f"tasks/{n}.md"} for n in _task_cards()]
    return config


def on_files(files, config):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    _add(files, config, "index.md", rewrite_links(readme, "README.md", "index.md"))
    for repo_path, page in CARDS.items():
        _add(files, config, page, rewrite_links((ROOT / repo_path).read_text(encoding="utf-8"), repo_path, page))
    for name in _task_cards():
        repo_path = f"data/tasks/{name}.md"
        _add(files, config, f"tasks/{name}.md", rewrite_links((ROOT / repo_path).read_text(encoding="utf-8"),
                                                              repo_path, f"tasks/{name}.md"))
    _add(files, config, "tasks/index.md", _tasks_index())
    _add(files, config, "notebooks/index.md", _notebooks_index())
    _add(files, config, "reference/index.md", _reference_index())
    for page, title, module in PACKAGES:
        _add(files, config, f"reference/{page}.md", _reference_page(title, module))
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", _cli_help())
    return markdown


_EMPTY_SCRIPT = re.compile(r"<script src=\"\">\s*</script>")
_MERMAID = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>", re.S)


def on_post_page(output, page, config):
    """Notebook pages: drop the converter's MathJax tag with an empty src and its mermaid loader
    (which would import from a CDN if a notebook held a diagram; none does): the site makes no
    request to another host."""
    if page.file.src_uri.endswith(".ipynb"):
        output = _MERMAID.sub("", _EMPTY_SCRIPT.sub("", output))
    return output
