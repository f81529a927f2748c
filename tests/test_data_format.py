"""The dataset format: validation errors, round trips, the torch view and `random_mask`."""
import os, pickle

import numpy as np
import pytest
import torch

from mla_cmg.data.format import (MMDataset, apply_mask, check_arrays, collate, full_batch, load_npz, random_mask,
                                 save_dataset, standardize, stratified_split, to_arrays)

torch.set_num_threads(1)


def arrays(n=60, seed=0):
    r = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return {"x_audio": r.normal(size=(n, 4, 5)).astype(np.float32), "x_visual": r.normal(size=(n, 7)).astype(np.float32),
            "y": y.astype(np.int64), "classes": np.array(["a", "b", "c"])}


def write(tmp_path, arrs, name="d.npz"):
    p = tmp_path / name
    np.savez(p, **arrs)
    return p


def nan_at(a, idx):
    a = a.copy(); a[idx] = np.nan
    return a


good = arrays()
BAD = {  # case -> (arrays, words that the message must contain: the key, expected and actual)
    "missing y": ({k: v for k, v in good.items() if k != "y"}, ["'y'", "expected int64 labels", "no such key"]),
    "one modality": ({k: v for k, v in good.items() if k != "x_visual"}, ["x_<modality>", "at least 2", "['x_audio']"]),
    "N mismatch": ({**good, "x_visual": good["x_visual"][:59]}, ["'x_visual'", "N = 60", "got 59"]),
    "N mismatch mask": ({**good, "mask_audio": np.ones(59, bool)}, ["'mask_audio'", "[60]", "[59]"]),
    "NaN": ({**good, "x_audio": nan_at(good["x_audio"], (3, 1, 1))}, ["'x_audio'", "finite", "sample 3"]),
    "inf": ({**good, "x_visual": good["x_visual"] * np.where(np.arange(60) == 7, np.inf, 1)[:, None]}, ["'x_visual'", "finite", "sample 7"]),
    "negative label": ({**good, "y": good["y"] - 1}, ["'y'", "labels >= 0", "min -1"]),
    "label out of range": ({**good, "y": np.where(np.arange(60) == 5, 3, good["y"])}, ["'y'", "< C = 3", "max 3 at index 5"]),
    "empty split": ({**good, "split": np.array(["train"] * 45 + ["val"] * 15)}, ["'split'", "'test'", "empty split"]),
    "bad split value": ({**good, "split": np.array(["train"] * 40 + ["dev"] * 10 + ["test"] * 10)}, ["'split'", "'dev'"]),
    "modality never present": ({**good, "mask_visual": np.zeros(60, bool)}, ["'mask_visual'", "at least one", "all False"]),
    "sample with nothing": ({**good, "mask_audio": np.arange(60) != 9, "mask_visual": np.arange(60) != 9},
                            ["mask_*", "every sample", "index 9"]),
    "int features": ({**good, "x_audio": good["x_audio"].astype(np.int16)}, ["'x_audio'", "float32", "int16"]),
    "rank 4": ({**good, "x_audio": good["x_audio"][..., None]}, ["'x_audio'", "[N, T, D]", "[60, 4, 5, 1]"]),
    "rank 1": ({**good, "x_visual": good["x_visual"][:, 0]}, ["'x_visual'", "[N, D]", "[60]"]),
    "float labels": ({**good, "y": good["y"].astype(np.float32)}, ["'y'", "integer", "float32"]),
    "labels 2-d": ({**good, "y": good["y"][:, None]}, ["'y'", "[N]", "[60, 1]"]),
    "unknown key": ({**good, "label": good["y"]}, ["'label'", "unknown key"]),
    "mask without modality": ({**good, "mask_text": np.ones(60, bool)}, ["'mask_text'", "x_<m>"]),
    "bool mask wrong dtype": ({**good, "mask_audio": np.full(60, 0.5)}, ["'mask_audio'", "bool", "float64"]),
    "duplicate classes": ({**good, "classes": np.array(["a", "a", "c"])}, ["'classes'", "unique"]),
    "seg_y out of range": ({**good, "seg_y": np.full((60, 4), 9)}, ["'seg_y'", "[0, 3]"]),
    "seg_y wrong N": ({**good, "seg_y": np.zeros((50, 4), np.int64)}, ["'seg_y'", "N=60"]),
    "seg_y multi-hot values": ({**good, "seg_y": np.full((60, 4, 4), 2)}, ["'seg_y'", "{0, 1}"]),
    "latent wrong N": ({**good, "lat_symbols": np.zeros((59, 4), np.int64)}, ["'lat_symbols'", "N = 60", "[59, 4]"]),
    "latent strings": ({**good, "lat_names": np.array(["a"] * 60)}, ["'lat_names'", "numeric", "<U1"]),
    "latent scalar": ({**good, "lat_lag": np.array(3)}, ["'lat_lag'", "first axis", "shape []"]),
    "latent empty name": ({**good, "lat_": np.zeros(60)}, ["'lat_'", "empty name"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_violation_names_file_key_expected_and_actual(tmp_path, case):
    arrs, words = BAD[case]
    p = write(tmp_path, arrs, "bad.npz")
    with pytest.raises(ValueError) as e:
        load_npz(p)
    msg = str(e.value)
    assert str(p) in msg, msg
    for w in words: assert w in msg, (case, w, msg)
    assert "expected" in msg and "got" in msg


def test_missing_file_and_pickled_content(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_npz(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")

    class Evil:
        def __reduce__(self): return (os.system, (f"touch {tmp_path / 'pwned'}",))
    p = tmp_path / "evil.npz"
    np.savez(p, **good, x_text=np.array([Evil()], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        load_npz(p)
    assert not (tmp_path / "pwned").exists()


def test_roundtrip_keeps_everything(tmp_path):
    d = check_arrays({**good, "seg_y": np.ones((60, 4), np.int64), "mask_visual": np.arange(60) % 5 != 0})
    p = save_dataset(tmp_path / "rt.npz", d)
    with np.load(p, allow_pickle=False) as z:
        assert list(z.files) == ["x_audio", "x_visual", "y", "split", "mask_audio", "mask_visual", "seg_y", "classes"]
    d2 = load_npz(p, seed=123)
    assert d2.modalities == ["audio", "visual"] and d2.classes == ["a", "b", "c"] and d2.name == "rt"
    for m in d.modalities:
        assert np.array_equal(d.x[m], d2.x[m]) and np.array_equal(d.mask[m], d2.mask[m])
    assert np.array_equal(d.split, d2.split) and np.array_equal(d.seg_y, d2.seg_y) and d2.y.dtype == np.int64
    assert (d2.x["visual"][~d2.mask["visual"]] == 0).all()


def test_save_refuses_invalid_data_and_keeps_old_file(tmp_path):
    d = check_arrays(good)
    p = save_dataset(tmp_path / "d.npz", d)
    before = p.read_bytes()
    bad = d.take(np.arange(d.n)); bad.x["audio"] = bad.x["audio"].copy(); bad.x["audio"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        save_dataset(p, bad)
    assert p.read_bytes() == before and sorted(q.name for q in tmp_path.iterdir()) == ["d.npz"]


def test_absent_values_are_zero_filled_even_if_nan():
    a = good["x_audio"].copy(); a[:5] = np.nan
    d = check_arrays({**good, "x_audio": a, "mask_audio": np.arange(60) >= 5})
    assert (d.x["audio"][:5] == 0).all() and np.isfinite(d.x["audio"]).all()
    assert d.x["audio"].dtype == np.float32 and check_arrays({**good, "x_audio": a.astype(np.float64), "mask_audio": np.arange(60) >= 5}).x["audio"].dtype == np.float32


def test_drawn_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [100, 40, 20, 60])
    s = stratified_split(y, seed=3)
    assert np.array_equal(s, stratified_split(y, seed=3)) and not np.array_equal(s, stratified_split(y, seed=4))
    for c, n in zip(range(4), [100, 40, 20, 60]):
        got = {k: int(((y == c) & (s == k)).sum()) for k in ("train", "val", "test")}
        assert got["test"] == int(np.floor(0.15 * n + 0.5)) == got["val"] and sum(got.values()) == n
    with pytest.raises(ValueError):
        stratified_split(y, 0, 0.5, 0.5)


def test_subset_take_counts_and_shapes():
    d = check_arrays(good, seed=0)
    tr = d.subset("train")
    assert set(tr.split) == {"train"} and tr.n == d.counts()["train"] and tr.shapes == {"audio": (4, 5), "visual": (7,)}
    assert d.n_classes == 3 and d.n == 60 and "MMData" in repr(d)
    with pytest.raises(ValueError): d.subset("dev")


def test_dataset_items_and_collate():
    d = check_arrays({**good, "seg_y": np.zeros((60, 4), np.int64), "mask_visual": np.arange(60) % 4 != 0}, seed=0)
    ds = MMDataset(d, "test")
    assert len(ds) == d.counts()["test"]
    it = ds[2]
    j = int(ds.index[2])
    assert int(it["idx"]) == j and torch.equal(it["x"]["audio"], torch.from_numpy(d.x["audio"][j]))
    assert it["x"]["visual"].dtype == torch.float32 and it["mask"]["visual"].dtype == torch.bool and it["mask"]["visual"].ndim == 0
    assert it["y"].dtype == torch.long and it["y"].ndim == 0 and it["seg_y"].shape == (4,)
    b = collate([ds[i] for i in range(len(ds))])
    assert b["x"]["audio"].shape == (len(ds), 4, 5) and b["mask"]["visual"].shape == (len(ds),) and b["seg_y"].shape == (len(ds), 4)
    fb = full_batch(d, "test")
    for k in ("y", "idx", "seg_y"): assert torch.equal(fb[k], b[k])
    assert torch.equal(fb["mask"]["visual"], b["mask"]["visual"]) and torch.equal(fb["x"]["audio"], b["x"]["audio"])
    loader = torch.utils.data.DataLoader(MMDataset(d), batch_size=7, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat([bb["idx"] for bb in loader]).tolist()) == list(range(60))


def test_standardize_uses_train_statistics_only():
    d = check_arrays(good, seed=0)
    d.x["visual"][d.split == "test"] += 100.0   # a shift only in the test split must not move the statistics
    s, st = standardize(d)
    tr = s.subset("train").x["visual"]
    assert np.allclose(tr.mean(0), 0, atol=1e-5) and np.allclose(tr.std(0), 1, atol=1e-4)
    assert s.subset("test").x["visual"].mean() > 50


@pytest.mark.parametrize("M,rate", [(2, 0.1), (2, 0.3), (2, 0.5), (3, 0.1), (3, 0.4), (3, 0.6), (3, 2 / 3)])
def test_random_mask_rate_is_exact_and_every_sample_keeps_one(M, rate):
    N = 5000
    k = random_mask(M, N, rate, seed=7)
    assert k.shape == (N, M) and k.dtype == bool and k.any(1).all()
    assert abs(k.mean() - (1 - rate)) <= 1 / (N * M) + 1e-12


def test_random_mask_statistics():
    """Each modality dropped equally often, kept count per sample as the construction implies, fresh draws per seed."""
    M, N, rate = 3, 40000, 0.4
    k = random_mask(M, N, rate, seed=0)
    # per-modality kept rate: z-test against 1 - rate
    z = (k.mean(0) - (1 - rate)) / np.sqrt(rate * (1 - rate) / N)
    assert (np.abs(z) < 4.5).all(), z
    # kept per sample = 1 + (extra cells among the other M-1), extra ~ approx Binomial(M-1, p)
    p = ((1 - rate) * N * M - N) / (N * (M - 1))
    from math import comb
    expected = np.array([comb(M - 1, j) * p ** j * (1 - p) ** (M - 1 - j) for j in range(M)]) * N
    observed = np.bincount(k.sum(1) - 1, minlength=M)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 13.8, (observed, expected)       # 2 dof, p = 0.001
    # pairs of modalities are not correlated beyond what the constraint implies (symmetry across pairs)
    co = np.array([[(k[:, a] & k[:, b]).mean() for b in range(M)] for a in range(M)])
    off = co[~np.eye(M, dtype=bool)]
    assert off.max() - off.min() < 0.02
    # determinism and independence across seeds
    assert np.array_equal(random_mask(M, N, rate, seed=0), k)
    k1 = random_mask(M, N, rate, seed=1)
    agree = (k1 == k).mean()
    assert agree < 0.7, agree


def test_random_mask_edges_and_errors():
    assert random_mask(3, 50, 0.0, 0).all()
    assert (random_mask(2, 50, 0.5, 0).sum(1) == 1).all()
    with pytest.raises(ValueError, match="1 - 1/M"):
        random_mask(2, 10, 0.6, 0)
    with pytest.raises(ValueError):
        random_mask(0, 10, 0.1, 0)


def test_apply_mask_zero_fills_and_stays_valid():
    d = check_arrays(good, seed=0)
    keep = random_mask(2, d.n, 0.3, seed=1)
    dm = apply_mask(d, keep)
    assert np.array_equal(np.stack([dm.mask[m] for m in dm.modalities], 1), keep)
    assert (dm.x["audio"][~keep[:, 0]] == 0).all() and np.array_equal(dm.x["audio"][keep[:, 0]], d.x["audio"][keep[:, 0]])
    check_arrays(to_arrays(dm))
    with pytest.raises(ValueError, match="shape"):
        apply_mask(d, keep[:, :1])


def test_latents_roundtrip_slice_and_leave_plain_files_unchanged(tmp_path):
    from mla_cmg.data.format import save_dataset, to_arrays
    lat = {"lag_audio": np.full(60, 2, np.int64), "symbols": (np.arange(240).reshape(60, 4) % 6) - 1,
           "private_visual": np.arange(240).reshape(60, 4) % 5 == 0, "nuisance_audio": np.ones((60, 4, 3), np.float32)}
    d = check_arrays({**good, **{f"lat_{k}": v for k, v in lat.items()}}, seed=0)
    save_dataset(tmp_path / "l.npz", d)
    with np.load(tmp_path / "l.npz", allow_pickle=False) as z:
        assert {f"lat_{k}" for k in lat} <= set(z.files)
    d2 = load_npz(tmp_path / "l.npz")
    for k, v in lat.items():
        assert d2.latents[k].dtype == v.dtype and np.array_equal(d2.latents[k], v)
    te = d2.subset("test")
    assert np.array_equal(te.latents["private_visual"], lat["private_visual"][d2.split == "test"])
    assert np.array_equal(d2.take([3, 1]).latents["nuisance_audio"], lat["nuisance_audio"][[3, 1]])
    plain = check_arrays(good, seed=0)
    assert plain.latents == {} and not any(k.startswith("lat_") for k in to_arrays(plain))
    import dataclasses
    save_dataset(tmp_path / "p1.npz", plain); save_dataset(tmp_path / "p2.npz", dataclasses.replace(d2, latents={}))
    assert (tmp_path / "p1.npz").read_bytes() == (tmp_path / "p2.npz").read_bytes()
