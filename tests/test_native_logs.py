"""The filter that drops native libraries' info/warning lines from descriptor 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from live.cli.native_logs import NativeLogFilter, is_native_noise

ABSL_WARNING = (b"W0000 00:00:1795290781.874877   16010 inference_feedback_manager.cc:114] "
                b"Feedback manager requires a model with a single signature inference.\n")
GLOG_INFO = b"I1121 19:43:40.220204 29895 analysis_config.cc:713] Hardware support is on\n"
ABSL_ERROR = b"E0000 00:00:1795290781.874877   16010 graph.cc:12] the graph failed\n"


def test_noise_lines_are_recognised_and_errors_are_not() -> None:
    assert is_native_noise(ABSL_WARNING)
    assert is_native_noise(GLOG_INFO)
    assert is_native_noise(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert is_native_noise(b"WARNING: All log messages before absl::InitializeLog() is called "
                           b"are written to STDERR\n")
    assert not is_native_noise(ABSL_ERROR)
    assert not is_native_noise(b"INFO live.jobs.animate: engine mesh size=512\n")
    assert not is_native_noise(b"W1121 is not a log line\n")
    assert not is_native_noise(b"mimicam: error: x.mp4: cannot read the video file\n")


def test_filter_drops_native_noise_and_keeps_the_rest(capfd: pytest.CaptureFixture[str]
                                                      ) -> None:
    with NativeLogFilter() as f:
        assert f.active
        os.write(2, ABSL_WARNING + b"kept line one\n" + GLOG_INFO)
        os.write(2, ABSL_ERROR)
        os.write(2, b"progress 10%\r")  # no newline: must still come through
        os.write(2, b"progress 20%")
    assert not f.active
    err = capfd.readouterr().err
    assert "Feedback manager" not in err and "Hardware support" not in err
    assert "kept line one\n" in err
    assert "the graph failed" in err
    assert err.endswith("progress 10%\rprogress 20%")


def test_close_is_idempotent_and_restores_descriptor_2(capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    before = os.fstat(2)
    f = NativeLogFilter().open()
    assert os.fstat(2).st_ino != before.st_ino  # a pipe stands in for stderr
    f.close()
    f.close()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    os.write(2, ABSL_WARNING)  # filter closed: nothing is dropped any more
    assert "Feedback manager" in capfd.readouterr().err


SCRIPT = textwrap.dedent("""
    import os, sys
    from live.cli.native_logs import NativeLogFilter
    with NativeLogFilter():
        print("tty:", sys.stderr.isatty(), file=sys.stderr, flush=True)
        os.write(2, b"W0000 00:00:17.5 1 x.cc:1] noise\\n")
        print("python line", file=sys.stderr)
    print("after", file=sys.stderr)
""")


def test_python_stderr_still_sees_the_terminal() -> None:
    """Progress bars ask sys.stderr.isatty(): with the filter on, it still answers for the
    real stderr (a terminal here), while native noise is dropped."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], stderr=slave,
                              stdout=subprocess.DEVNULL, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = b"".join(chunks).decode().replace("\r\n", "\n")
    assert proc.returncode == 0, err
    assert "tty: True" in err
    assert "noise" not in err
    assert "python line" in err and err.rstrip().endswith("after")


def test_cli_run_hides_native_noise_unless_very_verbose(capfd: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from live.cli import main as cli

    def handler(args: object) -> int:
        os.write(2, ABSL_WARNING + b"real output\n")
        return 0

    def build_parser() -> object:
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("-v", "--verbose", action="count", default=0)
        p.add_argument("-q", "--quiet", action="store_true")
        p.set_defaults(handler=handler)
        return p

    monkeypatch.setattr(cli, "build_parser", build_parser)
    assert cli.main([]) == 0
    err = capfd.readouterr().err
    assert "real output" in err and "Feedback manager" not in err
    assert cli.main(["-vv"]) == 0
    assert "Feedback manager" in capfd.readouterr().err
