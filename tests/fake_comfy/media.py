"""Tiny real media for the fake ComfyUI: an H.264+AAC MP4 and a JPEG preview frame.

Made once per process with PyAV/Pillow so every "output" the fake writes is a
file a real client can download, probe and decode.
"""

from __future__ import annotations

import functools
import io
import struct


@functools.lru_cache(maxsize=1)
def tiny_mp4(frames: int = 8, size: int = 64, fps: int = 8, sample_rate: int = 16000) -> bytes:
    """A valid MP4: `frames` frames of H.264 (yuv420p) plus one second of AAC silence-ish tone."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = size
        video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=sample_rate)
        for i in range(frames):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = (i * 255) // max(frames - 1, 1)
            img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4, 1] = 200
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        t = np.arange(sample_rate * frames // fps, dtype=np.float32) / sample_rate
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def preview_message() -> bytes:
    """A binary websocket preview frame as ComfyUI sends it: >I event (1 = PREVIEW_IMAGE), >I format (1 = JPEG), JPEG."""
    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(jpeg, format="JPEG")
    return struct.pack(">I", 1) + struct.pack(">I", 1) + jpeg.getvalue()
