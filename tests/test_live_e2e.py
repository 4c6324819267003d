"""``mimicam live`` end to end with fixture driver videos: through a fake virtual camera
(pyvirtualcam backend), and as a real process stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _live_fakes import fake_vcam_backend

from live.cli.main import main

pytestmark = pytest.mark.fixtures

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_live_to_the_virtual_camera(tmp_path: Path, portraits_dir: Path,
                                    driving_dir: Path) -> None:
    duration = 5.0
    stats_path = tmp_path / "stats.json"
    threads_before = threading.active_count()
    with fake_vcam_backend() as backend:
        code = main(["live", "--portrait", str(portraits_dir / "lp_s9_mona_lisa.jpg"),
                     "--driver", str(driving_dir / "lp_d18.mp4"), "--no-preview",
                     "--duration", str(duration), "--stats", str(stats_path)])
        assert code == 0
        assert len(backend.instances) == 1
        cam = backend.instances[0]
    stats = json.loads(stats_path.read_text())
    assert cam.closed  # released at shutdown
    assert threading.active_count() <= threads_before  # capture, decode threads joined
    assert (cam.width, cam.height, cam.fps) == (1280, 720, 30.0)
    assert cam.last is not None and cam.last.shape == (720, 1280, 3)
    # every frame the pipeline sent reached the camera, never more than real time allows
    assert cam.count == stats["frames_sent"]
    assert 15 <= cam.count <= duration * 30 * 1.05 + 3
    times = np.array(cam.times)
    assert (np.diff(times) > 0).all()
    assert times[-1] - times[0] <= duration + 0.5
    # RGB content: the (brown) painting, not black, not channel-swapped
    means = np.array(cam.means)
    assert means.mean() > 20
    assert (means[:, 0] > 1.25 * means[:, 2]).all()  # red over blue, like the Mona Lisa
    for image in cam.samples.values():
        # framed like a webcam (--framing shoulders, the default): no black bars, the
        # painting's edge extended where the 16:9 frame is wider than the painting
        assert image.max(axis=-1).max(axis=0).min() > 10
        assert image[300:420, 560:720].std() > 10  # the face in the middle has detail
    # the final statistics
    for key in ("fps", "frames_sent", "dropped_input", "tracking_losses", "engine_errors"):
        assert key in stats
    c2s = stats["latency_ms"]["capture_to_send"]
    assert c2s["count"] == stats["frames_sent"] and 0 < c2s["median"] <= c2s["p95"]
    for stage in ("track", "engine", "compose", "send"):
        assert stats["latency_ms"]["stages"][stage]["count"] > 0
    assert stats["engine"] == "mesh" and stats["calibrations"] >= 1
    assert stats["output"] == {"width": 1280, "height": 720, "fps": 30.0}


@pytest.mark.slow
def test_sigterm_shuts_down_cleanly(tmp_path: Path, portraits_dir: Path,
                                    driving_dir: Path) -> None:
    stats_path = tmp_path / "stats.json"
    record = tmp_path / "live.mp4"
    cmd = [sys.executable, "-m", "live.cli", "live",
           "--portrait", str(portraits_dir / "lp_s42.jpg"),
           "--driver", str(driving_dir / "tps_driving.mp4"), "--no-preview", "--no-vcam",
           "--size", "640x360", "--framing", "full", "--http", "127.0.0.1:0",
           "--record", str(record),
           "--stats", str(stats_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        seen = ""
        assert proc.stderr is not None
        while "live: mesh engine" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "live: mesh engine" in seen, seen
        time.sleep(3.0)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, seen + rest
    assert "SIGTERM: shutting down" in rest
    stats = json.loads(stats_path.read_text())
    assert stats["frames_sent"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.mp4", "stats.json"]
    # the recording was finished on SIGTERM: a complete file that decodes to the output
    from live.io.video import VideoReader, probe_video

    info = probe_video(record)
    assert info.size == (640, 360) and info.fps == 30.0 and info.codec == "h264"
    with VideoReader(record) as reader:
        frames = [f.image for f in reader]
    # realtime recording: one frame per 1/30 s of the ~3 s run (repeats fill slow frames)
    assert info.frame_count == len(frames) and 30 <= len(frames) <= 30 * 10
    last = frames[-1]
    assert last.shape == (360, 640, 3)
    assert last[:, :100].max() < 16  # the letterbox bars of the square portrait
    assert last[100:260, 250:390].std() > 10  # the face in the middle has detail
