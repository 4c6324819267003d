"""Weights download, cache and the ``mimicam weights`` sub-command."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibrate.errors import InputError, WeightsError
from live.cli.main import main
from model_export import checkpoint, weights
from model_export.weights import (
    default_cache_dir,
    fetch_weights,
    find_weights,
    inspect_weights,
    official_url,
    weights_info,
)

UNREACHABLE = "http://127.0.0.1:9/vox-cpk.pdparams"  # discard port: connection refused


@pytest.fixture
def tiny_expected(reference_dir, monkeypatch):
    """Make the tiny parity config the expected layout (as vox-256 is for real files)."""
    from model_export.fomm import FommConfig

    doc = json.loads((reference_dir / "parity_tiny_config.json").read_text())
    config = FommConfig.from_yaml_dict(doc["paddlegan_layout"])
    monkeypatch.setattr(checkpoint, "default_config", lambda: config)
    return config


class _Server:
    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status, self.requests = body, status, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/vox-cpk.pdparams"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve(monkeypatch) -> Iterator:
    servers: list[_Server] = []

    def start(body: bytes, status: int = 200) -> _Server:
        server = _Server(body, status)
        servers.append(server)
        monkeypatch.setitem(weights.OFFICIAL_URLS, 256, server.url)
        return server

    yield start
    for server in servers:
        server.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "vox-cpk.pdparams")


# --------------------------------------------------------------------------- library


def test_official_urls_and_cache_location(monkeypatch, tmp_path):
    assert official_url(256).endswith("/vox-cpk.pdparams")
    assert official_url(512).endswith("/vox-cpk-512.pdparams")
    with pytest.raises(InputError, match="expected 256 or 512; got 300"):
        official_url(300)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "mimicam" / "weights"


def test_unreachable_server_fails_with_a_way_out(monkeypatch, tmp_path):
    monkeypatch.setitem(weights.OFFICIAL_URLS, 256, UNREACHABLE)
    with pytest.raises(WeightsError) as info:
        fetch_weights(256, dest_dir=tmp_path, timeout=2.0, progress=False)
    message = str(info.value)
    assert UNREACHABLE in message
    assert "--weights PATH" in message
    assert "mimicam weights convert vox-cpk.pth.tar" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fixtures
def test_fetch_from_local_server_validates_and_caches(reference_dir, tmp_path, serve,
                                                      tiny_expected):
    body = (reference_dir / "parity_tiny_paddle.pdparams").read_bytes()
    server = serve(body)
    cache = tmp_path / "cache"
    assert find_weights(256, cache_dir=cache) is None
    path = fetch_weights(256, dest_dir=cache, progress=False)
    assert path == cache / "vox-cpk.pdparams"
    assert path.read_bytes() == body
    assert leftovers(cache) == []  # no temporary file left behind
    assert find_weights(256, cache_dir=cache) == path
    assert server.requests == 1
    # Already there and valid: no second download.
    assert fetch_weights(256, dest_dir=cache, progress=False) == path
    assert server.requests == 1


@pytest.mark.fixtures
def test_cached_file_that_is_damaged_is_downloaded_again(reference_dir, tmp_path, serve,
                                                        tiny_expected):
    body = (reference_dir / "parity_tiny_paddle.pdparams").read_bytes()
    server = serve(body)
    (tmp_path / "vox-cpk.pdparams").write_bytes(body[:1000])
    path = fetch_weights(256, dest_dir=tmp_path, progress=False)
    assert server.requests == 1
    assert path.read_bytes() == body


@pytest.mark.parametrize(("status", "cut", "match"), [
    (200, 5000, "not a usable FOMM checkpoint"),  # damaged content
    (404, None, "HTTP 404 Not Found"),
])
@pytest.mark.fixtures
def test_bad_download_leaves_nothing(reference_dir, tmp_path, serve, tiny_expected, status,
                                     cut, match):
    body = (reference_dir / "parity_tiny_paddle.pdparams").read_bytes()
    server = serve(body[:cut] if cut else b"not here", status)
    with pytest.raises(WeightsError, match=match) as info:
        fetch_weights(256, dest_dir=tmp_path, progress=False)
    assert server.url in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fixtures
def test_download_with_wrong_layout_is_rejected(reference_dir, tmp_path, serve):
    # The tiny fixture served as if it were the vox-256 checkpoint.
    serve((reference_dir / "parity_tiny_paddle.pdparams").read_bytes())
    with pytest.raises(WeightsError, match="does not match the FOMM network layout"):
        fetch_weights(256, dest_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fixtures
def test_info_reports_counts_and_hash(reference_dir, tiny_expected):
    path = reference_dir / "parity_tiny_torch.pth.tar"
    info = inspect_weights(path)
    assert info.report.ok
    assert info.format == "torch-legacy"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "generator: 121 keys" in info.text
    assert "kp_detector: 65 keys" in info.text
    assert "dropped 19 num_batches_tracked" in info.text
    assert weights_info(path) == info.text


# --------------------------------------------------------------------------- CLI


@pytest.mark.fixtures
def test_cli_info_ok(reference_dir, tiny_expected, capsys):
    path = reference_dir / "parity_tiny_paddle.pdparams"
    assert main(["weights", "info", str(path)]) == 0
    out = capsys.readouterr().out
    values = sum(int(v.size) for v in checkpoint.read_checkpoint(path)["generator"].values())
    assert f"generator: 121 keys, {values:,} values (float32)" in out
    assert "format:   paddle-pickle" in out
    assert "layout:   OK" in out
    assert hashlib.sha256(path.read_bytes()).hexdigest() in out


@pytest.mark.fixtures
def test_cli_info_layout_mismatch_exits_2(reference_dir, capsys):
    # Checked against vox-256 (the default), the tiny fixture does not fit.
    assert main(["weights", "info", str(reference_dir / "parity_tiny_paddle.pdparams")]) == 2
    captured = capsys.readouterr()
    assert "layout:   MISMATCH" in captured.out
    assert "expected 169 keys" in captured.out
    assert "does not match the FOMM network layout" in captured.err


@pytest.mark.fixtures
def test_cli_info_truncated_file_exits_2(reference_dir, tmp_path, capsys):
    data = (reference_dir / "parity_tiny_paddle.pdparams").read_bytes()
    cut = tmp_path / "cut.pdparams"
    cut.write_bytes(data[: len(data) // 3])
    assert main(["weights", "info", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimicam: error: ")
    assert str(cut) in err and "truncated or corrupt" in err


@pytest.mark.fixtures
def test_cli_convert(reference_dir, tmp_path, tiny_expected, capsys):
    out = tmp_path / "converted.pdparams"
    src = reference_dir / "parity_tiny_torch_zipformat.pth.tar"
    assert main(["weights", "convert", str(src), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    want = checkpoint.read_checkpoint(reference_dir / "parity_tiny_paddle.pdparams")
    got = checkpoint.read_checkpoint(out)
    assert all(got[s][k].tobytes() == want[s][k].tobytes() for s in want for k in want[s])
    # a file that is there is kept unless -y (it replaced anything before)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["weights", "convert", str(src), str(notes)]) == 2
    err = capsys.readouterr().err
    assert "the converted checkpoint already exists" in err and "--overwrite (-y)" in err
    assert notes.read_text() == "mine"
    assert main(["weights", "convert", str(src), str(src)]) == 2
    assert "would replace an input" in capsys.readouterr().err
    assert main(["weights", "convert", str(src), str(notes), "-y"]) == 0
    assert checkpoint.read_checkpoint(notes).keys() == want.keys()


def test_cli_fetch_unreachable_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(weights.OFFICIAL_URLS, 512, UNREACHABLE)
    code = main(["weights", "fetch", "--size", "512", "--dest", str(tmp_path),
                 "--timeout", "2", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert UNREACHABLE in err and "--weights" in err
    assert list(tmp_path.iterdir()) == []
