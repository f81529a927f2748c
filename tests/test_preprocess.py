"""The raw-data preprocessing command on tiny clips written here in CREMA-D's and Kinetics' raw layouts (PyAV)."""
import json, os, re, subprocess, sys, wave
from pathlib import Path

import av
import numpy as np
import pytest

from mla_cmg.data import preprocess as pre
from clips import write_video, write_wav
from mla_cmg.data.papers import crema_d, kinetics_sounds, read_classes

ROOT = Path(__file__).resolve().parents[1]
EMO = {"ANG": "Anger", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}
SPLITS = ("train", "val", "test")


# ---- fixtures ------------------------------------------------------------------------------------
CORRUPT = "1003_TIE_FEA_LO"
AUDIO_ONLY = "1005_TIE_NEU_XX"


@pytest.fixture(scope="module")
def raw_crema(tmp_path_factory):
    """14 clips of 5 actors (every emotion), 2 or 3 s at 10 fps; one garbage FLV and one WAV without its FLV."""
    raw = tmp_path_factory.mktemp("raw") / "CREMA-D"
    durations = {}
    for k in range(14):
        sid = f"{1001 + k % 5}_{['DFA', 'IEO', 'TIE'][k % 3]}_{list(EMO)[k % 6]}_{['XX', 'HI', 'LO'][k % 3]}"
        t = np.arange(int(16000 * (1.5 + 0.1 * k))) / 16000
        write_wav(raw / "AudioWAV" / f"{sid}.wav", 0.4 * np.sin(2 * np.pi * (500 + 150 * k) * t))
        if sid != CORRUPT:
            durations[sid] = 2 + k % 2
            write_video(raw / "VideoFlash" / f"{sid}.flv", durations[sid])
    assert CORRUPT in {p.stem for p in (raw / "AudioWAV").iterdir()}
    (raw / "VideoFlash" / f"{CORRUPT}.flv").write_bytes(b"FLV\x01\x05" + bytes(range(256)) * 3)
    write_wav(raw / "AudioWAV" / f"{AUDIO_ONLY}.wav", np.zeros(8000))
    return raw, durations


def did(err) -> tuple[int, int]:
    "(processed, already done) from the command's summary line (preprocess.json records the outputs, not the call)."
    m = re.search(r"(\d+) processed, (\d+) already done", err)
    return int(m[1]), int(m[2])


def run(args, capsys=None):
    rc = pre.main([str(a) for a in args] + ["--quiet"])
    err = capsys.readouterr().err if capsys else ""
    return rc, err


# ---- the features --------------------------------------------------------------------------------
def fbank_loop(x, sr=16000, M=128, N=400, S=160, K=512, alpha=0.97):
    """Kaldi fbank written out per frame: explicit DFT sum, filters bin by bin (float64)."""
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    lo, hi = mel(20.0), mel(sr / 2.0); d = (hi - lo) / (M + 1)
    H = np.zeros((M, K // 2 + 1))
    for j in range(M):
        l, c, r = lo + j * d, lo + (j + 1) * d, lo + (j + 2) * d
        for k in range(K // 2):
            m = mel(k * sr / K)
            if l < m <= c: H[j, k] = (m - l) / (c - l)
            elif c < m < r: H[j, k] = (r - m) / (r - c)
    n = np.arange(N); w = 0.5 - 0.5 * np.cos(2 * np.pi * n / (N - 1))
    E = np.exp(-2j * np.pi * np.outer(np.arange(K // 2 + 1), n) / K)
    rows = []
    for t in range(1 + (len(x) - N) // S):
        y = x[t * S:t * S + N] - np.mean(x[t * S:t * S + N])
        z = np.empty(N); z[0] = y[0] - alpha * y[0]
        for i in range(1, N): z[i] = y[i] - alpha * y[i - 1]
        rows.append(np.log(np.maximum(H @ np.abs(E @ (w * z)) ** 2, np.finfo(np.float32).eps)))
    return np.array(rows)


def test_fbank_matches_a_loop_implementation():
    rng = np.random.default_rng(0)
    t = np.arange(9600) / 16000
    for x in (rng.normal(0, 0.2, 5000), np.sin(2 * np.pi * (200 * t + 5000 * t ** 2)) + 0.01 * rng.normal(size=t.size)):
        a, b = pre.kaldi_fbank(x), fbank_loop(x)
        assert a.shape == b.shape == (1 + (len(x) - 400) // 160, 128)
        assert np.abs(a - b).max() < 1e-7
    # the filters: the Nyquist column is zero, every filter is a triangle peaking at most 1
    H = pre.mel_banks(128, 512, 16000)
    assert H.shape == (128, 257) and (H[:, -1] == 0).all() and (H.max(1) <= 1).all() and (H >= 0).all()


@pytest.mark.parametrize("f", [1000.0, 2000.0, 3500.0, 7000.0])
def test_tone_peaks_in_the_filter_containing_it(f):
    x = np.sin(2 * np.pi * f * np.arange(8000) / 16000)
    j = int(pre.kaldi_fbank(x).mean(0).argmax())
    m, lo, hi = pre.mel_scale(f), pre.mel_scale(20.0), pre.mel_scale(8000.0)
    d = (hi - lo) / 129
    assert lo + j * d < m < lo + (j + 2) * d          # f lies inside filter j's triangle
    assert abs(m - (lo + (j + 1) * d)) <= d / 2 + 1e-9  # and filter j is the one centred nearest to it


def test_mla_fbank_shape_padding_cutting_and_dc():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.1, 16000)
    fb = pre.mla_fbank(x)
    n = 1 + (16000 - 400) // 160
    assert fb.shape == (1024, 128) and fb.dtype == np.float32
    assert (fb[n:] == 0).all() and np.isfinite(fb).all() and not (fb[:n] == 0).any()
    assert np.allclose(fb[:n], pre.kaldi_fbank(x - x.mean()), atol=1e-5)
    long = rng.normal(0, 0.1, 16000 * 11)
    assert np.array_equal(pre.mla_fbank(long), pre.kaldi_fbank(long - long.mean())[:1024].astype(np.float32))
    # a DC offset changes nothing: the extractor removes the clip's mean (and Kaldi each frame's)
    assert np.abs(pre.mla_fbank(x + 0.25).astype(np.float64) - fb).max() < 1e-4
    with pytest.raises(ValueError, match="empty"):
        pre.mla_fbank(np.zeros(0))


def test_spec_feature():
    x = np.sin(2 * np.pi * 1000 * np.arange(24000) / 16000)
    s1 = pre.mla_spec(x, rng=np.random.default_rng(3))
    assert s1.shape == (129, 626) and s1.dtype == np.float32
    assert np.array_equal(s1, pre.mla_spec(x, rng=np.random.default_rng(3)))
    assert (s1[:, 2:-2].argmax(0) == 16).all()           # 1000 Hz = bin 1000 / (16000 / 256)


# ---- CREMA-D end to end --------------------------------------------------------------------------
def test_crema_d_end_to_end(raw_crema, tmp_path, capsys):
    raw, durations = raw_crema
    out = tmp_path / "out"
    rc, err = run(["crema_d", raw, out, "--workers", "1", "--val-frac", "0.2", "--test-frac", "0.2"], capsys)
    assert rc == 0, err
    # the corrupt FLV and the WAV without an FLV are named, on stderr and in preprocess.json
    assert f"{raw}/VideoFlash/{CORRUPT}.flv" in err and f"{raw}/AudioWAV/{AUDIO_ONLY}.wav" in err
    rec = json.loads((out / "preprocess.json").read_text())
    assert rec["status"] == "complete" and {f["id"] for f in rec["failures"]} == {CORRUPT, AUDIO_ONLY}
    assert any(f["file"].endswith(f"{CORRUPT}.flv") for f in rec["failures"])
    assert rec["settings"]["split"] == "random" and rec["versions"]["av"] == av.__version__
    assert (out / "stat_cre.txt").read_text().split() == sorted(EMO.values())
    seen = {}
    for s in SPLITS:
        lines = (out / f"my_{s}_cre.txt").read_text()
        assert CORRUPT not in lines and AUDIO_ONLY not in lines
        ds = crema_d(out, s, image_size=16)
        assert len(ds) == rec["clips"][s] > 0
        for i, sid in enumerate(ds.ids):
            seen[sid] = s
            assert ds.classes[ds.labels[i]] == EMO[sid.split("_")[2]]
            frames = sorted(p.name for p in (out / "visual" / f"{s}_imgs" / "Image-01-FPS" / sid).iterdir())
            assert frames == [f"{k:05d}.jpg" for k in range(1, durations[sid] + 1)]   # 1 fps, numbered from 1
        it = ds[0]
        assert it["x"]["audio"].shape == (1024, 128) and it["x"]["visual"].shape == (3, 3, 16, 16)
        assert sum(rec["counts"][s].values()) == len(ds)
    assert sorted(seen) == sorted(durations)             # every good clip in exactly one split
    # the stored fbank is the feature of the WAV; the kept frames are frames 0, 10, 20 of the 10 fps clip
    sid = next(s for s in durations if durations[s] == 3)
    with wave.open(str(raw / "AudioWAV" / f"{sid}.wav")) as w: pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    stored = np.load(out / "audio" / f"{seen[sid]}_fbank" / f"{sid}.npy")
    assert np.array_equal(stored, pre.mla_fbank(pcm / 32768.0))
    from PIL import Image
    fdir = out / "visual" / f"{seen[sid]}_imgs" / "Image-01-FPS" / sid
    reds = [np.asarray(Image.open(fdir / f"{k:05d}.jpg"))[..., 0].astype(float).mean() for k in (1, 2, 3)]
    assert [round(r / 8) for r in reds] == [0, 10, 20], reds
    assert not list(out.rglob(".tmp-*"))


def test_rerun_skips_done_clips_and_resumes_a_killed_run(raw_crema, tmp_path, capsys, monkeypatch):
    raw, durations = raw_crema
    out = tmp_path / "out"
    calls = []
    real = pre.write_frames
    def dies_on_the_fourth(*a, **k):
        calls.append(a)
        if len(calls) == 4: raise KeyboardInterrupt   # as if the run were killed while writing the 4th clip
        return real(*a, **k)
    monkeypatch.setattr(pre, "write_frames", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        pre.main(["crema_d", str(raw), str(out), "--workers", "1", "--quiet"])
    monkeypatch.setattr(pre, "write_frames", real)
    assert json.loads((out / "preprocess.json").read_text())["status"] == "running"
    assert len(list(out.glob("audio/*_fbank/*.npy"))) == 3 and not list(out.glob("my_*"))
    (out / "audio" / "train_fbank" / ".tmp-stale-x.npy").parent.mkdir(parents=True, exist_ok=True)
    (out / "audio" / "train_fbank" / ".tmp-stale-x.npy").write_bytes(b"half")
    rc, err = run(["crema_d", raw, out, "--workers", "1"], capsys)
    rec = json.loads((out / "preprocess.json").read_text())
    assert rc == 0 and rec["status"] == "complete" and did(err) == (len(durations) - 3, 3)
    assert not list(out.rglob(".tmp-*"))
    first = (out / "preprocess.json").read_bytes()
    # a rerun touches nothing
    outputs = sorted(p for p in out.rglob("*") if p.suffix in (".npy", ".jpg"))
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}
    rc, err = run(["crema_d", raw, out, "--workers", "1"], capsys)
    assert rc == 0 and did(err) == (0, len(durations))
    assert (out / "preprocess.json").read_bytes() == first          # resumed or not, the record of the outputs is the same
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes
    # a lost output is rebuilt, and only that
    lost = outputs[0]; lost.unlink()
    rc, err = run(["crema_d", raw, out, "--workers", "1"], capsys)
    assert did(err) == (1, len(durations) - 1) and lost.exists()


def test_speaker_split_and_settings_conflict(raw_crema, tmp_path, capsys):
    raw, durations = raw_crema
    out = tmp_path / "out"
    rc, err = run(["crema_d", raw, out, "--split", "speaker", "--workers", "1"], capsys)
    assert rc == 0, err
    actors = {}
    for s in SPLITS:
        for sid in crema_d(out, s).ids: actors.setdefault(sid[:4], set()).add(s)
    assert all(len(v) == 1 for v in actors.values()) and len(actors) == 5
    assert {s for v in actors.values() for s in v} == set(SPLITS)
    # other settings into the same folder: refused, unless --overwrite
    rc, err = run(["crema_d", raw, out, "--split", "speaker", "--seed", "1", "--workers", "1"], capsys)
    assert rc == 2 and "--overwrite" in err and "seed 0 -> 1" in err and str(out) in err
    rc, err = run(["crema_d", raw, out, "--val-frac", "0", "--workers", "1", "--overwrite"], capsys)
    assert rc == 0 and not (out / "my_val_cre.txt").exists() and not (out / "audio" / "val_fbank").exists()
    assert len(crema_d(out, "train")) + len(crema_d(out, "test")) == len(durations)
    # a folder with loader outputs that this command did not write is refused too
    other = tmp_path / "other"; (other / "audio" / "train_fbank").mkdir(parents=True)
    rc, err = run(["crema_d", raw, other], capsys)
    assert rc == 2 and "not written by this command" in err


def test_official_lists_and_strict(raw_crema, tmp_path, capsys):
    raw, durations = raw_crema
    ids = sorted(durations)
    lists = tmp_path / "lists"; lists.mkdir()
    (lists / "my_train_cre.txt").write_text("".join(f"{s}.flv {EMO[s.split('_')[2]]}\n" for s in ids[:8]) + "1090_XXX_SAD_XX.flv Sad\n")
    (lists / "my_test_cre.txt").write_text("".join(f"{s}.flv {EMO[s.split('_')[2]]}\n" for s in ids[8:11]) + f"{CORRUPT}.flv Fear\n")
    out = tmp_path / "out"
    rc, err = run(["crema_d", raw, out, "--lists", lists, "--val-frac", "0", "--workers", "1", "--strict"], capsys)
    assert rc == 1 and "1090_XXX_SAD_XX" in err and "listed but not in the raw folder" in err
    assert crema_d(out, "train").ids == ids[:8] and crema_d(out, "test").ids == ids[8:11]
    rec = json.loads((out / "preprocess.json").read_text())
    assert rec["notes"]["unlisted"] == len(durations) - 11          # raw clips not in the lists are left out
    # `--split lists` says the same (as chapter 15's prepare_paper passes it); without --lists it is an error
    rc, err = run(["crema_d", raw, out, "--split", "lists", "--lists", lists, "--val-frac", "0", "--workers", "1"], capsys)
    assert rc == 0 and did(err) == (0, 11)
    rc, err = run(["crema_d", raw, tmp_path / "o2", "--split", "lists"], capsys)
    assert rc == 2 and "--lists DIR" in err
    rc, err = run(["crema_d", raw, tmp_path / "o2", "--split", "speaker", "--lists", lists], capsys)
    assert rc == 2 and "--split lists" in err


def test_command_line_in_a_subprocess(raw_crema, tmp_path):
    raw, durations = raw_crema
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "mla_cmg.data.preprocess", "crema_d", str(raw), str(out), "--audio", "spec",
                        "--val-frac", "0", "--workers", "2"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{CORRUPT}.flv" in r.stderr and "1 clips failed" not in r.stderr and "2 clips failed" in r.stderr
    assert not (out / "audio" / "train_fbank").exists()
    n = 0
    for s in ("train", "test"):
        ds = crema_d(out, s, audio="spec", image_size=8)
        assert ds[0]["x"]["audio"].shape == (129, 626); n += len(ds)
    assert n == len(durations)
    with pytest.raises(FileNotFoundError, match="train_fbank"):
        crema_d(out, "train")


@pytest.mark.parametrize("bad", ["missing", "no_video_folder", "empty"])
def test_wrong_raw_dir_is_a_clear_error(tmp_path, capsys, bad):
    raw = tmp_path / "CREMA-D"
    if bad != "missing": (raw / "AudioWAV").mkdir(parents=True)
    if bad == "empty": (raw / "VideoFlash").mkdir()
    rc, err = run(["crema_d", raw, tmp_path / "out"], capsys)
    assert rc == 2 and "AudioWAV" in err and "VideoFlash" in err and "1001_DFA_ANG_XX" in err
    assert str(raw / "VideoFlash" if bad == "no_video_folder" else raw) + ":" in err
    assert not (tmp_path / "out").exists()
    rc, err = run(["kinetics_sounds", raw, tmp_path / "out"], capsys)
    assert rc == 2 and f"{raw}" in err and "<split>/<class name>/" in err


# ---- Kinetics-Sounds -----------------------------------------------------------------------------
def test_kinetics_sounds_end_to_end(tmp_path, capsys):
    raw = tmp_path / "k400"
    durations = {}
    spec = {"train": {"playing drums": 6, "blowing_nose": 6, "yoga": 2}, "val": {"playing drums": 2, "blowing_nose": 2, "yoga": 1}}
    for split, classes in spec.items():
        for cls, n in classes.items():
            for k in range(n):
                sid = f"{cls[:3]}{split[0]}{k:02d}xYz_{10 * k:06d}_{10 * k + 10:06d}"
                durations[sid] = 2 + k % 2
                codec = "mpeg4" if k % 2 else "h264"
                write_video(raw / split / cls / f"{sid}.mp4", durations[sid], fps=12, fmt="mp4", codec=codec,
                            audio_sr=[22050, 44100][k % 2], freq=300 + 50 * k)
    bad = raw / "train" / "playing drums" / "badclip_000000_000010.mp4"; bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    mute = raw / "val" / "blowing_nose" / "muteclp_000000_000010.mp4"
    write_video(mute, 2, fps=12, fmt="mp4", codec="mpeg4")
    (tmp_path / "ks.txt").write_text("playing drums\nblowing nose\n")            # yoga is not a Kinetics-Sounds class
    out = tmp_path / "out"
    rc, err = run(["kinetics_sounds", raw, out, "--classes", tmp_path / "ks.txt", "--workers", "1", "--frame-size", "16"], capsys)
    assert rc == 0, err
    assert str(bad) in err and str(mute) in err and "no audio stream" in err
    rec = json.loads((out / "preprocess.json").read_text())
    assert {f["id"] for f in rec["failures"]} == {"badclip_000000_000010", "muteclp_000000_000010"}
    assert read_classes(out / "stat_ks.txt", "ks") == ["blowing nose", "playing drums"]
    assert rec["clips"] == {"train": 11, "val": 1, "test": 4}             # test = the raw val folder; val carved from train
    for s in SPLITS:
        ds = kinetics_sounds(out, s, image_size=8)
        assert len(ds) == rec["clips"][s]
        for i, sid in enumerate(ds.ids):
            assert not sid.startswith("yog") and ds.classes[ds.labels[i]] == ("playing drums" if sid.startswith("pla") else "blowing nose")
            assert (sid[3] == "v") == (s == "test")
            frames = sorted((out / "visual" / f"{s}_imgs" / "Image-01-FPS" / sid).iterdir())
            assert [f.name for f in frames] == [f"{k:05d}.jpg" for k in range(1, durations[sid] + 1)]
        assert ds[0]["x"]["audio"].shape == (1024, 128)
    from PIL import Image
    assert min(Image.open(frames[0]).size) == 16                        # --frame-size: shorter side
    # the audio is the mp4's AAC tone at 16 kHz mono: about 2 s of samples, and its energy in the tone's filter
    sid = ds.ids[0]
    x = pre.read_audio(raw / "val" / ("playing drums" if sid.startswith("pla") else "blowing_nose") / f"{sid}.mp4")
    assert abs(len(x) / 16000 - durations[sid]) < 0.1
    with pytest.raises(ValueError, match="--split speaker"):
        pre.preprocess("kinetics_sounds", raw, tmp_path / "o2", split="speaker")


def _children(pid: int) -> list:
    "The processes whose parent is `pid` (Linux /proc)."
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try: stat = (d / "stat").read_text()
            except OSError: continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid: out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try: return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_takes_the_workers_along(tmp_path):
    "kill -9 of the command leaves none of its worker processes running."
    import time
    raw = tmp_path / "raw"
    for k in range(40):
        sid = f"{1001 + k % 8}_{['DFA', 'IEO', 'IOM', 'ITH', 'ITS'][k // 8]}_{list(EMO)[k % 6]}_XX"
        write_wav(raw / "AudioWAV" / f"{sid}.wav", 0.3 * np.sin(np.arange(48000) / 7))
        write_video(raw / "VideoFlash" / f"{sid}.flv", 3, fps=30, size=(320, 240))
    p = subprocess.Popen([sys.executable, "-m", "mla_cmg.data.preprocess", "crema_d", str(raw), str(tmp_path / "out"),
                          "--workers", "2", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids, deadline = [], time.time() + 120
    while p.poll() is None and time.time() < deadline and len(kids) < 2:
        kids = _children(p.pid); time.sleep(0.02)
    assert p.poll() is None and len(kids) >= 2, "the workers did not start before the run ended"
    p.kill(); p.wait()
    for _ in range(250):
        if not any(map(_alive, kids)): break
        time.sleep(0.02)
    assert not any(map(_alive, kids)), f"left running after kill -9: {[k for k in kids if _alive(k)]}"
