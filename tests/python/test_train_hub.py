"""Encoder weights: the Hugging Face hub path (``--encoder-weights imagenet``) against a local
HTTP server on 127.0.0.1 that plays the hub endpoint (``HF_ENDPOINT``), offline mode with and
without a filled cache, and local files that do not fit (another architecture, truncated).
The encoder here is a plain torch module: none of this needs timm."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")
safetensors_torch = pytest.importorskip("safetensors.torch")

from edgeseg import TrainingError  # noqa: E402
from edgeseg.train.zoo import load_encoder_weights  # noqa: E402

REPO = "edgeseg-test/tiny-encoder"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _encoder(ch: int = 8) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, ch, 3), torch.nn.BatchNorm2d(ch))


class _Hub(http.server.BaseHTTPRequestHandler):
    """HEAD/GET /{repo}/resolve/{revision}/{file}, with the headers huggingface_hub reads."""

    files: dict = {}
    requests: list = []

    def _serve(self, body: bool) -> None:
        type(self).requests.append((self.command, self.path))
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(True)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(endpoint URL, served weights file, its state dict): a hub on 127.0.0.1."""
    torch.manual_seed(3)
    sd = {k: v for k, v in _encoder().state_dict().items()}
    sd["fc.weight"] = torch.randn(10, 8)  # a classifier tensor the encoder lacks
    path = tmp_path_factory.mktemp("hub") / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    _Hub.files = {f"/{REPO}/resolve/main/model.safetensors": path.read_bytes()}
    _Hub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", path, sd
    server.shutdown()
    server.server_close()


def _fetch(endpoint: str, cache: Path, offline: bool) -> subprocess.CompletedProcess:
    """hub_weights in a fresh interpreter (huggingface_hub reads HF_* when imported; the
    module is torch-free, so this takes a second)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    code = (
        "import json, sys; from edgeseg.errors import TrainingError\n"
        "from edgeseg._hub import hub_weights\n"
        f"try: print(json.dumps(str(hub_weights({REPO!r}))))\n"
        "except TrainingError as e: print(e, file=sys.stderr); sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_hub_download_then_offline_cache(hub, tmp_path):
    endpoint, served, sd = hub
    cache = tmp_path / "cache"
    r = _fetch(endpoint, cache, offline=False)
    assert r.returncode == 0, r.stderr
    got = Path(json.loads(r.stdout))
    assert (
        got.is_file() and cache in got.parents and f"models--{REPO.replace('/', '--')}" in str(got)
    )
    assert got.read_bytes() == served.read_bytes()
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") in _Hub.requests
    seen = len(_Hub.requests)
    # offline: the cached file, and no request reaches the hub
    r = _fetch(endpoint, cache, offline=True)
    assert r.returncode == 0, r.stderr
    assert Path(json.loads(r.stdout)) == got and len(_Hub.requests) == seen
    # the fetched file loads into the encoder; the classifier tensor is ignored
    enc = _encoder()
    rep = load_encoder_weights(enc, got, "tiny")
    assert rep["loaded"] == rep["total"] == len(enc.state_dict()) and rep["ignored"] == 1
    for k, v in enc.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_hub_offline_without_cache_and_unreachable_hub_name_the_cache(hub, tmp_path):
    endpoint = hub[0]
    cache = tmp_path / "empty"
    folder = str(cache / f"models--{REPO.replace('/', '--')}")
    r = _fetch(endpoint, cache, offline=True)
    assert r.returncode == 2
    assert "HF_HUB_OFFLINE is set and the file is not in the cache" in r.stderr
    assert f"Fill the cache {folder}" in r.stderr
    # no network: a port nothing listens on
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = _fetch(dead, cache, offline=False)
    assert r.returncode == 2 and f"{dead} did not serve it" in r.stderr
    assert f"Fill the cache {folder}" in r.stderr


def test_local_weights_that_do_not_fit_are_refused(tmp_path):
    other = tmp_path / "other.safetensors"
    safetensors_torch.save_file(_encoder(16).state_dict(), str(other))
    enc = _encoder(8)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(
        TrainingError, match=r"first mismatching tensor 0\.weight \(file \(16, 3, 3, 3\), model"
    ):
        load_encoder_weights(enc, other, "tiny")
    good = tmp_path / "good.safetensors"
    safetensors_torch.save_file(_encoder(8).state_dict(), str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(TrainingError, match=r"cut\.safetensors: not a readable \.safetensors"):
        load_encoder_weights(enc, cut, "tiny")
    cut_pth = tmp_path / "cut.pth"
    torch.save(_encoder(8).state_dict(), cut_pth)
    cut_pth.write_bytes(cut_pth.read_bytes()[:200])
    with pytest.raises(TrainingError, match=r"cut\.pth: not a readable state dict"):
        load_encoder_weights(enc, cut_pth, "tiny")
    partial = tmp_path / "partial.pth"
    torch.save({"0.weight": _encoder(8).state_dict()["0.weight"]}, partial)
    with pytest.raises(TrainingError, match=r"first mismatching tensor 0\.bias \(not in the file"):
        load_encoder_weights(enc, partial, "tiny")
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())  # untouched
