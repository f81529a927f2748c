"""Tiny raw clips in the papers' formats (PyAV), written by the tests: a 16 kHz PCM WAV, and a video of coloured frames
with an optional AAC tone (CREMA-D's FLV by default, MP4 for Kinetics)."""
import wave

import av
import numpy as np


def write_wav(path, x, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr)
        w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _frame(i, size):
    img = np.zeros((size[1], size[0], 3), np.uint8); img[..., 0] = (8 * i) % 256; img[..., 2] = 255 - (8 * i) % 256
    return av.VideoFrame.from_ndarray(img, format="rgb24")


def write_video(path, seconds, fps=10, size=(32, 24), fmt="flv", codec="flv1", audio_sr=None, freq=440.0):
    """A clip of `seconds` s at `fps` (red level 8 * frame index); with `audio_sr`, an AAC tone too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps); s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        a = None
        if audio_sr:
            a = c.add_stream("aac", rate=audio_sr); a.layout = "stereo"
        for i in range(int(round(seconds * fps))):
            for p in s.encode(_frame(i, size)): c.mux(p)
        for p in s.encode(): c.mux(p)
        if a is not None:
            n = int(seconds * audio_sr); x = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / audio_sr)).astype(np.float32)
            x = np.stack([x, x])
            for k in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, k:k + 1024]), format="fltp", layout="stereo")
                fr.sample_rate, fr.pts = audio_sr, k
                for p in a.encode(fr): c.mux(p)
            for p in a.encode(): c.mux(p)
