"""Synthetic media for the video and animate tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_wav(path: Path, seconds: float, rate: int = 22050) -> None:
    """A mono PCM wav of a 440 Hz tone, ``seconds`` long (an audio codec that must be
    transcoded for mp4)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.codec_context.layout = "mono"
        t = np.arange(int(seconds * rate)) / rate
        data = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
        for i in range(0, len(data), 2048):
            frame = av.AudioFrame.from_ndarray(data[None, i:i + 2048], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
