"""Hub names without a usable network: every mode fails (or loads from a complete cache) within
2 s with a ``ModelNotAvailableError`` that says what to do, and leaves ``os.environ`` and
``huggingface_hub.constants.HF_HUB_OFFLINE`` as they were.

The network here is simulated with servers on 127.0.0.1 that each test starts and stops
(a captive portal, a proxy answering 502 or hanging up, a server that never answers, a fake
hub); the only other traffic is the DNS lookup of the real hub in ``test_no_dns``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import lensarith as la
from lensarith.models import _hub

_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy",
        "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
LIMIT = 2.0
_SERVER_LIFETIME = 20.0  # every server stops by itself after this many seconds


# --------------------------------------------------------------------------- local servers


class _Handler(BaseHTTPRequestHandler):
    """Answers as ``server.mode`` says; records ``(method, path)`` in ``server.seen``."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        mode = self.server.mode
        if mode == "hang":
            self.server.stop.wait(_SERVER_LIFETIME)
            return
        if mode == "close":
            self.close_connection = True
            return
        if mode == "redirect" and self.path.startswith("/api/"):
            self.send_response(302)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode in ("portal", "redirect"):
            body, ctype, code = b"<!doctype html><html><body>Please log in to the Wi-Fi</body></html>", "text/html", 200
        elif mode == "bad_gateway":
            body, ctype, code = b"<html><body>502 Bad Gateway</body></html>", "text/html", 502
        elif mode == "hub":
            name = self.path.split("/api/models/", 1)[-1]
            body, ctype, code = json.dumps({"id": name, "modelId": name}).encode(), "application/json", 200
        else:  # pragma: no cover
            raise AssertionError(mode)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_CONNECT = _answer

    def handle(self) -> None:
        if self.server.mode == "close":  # accept, read nothing, hang up
            self.server.seen.append(("accept", ""))
            return
        super().handle()


@contextmanager
def local_server(mode: str) -> Iterator[ThreadingHTTPServer]:
    """A server on 127.0.0.1 in ``mode`` (portal, bad_gateway, close, hang, hub), stopped on exit
    and in any case after ``_SERVER_LIFETIME`` seconds."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode, server.seen, server.stop = mode, [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    timer = threading.Timer(_SERVER_LIFETIME, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield server
    finally:
        timer.cancel()
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import TransformerLens before any timing: the 2 s are for the network decision."""
    from transformer_lens import HookedTransformer  # noqa: F401
    from transformer_lens.loading_from_pretrained import get_official_model_name

    get_official_model_name("gpt2-medium")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """No offline switch, no proxies, no endpoint override and an empty cache: each test sets
    what it simulates. Returns the empty cache folder."""
    import huggingface_hub.constants as constants

    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    use_cache(monkeypatch, cache)
    return cache


def use_cache(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub at ``cache``: the env vars, and the constant it read at import."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def fails_fast(name: str = "gpt2-medium", **kwargs) -> str:
    """``load_model(name)`` raises ModelNotAvailableError within LIMIT and leaves the environment
    and huggingface_hub's offline switch as they were; returns the message."""
    import huggingface_hub.constants as constants

    env, flag = dict(os.environ), constants.HF_HUB_OFFLINE
    start = time.perf_counter()
    with pytest.raises(la.ModelNotAvailableError) as info:
        la.load_model(name, **kwargs)
    seconds = time.perf_counter() - start
    assert type(info.value) is la.ModelNotAvailableError
    assert seconds < LIMIT, f"{seconds:.2f} s: {info.value}"
    assert dict(os.environ) == env
    assert constants.HF_HUB_OFFLINE is flag
    message = str(info.value)
    assert f"cannot load {name!r}" in message and "\n" not in message
    assert "load_model('organism')" in message and "lensarith.save_model" in message and "HF_HUB_OFFLINE=1" in message
    return message


def _refuse(*args, **kwargs):
    raise AssertionError(f"network attempted: {args!r}")


def no_sockets(monkeypatch) -> None:
    """Any DNS lookup or connection fails the test."""
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket.socket, "connect", _refuse)


def no_network(monkeypatch) -> None:
    """Any DNS lookup, connection or hub probe fails the test."""
    no_sockets(monkeypatch)
    monkeypatch.setattr(_hub, "_probe_hub", _refuse)


def fake_cache(root: Path, repo: str = "gpt2", *, weights: bool = False, model: bool = False,
               architectures: bool = True) -> Path:
    """A Hugging Face cache layout: ``models--<repo>/refs/main`` and ``snapshots/<sha>/config.json``
    (what ``try_to_load_from_cache`` reads); ``weights`` adds a garbage ``model.safetensors``,
    ``model`` a real tiny GPT-2 with a tokenizer, ``architectures=False`` drops that key from the
    config. Returns the snapshot folder."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(sha)
    if model:
        from transformers import GPT2Config, GPT2LMHeadModel

        from lensarith.models import word_tokenizer

        tok = word_tokenizer(["Poland", "Warsaw", "capital"], snapshot)
        cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32, n_ctx=32, vocab_size=len(tok),
                         bos_token_id=1, eos_token_id=2)
        GPT2LMHeadModel(cfg).save_pretrained(str(snapshot))
        return snapshot
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
              "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "bos_token_id": 50256,
              "eos_token_id": 50256}
    if not architectures:
        del config["architectures"]
    (snapshot / "config.json").write_text(json.dumps(config))
    if weights:
        (snapshot / "model.safetensors").write_bytes(b"not a safetensors file" * 4)
    return snapshot


# --------------------------------------------------------------------------- the modes


def test_no_dns(hub):
    """The real environment: no DNS for huggingface.co (skipped where the hub answers)."""
    if _hub._probe_hub("gpt2-medium") is None:
        pytest.skip("the Hugging Face hub is reachable from here")
    message = fails_fast()
    assert "not in the local Hugging Face cache" in message and str(hub) in message
    assert "https://huggingface.co/api/models/gpt2-medium cannot be reached" in message


def test_hf_hub_offline_env_makes_no_network_attempt(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    no_network(monkeypatch)
    message = fails_fast()
    assert "HF_HUB_OFFLINE is set" in message


def test_offline_switch_set_in_code_makes_no_network_attempt(hub, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    no_network(monkeypatch)
    assert "HF_HUB_OFFLINE is set" in fails_fast()


@pytest.mark.parametrize("portal", ["portal", "redirect"])
def test_captive_portal(hub, monkeypatch, portal):
    """TCP connects and HTTP answers 200 (or redirects to a login page), but with an HTML page:
    that is not the hub."""
    with local_server(portal) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)  # read at call time, not at import
        message = fails_fast()
    assert ("GET", "/api/models/gpt2-medium") in server.seen
    assert "text/html" in message and "captive portal" in message


def test_server_that_never_answers(hub, monkeypatch):
    with local_server("hang") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        message = fails_fast()
    assert server.seen and ("did not answer" in message or "timed out" in message)


@pytest.mark.parametrize("mode", ["bad_gateway", "close"])
@pytest.mark.parametrize("endpoint", ["https://huggingface.co", "http://hub.invalid"])
def test_proxy_that_fails(hub, monkeypatch, mode, endpoint):
    """HTTPS_PROXY / HTTP_PROXY point at a proxy that answers 502 or hangs up: the request goes
    through it (urllib honours the environment), and counts as unreachable."""
    if endpoint != "https://huggingface.co":
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with local_server(mode) as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        message = fails_fast()
    assert proxy.seen, "the probe did not go through the proxy"
    if mode == "bad_gateway":
        method, target = proxy.seen[0]
        assert method == ("CONNECT" if endpoint.startswith("https") else "GET")
        assert target in ("huggingface.co:443", "http://hub.invalid/api/models/gpt2-medium")
        assert "502" in message
    assert f"{endpoint}/api/models/gpt2-medium" in message


def test_partial_cache(hub, monkeypatch):
    """config.json cached, weights not: fails at once naming the cache folder."""
    snapshot = fake_cache(hub)
    message = fails_fast("gpt2")
    assert "is incomplete" in message and str(snapshot.parents[1]) in message


def test_partial_cache_with_hf_hub_offline(hub, monkeypatch):
    fake_cache(hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    no_network(monkeypatch)
    message = fails_fast("gpt2")
    assert "is incomplete" in message and "HF_HUB_OFFLINE is set" in message


@pytest.mark.parametrize("broken", ["weights", "config"])
def test_damaged_cache_restores_the_offline_switch(hub, monkeypatch, broken):
    """Config and weights cached but the weights are garbage (SafetensorError) or the config lacks
    ``architectures`` (a TypeError inside TransformerLens): from_pretrained raises inside the
    offline block; the error names the model and the cache folder, and the switch is restored."""
    snapshot = fake_cache(hub, weights=True, architectures=broken != "config")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # an existing value must come back as it was
    with local_server("close") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        message = fails_fast("gpt2")
    assert "damaged" in message and str(snapshot.parents[1]) in message
    assert ("SafetensorError" if broken == "weights" else "TypeError") in message


def test_complete_cache_loads_offline_for_the_call_only(hub, monkeypatch):
    """Unreachable hub + complete cache: loads, with offline mode on during the call only."""
    import huggingface_hub.constants as constants

    fake_cache(hub, model=True)
    seen = []
    original = _hub._from_pretrained

    def spy(*args):
        seen.append((constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")))
        return original(*args)

    monkeypatch.setattr(_hub, "_from_pretrained", spy)
    env = dict(os.environ)
    start = time.perf_counter()
    with local_server("portal") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        env = dict(os.environ)
        model = la.load_model("gpt2", device="cpu")
    assert time.perf_counter() - start < LIMIT
    assert seen == [(True, "1")]
    assert dict(os.environ) == env and constants.HF_HUB_OFFLINE is False
    assert model.cfg.n_layers == 1 and model.to_str_tokens("Poland Warsaw") == ["<bos>", "Poland", "Warsaw"]


def test_offline_block_restores_on_error(monkeypatch):
    import huggingface_hub.constants as constants

    for before in (None, "0", "1"):
        if before is None:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        else:
            monkeypatch.setenv("HF_HUB_OFFLINE", before)
        flag = constants.HF_HUB_OFFLINE
        with pytest.raises(KeyError):
            with _hub.hub_offline():
                assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
                raise KeyError("boom")
        assert os.environ.get("HF_HUB_OFFLINE") == before and constants.HF_HUB_OFFLINE is flag


# --------------------------------------------------------------------------- the probe itself


def test_probe_accepts_the_hub_directly_and_through_a_proxy(hub, monkeypatch):
    with local_server("hub") as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        assert _hub._probe_hub("gpt2-medium") is None
        assert fake.seen == [("GET", "/api/models/gpt2-medium")]
        monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
        monkeypatch.setenv("HTTP_PROXY", fake.url)
        monkeypatch.setenv("http_proxy", fake.url)
        assert _hub._probe_hub("EleutherAI/gpt-j-6b") is None
        assert fake.seen[-1] == ("GET", "http://hub.invalid/api/models/EleutherAI/gpt-j-6b")


def test_probe_rejects_what_is_not_the_hub():
    ok = json.dumps({"id": "gpt2"}).encode()
    assert _hub._looks_like_hub(200, "application/json; charset=utf-8", ok)
    assert _hub._looks_like_hub(404, "application/json", b'{"error": "Repository not found"}')
    assert not _hub._looks_like_hub(200, "text/html", ok)
    assert not _hub._looks_like_hub(200, "application/json", b"<html>")
    assert not _hub._looks_like_hub(200, "application/json", b'["gpt2"]')
    assert not _hub._looks_like_hub(200, "application/json", b'{"status": "ok"}')
    assert not _hub._looks_like_hub(502, "application/json", b'{"error": "bad gateway"}')


def test_endpoint_that_is_not_http(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "ftp://example")
    no_sockets(monkeypatch)
    assert "not an http(s) URL" in fails_fast()
