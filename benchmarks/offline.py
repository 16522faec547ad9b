"""How long ``load_model`` takes to give up (or load from the cache) in every offline mode.

Each mode is simulated in this one process with servers on 127.0.0.1 (a captive portal, a
proxy answering 502 or hanging up, a server that never answers) and fake Hugging Face caches
in a temporary folder; "no DNS" is this machine as it is. TransformerLens is imported first
and reported separately, so the times are the network decision and the error (or the load).
Each line also says whether ``os.environ`` and ``huggingface_hub.constants.HF_HUB_OFFLINE``
were left unchanged.

    python benchmarks/offline.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy",
        "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
_LIFETIME = 60.0  # servers stop by themselves after this


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        mode = self.server.mode
        if mode == "hang":
            self.server.stop.wait(_LIFETIME)
            return
        code = 502 if mode == "bad_gateway" else 200
        body = b"<!doctype html><html><body>Please log in</body></html>"
        self.send_response(code)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_CONNECT = _answer

    def handle(self) -> None:
        if self.server.mode != "close":
            super().handle()


@contextmanager
def _server(mode: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode, server.stop = mode, threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    timer = threading.Timer(_LIFETIME, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        timer.cancel()
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def _environment(cache: Path, **env: str) -> Iterator[None]:
    """Clean hub settings, ``cache`` as the Hugging Face cache, then ``env``; all restored after."""
    import huggingface_hub.constants as constants

    saved_env, saved = dict(os.environ), (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    try:
        for name in _ENV:
            os.environ.pop(name, None)
        os.environ.update(HF_HUB_CACHE=str(cache), HUGGINGFACE_HUB_CACHE=str(cache), **env)
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache), False
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved


def _fake_cache(root: Path, kind: str) -> Path:
    """``root`` as a cache holding gpt2: ``partial`` (config.json only), ``damaged`` (garbage
    weights) or ``complete`` (a one-layer GPT-2 with a tokenizer)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    folder = root / "models--gpt2"
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(sha)
    if kind == "complete":
        from transformers import GPT2Config, GPT2LMHeadModel

        from lensarith.models import word_tokenizer

        tok = word_tokenizer(["Poland", "Warsaw"], snapshot)
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32, n_ctx=32, vocab_size=len(tok),
                                   bos_token_id=1, eos_token_id=2)).save_pretrained(str(snapshot))
        return root
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
              "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05}
    (snapshot / "config.json").write_text(json.dumps(config))
    if kind == "damaged":
        (snapshot / "model.safetensors").write_bytes(b"garbage" * 8)
    return root


def _modes(tmp: Path) -> dict[str, tuple[str, Callable[[ExitStack], dict[str, str]], str]]:
    """name -> (model, setup returning env vars, cache kind)."""

    def proxy(mode: str) -> Callable[[ExitStack], dict[str, str]]:
        def setup(stack: ExitStack) -> dict[str, str]:
            url = stack.enter_context(_server(mode))
            return {"HTTPS_PROXY": url, "HTTP_PROXY": url, "https_proxy": url, "http_proxy": url}
        return setup

    def endpoint(mode: str) -> Callable[[ExitStack], dict[str, str]]:
        return lambda stack: {"HF_ENDPOINT": stack.enter_context(_server(mode))}

    return {
        "no DNS (this machine)": ("gpt2-medium", lambda stack: {}, "empty"),
        "HF_HUB_OFFLINE=1": ("gpt2-medium", lambda stack: {"HF_HUB_OFFLINE": "1"}, "empty"),
        "captive portal (HTML 200)": ("gpt2-medium", endpoint("portal"), "empty"),
        "server never answers": ("gpt2-medium", endpoint("hang"), "empty"),
        "HTTPS_PROXY answers 502": ("gpt2-medium", proxy("bad_gateway"), "empty"),
        "HTTPS_PROXY hangs up": ("gpt2-medium", proxy("close"), "empty"),
        "partial cache (config.json)": ("gpt2", lambda stack: {}, "partial"),
        "partial cache + HF_HUB_OFFLINE=1": ("gpt2", lambda stack: {"HF_HUB_OFFLINE": "1"}, "partial"),
        "damaged cache (garbage weights)": ("gpt2", lambda stack: {}, "damaged"),
        "complete cache, hub unreachable": ("gpt2", lambda stack: {}, "complete"),
    }


def _one(name: str, setup, kind: str, tmp: Path, run: int) -> tuple[float, str, bool]:
    import huggingface_hub.constants as constants

    import lensarith as la

    cache = Path(tempfile.mkdtemp(prefix=f"{kind}-{run}-", dir=tmp))
    if kind != "empty":
        _fake_cache(cache, kind)
    with ExitStack() as stack:
        env = setup(stack)
        with _environment(cache, **env):
            before = (dict(os.environ), constants.HF_HUB_OFFLINE)
            start = time.perf_counter()
            try:
                model = la.load_model(name, device="cpu")
                outcome = f"loaded ({model.cfg.n_layers} layer)"
            except la.ModelNotAvailableError as exc:
                outcome = f"ModelNotAvailableError: {exc}".replace(str(cache), "<cache>")
            except Exception as exc:  # a raw error is what this benchmark must never see
                outcome = f"RAW {type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            restored = before == (dict(os.environ), constants.HF_HUB_OFFLINE)
    return seconds, outcome, restored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--width", type=int, default=400, help="characters of each message shown")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    start = time.perf_counter()
    from transformer_lens import HookedTransformer  # noqa: F401
    from transformer_lens.loading_from_pretrained import get_official_model_name

    get_official_model_name("gpt2-medium")
    import lensarith as la
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    la.tiny_model(n_layers=1, d_model=8, n_heads=2)  # warm tokenizers/transformers too
    print(f"warm-up (import TransformerLens, one tiny model): {time.perf_counter() - start:.2f} s\n")

    rows = []
    with tempfile.TemporaryDirectory(prefix="lensarith-offline-bench-") as tmp:
        for name, (model, setup, kind) in _modes(Path(tmp)).items():
            runs = [_one(model, setup, kind, Path(tmp), i) for i in range(args.repeat)]
            times = [r[0] for r in runs]
            rows.append((name, statistics.median(times), max(times), runs[-1][1], all(r[2] for r in runs)))
    print(f"{'mode':36} {'median':>7} {'max':>6}  restored  outcome")
    for name, median, worst, outcome, restored in rows:
        kind = outcome.split(":", 1)[0]
        print(f"{name:36} {median:6.2f}s {worst:5.2f}s  {'yes' if restored else 'NO ':8}  {kind}")
    print("\nmessages:")
    for name, _, _, outcome, _ in rows:
        shown = outcome if len(outcome) <= args.width else outcome[: args.width - 1] + "…"
        print(f"  {name}: {shown}")
    worst = max(r[2] for r in rows)
    print(f"\nslowest mode: {worst:.2f} s (limit 2 s); raw errors: {sum(r[3].startswith('RAW') for r in rows)}")


if __name__ == "__main__":
    main()
