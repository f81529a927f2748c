"""Paper-dataset loaders on tiny fixtures written here in the papers' exact layouts."""
import os, pickle, warnings, zipfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from mla_cmg.data import papers as P
from mla_cmg.data.format import collate

IEMO_SEP = " [split|sign] "


def jpg(path, value=100, size=(20, 14)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def npy(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, a)


def tokens(d, sid, n_real, L=256):
    tok = np.zeros((1, L), np.int64); tok[0, :n_real] = 2000 + np.arange(n_real)
    pm = np.ones((1, L), np.float32); pm[0, :n_real] = 0
    npy(d / f"{sid}_token.npy", tok); npy(d / f"{sid}_pm.npy", pm)


# ---- CREMA-D / Kinetics-Sounds --------------------------------------------------------------------
@pytest.fixture
def cremad(tmp_path):
    root = tmp_path / "CREMA-D"; root.mkdir()
    (root / "stat_cre.txt").write_text("Anger\nDisgust\nFear\nHappy\nNeutral\nSad")   # no trailing newline, as shipped
    rows = [("1001_DFA_ANG_XX", "Anger", 5), ("1012_IEO_HAP_MD", "Happy", 2), ("1091_WSI_SAD_XX", "Sad", 9)]
    for sid, lab, nf in rows:
        npy(root / "audio" / "test_fbank" / f"{sid}.npy", np.full((1024, 128), len(sid), np.float32))
        for f in range(nf): jpg(root / "visual" / "test_imgs" / "Image-01-FPS" / sid / f"{f + 1:05d}.jpg", 10 * f)
    (root / "my_test_cre.txt").write_text("".join(f"{s}.flv {l}\n" for s, l, _ in rows))
    return root


def test_cremad_items(cremad):
    ds = P.crema_d(cremad, "test", image_size=24)
    assert len(ds) == 3 and ds.classes == ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"]
    assert [int(ds[i]["y"]) for i in range(3)] == [0, 3, 5]
    it = ds[2]
    assert it["x"]["audio"].shape == (1024, 128) and it["x"]["visual"].shape == (3, 3, 24, 24)
    assert it["x"]["visual"].dtype == torch.float32 and bool(it["mask"]["visual"]) and int(it["idx"]) == 2
    # frames 0, n//3, 2n//3 of the sorted names: 9 frames -> 1, 4, 7 (values 0, 30, 60 before normalisation)
    frames = P.pick_frames(cremad / "visual/test_imgs/Image-01-FPS/1091_WSI_SAD_XX", 3)
    assert [f.name for f in frames] == ["00001.jpg", "00004.jpg", "00007.jpg"]
    red = it["x"]["visual"][:, 0, 0, 0] * P.IMAGENET_STD[0] + P.IMAGENET_MEAN[0]
    assert np.allclose(red.numpy() * 255, [0, 30, 60], atol=1.5)
    # too few frames: the same frame repeated (seg = n // 3 = 0), as in the official code
    assert [f.name for f in P.pick_frames(cremad / "visual/test_imgs/Image-01-FPS/1012_IEO_HAP_MD", 3)] == ["00001.jpg"] * 3
    b = collate([ds[i] for i in range(3)])
    assert b["x"]["visual"].shape == (3, 3, 3, 24, 24) and b["y"].tolist() == [0, 3, 5]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    assert [len(x["y"]) for x in loader] == [2, 1]


@pytest.mark.parametrize("line,why", [("1001_DFA_ANG_XX.mp4 Anger", "wrong extension"), ("1001_DFA_ANG_XX.flv", "no label"),
                                      (".flv Anger", "no id"), ("1001_DFA_ANG_XX.flv Bored", "unknown label")])
def test_cremad_malformed_line_reports_path_and_line(cremad, line, why):
    lst = cremad / "list.txt"
    lst.write_text(f"1001_DFA_ANG_XX.flv Anger\n\n{line}\n")
    with pytest.raises(ValueError) as e:
        P.crema_d(cremad, "test", list_file=lst)
    assert f"{lst}:3" in str(e.value), (why, str(e.value))


def test_cremad_missing_files_report_path_and_list_line(cremad):
    lst = cremad / "list.txt"
    lst.write_text("1001_DFA_ANG_XX.flv Anger\n1500_XXX_SAD_XX.flv Sad\n")
    with pytest.raises(FileNotFoundError) as e:
        P.crema_d(cremad, "test", list_file=lst)
    assert "test_fbank/1500_XXX_SAD_XX.npy" in str(e.value) and f"{lst}:2" in str(e.value)
    (cremad / "audio/test_fbank/1500_XXX_SAD_XX.npy").write_bytes(np.zeros(3).tobytes())  # audio present, frames not
    with pytest.raises(FileNotFoundError, match="Image-01-FPS/1500_XXX_SAD_XX"):
        P.crema_d(cremad, "test", list_file=lst)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(P.crema_d(cremad, "test", list_file=lst, skip_missing=True)) == 1
    with pytest.raises(FileNotFoundError, match="stat_cre.txt"):
        P.crema_d(cremad, "test", stat_file=cremad / "nope" / "stat_cre.txt")
    with pytest.raises(FileNotFoundError, match="my_train_cre.txt"):
        P.crema_d(cremad, "train")


def test_cremad_spectrogram_folder_and_worker_seeds(cremad):
    for sid in ("1001_DFA_ANG_XX", "1012_IEO_HAP_MD", "1091_WSI_SAD_XX"):
        npy(cremad / "audio" / "test_spec" / f"{sid}.npy", np.ones((129, 626), np.float32))
    assert P.crema_d(cremad, "test", audio="spec", image_size=8)[0]["x"]["audio"].shape == (129, 626)
    assert P.crema_d(cremad, "test", image_size=8)[0]["x"]["audio"].shape == (1024, 128)     # the default is unchanged
    with pytest.raises(ValueError, match="'fbank'.*'spec'.*'mel'"):
        P.crema_d(cremad, "test", audio="mel")
    (cremad / "audio" / "test_spec" / "1012_IEO_HAP_MD.npy").unlink()
    with pytest.raises(FileNotFoundError, match="test_spec/1012_IEO_HAP_MD.npy"):
        P.crema_d(cremad, "test", audio="spec")
    # seed_worker (a DataLoader worker_init_fn calls it on the worker's copy): own stream per seed, the same seed the same
    a, b = P.crema_d(cremad, "test", augment=True), P.crema_d(cremad, "test", augment=True)
    a.seed_worker(5); b.seed_worker(6)
    draws = [d.rng.integers(0, 2**31, 3).tolist() for d in (a, b)]
    a.seed_worker(5)
    assert a.rng.integers(0, 2**31, 3).tolist() == draws[0] != draws[1]


def test_pickled_npy_is_never_loaded(cremad):
    sid = "1001_DFA_ANG_XX"
    np.save(cremad / "audio" / "test_fbank" / f"{sid}.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    ds = P.crema_d(cremad, "test")
    with pytest.raises(ValueError, match="not a plain numeric"):
        ds[0]


def test_kinetics_sounds_layout(tmp_path):
    root = tmp_path / "kinsound"; root.mkdir()
    (root / "stat_ks.txt").write_text("blowing nose >a >b\nplaying drums >a >b\nheader line\nbowling >x >y\n")
    for sid in ("-0CamVQdP_Y_000000", "zyXa2tdBTGc_000072"):
        npy(root / "audio" / "train_fbank" / f"{sid}.npy", np.zeros((1024, 128), np.float32))
        for f in range(4): jpg(root / "visual" / "train_imgs" / "Image-01-FPS" / sid / f"{f:05d}.jpg")
    (root / "my_train_ks.txt").write_text("-0CamVQdP_Y_000000.mp4 playing drums\nzyXa2tdBTGc_000072.mp4 bowling\n")
    ds = P.kinetics_sounds(root, "train", image_size=8)
    assert ds.classes == ["blowing nose", "bowling", "playing drums"] and [int(ds[i]["y"]) for i in range(2)] == [2, 1]


# ---- Food-101 / MVSA ----------------------------------------------------------------------------
def test_food101_and_mvsa_layout(tmp_path):
    for maker, stat, lst, labels in ((P.food101, "stat_food.txt", "my_train_food.txt", ["apple_pie", "ramen", "sushi"]),
                                     (P.mvsa, "stat_mvsa.txt", "my_train_mvsa.txt", ["negative", "neutral", "positive"])):
        root = tmp_path / stat; root.mkdir()
        (root / stat).write_text("\n".join(reversed(labels)) + "\n")
        ids = ["apple_pie_100", "sushi_7", "ramen_31"] if "food" in stat else ["12", "4071", "58"]
        for k, sid in enumerate(ids):
            tokens(root / "text_token" / "train_token", sid, 3 + k)
            jpg(root / "visual" / "train_imgs" / f"{sid}.jpg", 40 * k)
        (root / lst).write_text("".join(f"{sid}.jpg {labels[k]}\n" for k, sid in enumerate(ids)))
        ds = maker(root, "train", image_size=16)
        assert ds.classes == labels and [int(ds[i]["y"]) for i in range(3)] == [0, 1, 2]
        b = collate([ds[i] for i in range(3)])
        assert b["x"]["text"].dtype == torch.long and b["x"]["text"].shape == (3, 256) and b["x"]["visual"].shape == (3, 3, 16, 16)
        assert b["pad_mask"]["text"].sum(1).tolist() == [253, 252, 251] and b["x"]["text"][1, :4].tolist() == [2000, 2001, 2002, 2003]
        (root / "text_token" / "train_token" / f"{ids[1]}_pm.npy").unlink()
        with pytest.raises(FileNotFoundError, match=rf"{ids[1]}_pm.npy.*{lst}:2"):
            maker(root, "train")


# ---- IEMOCAP ------------------------------------------------------------------------------------
@pytest.fixture
def iemocap(tmp_path):
    root = tmp_path / "IEMOCAP"; root.mkdir()
    (root / "stat_iemo.txt").write_text("Angry\nHappy\nNeutral\nSad\n")
    lines = []
    for k in range(40):
        sid = f"Ses0{k % 5 + 1}{'FM'[k % 2]}_script0{k % 3 + 1}_1_M0{k:02d}"
        npy(root / "audio" / "test_fbank" / f"{sid}.npy", np.full((1024, 128), 1.0, np.float32))
        for f in range(5): jpg(root / "visual" / "test_imgs" / sid / f"{sid}_{f}.jpg", 50 * f, size=(6, 6))
        tokens(root / "text_token" / "test_token", sid, 6)
        lines.append(f"{sid}.mp4{IEMO_SEP}You know, it's -- [LAUGHTER] fine.{IEMO_SEP}{['Angry', 'Happy', 'Neutral', 'Sad'][k % 4]}\n")
    (root / "my_test_iemo.txt").write_text("".join(lines))
    return root


def test_iemocap_three_modalities_and_missing_rate(iemocap):
    ds = P.iemocap(iemocap, "test", missing_rate=0.4, seed=3, image_size=8)
    assert ds.modalities == ("audio", "visual", "text") and len(ds) == 40 and ds.keep.shape == (40, 3)
    b = collate([ds[i] for i in range(40)])
    keep = np.stack([b["mask"][m].numpy() for m in ds.modalities], 1)
    assert (keep == ds.keep).all() and keep.any(1).all() and abs(keep.mean() - 0.6) < 1 / 120 + 1e-9
    for j, m in enumerate(ds.modalities):
        zero = b["x"][m].flatten(1).abs().sum(1) == 0
        assert zero.numpy().tolist() == (~keep[:, j]).tolist(), m
    assert not b["pad_mask"]["text"][~b["mask"]["text"]].any()              # official: absent text -> pad mask all 0
    # the middle face of the sorted folder is used (value 100 = index 2 of 5)
    full = P.iemocap(iemocap, "test", image_size=4)[0]["x"]["visual"]
    assert np.allclose(full[0, 0, 0].item() * P.IMAGENET_STD[0] + P.IMAGENET_MEAN[0], 100 / 255, atol=2e-3)
    again = P.iemocap(iemocap, "test", missing_rate=0.4, seed=3)
    assert (again.keep == ds.keep).all() and not (P.iemocap(iemocap, "test", missing_rate=0.4, seed=4).keep == ds.keep).all()


def test_iemocap_malformed_line(iemocap):
    lst = iemocap / "bad.txt"
    lst.write_text((iemocap / "my_test_iemo.txt").read_text().splitlines()[0] + "\nSes01F_x.mp4 [split|sign] Happy\n")
    with pytest.raises(ValueError, match=f"{lst}:2"):
        P.iemocap(iemocap, "test", list_file=lst)


# ---- AVE (HDF5) -----------------------------------------------------------------------------------
def write_ave(root, n=15, C=5, T=10, ch=4):
    root.mkdir(parents=True, exist_ok=True)
    r = np.random.default_rng(0)
    y = r.integers(0, C, n)
    lab = np.zeros((n, T, C + 1)); lab[:, :, C] = 1
    on = r.integers(0, 6, n)
    for i in range(n): lab[i, on[i]:on[i] + 4, C] = 0; lab[i, on[i]:on[i] + 4, y[i]] = 1
    aud, vis = r.normal(size=(n, T, 128)), r.normal(size=(n, T, 7, 7, ch))
    with h5py.File(root / "audio_feature.h5", "w") as f: f["avadataset"] = aud
    with h5py.File(root / "visual_feature.h5", "w") as f: f["avadataset"] = vis
    with h5py.File(root / "labels.h5", "w") as f: f["avadataset"] = lab
    orders = {"train": [14, 2, 7, 0, 9, 11, 4], "val": [1, 13, 5, 8], "test": [12, 3, 6, 10]}
    for s, o in orders.items():
        with h5py.File(root / f"{s}_order.h5", "w") as f: f["order"] = np.array(o)
    return aud, vis, y, on, orders


def test_ave_hdf5_to_mmdata(tmp_path):
    aud, vis, y, on, orders = write_ave(tmp_path / "AVE")
    d = P.load_ave(tmp_path / "AVE", block=3)
    idx = np.concatenate(list(orders.values()))
    assert d.counts() == {"train": 7, "val": 4, "test": 4} and d.shapes == {"audio": (10, 128), "visual": (10, 4)}
    assert np.allclose(d.x["audio"], aud[idx], atol=1e-6) and np.allclose(d.x["visual"], vis[idx].mean((2, 3)), atol=1e-5)
    assert (d.y == y[idx]).all() and d.classes == [f"event{c}" for c in range(5)]
    for k, i in enumerate(idx):
        seg = np.full(10, 5); seg[on[i]:on[i] + 4] = y[i]
        assert (d.seg_y[k] == seg).all()
    flat = P.load_ave(tmp_path / "AVE", spatial="flatten", classes=list("abcde"))
    assert flat.shapes["visual"] == (10, 7 * 7 * 4) and flat.classes == list("abcde")
    ds = P.AVEDataset(tmp_path / "AVE", "test")
    it = ds[0]
    assert it["x"]["visual"].shape == (10, 7, 7, 4) and int(it["y"]) == y[12] and (it["seg_y"].numpy() == d.seg_y[11]).all()
    assert collate([ds[i] for i in range(4)])["x"]["visual"].shape == (4, 10, 7, 7, 4)


def test_ave_errors_name_file_and_key(tmp_path):
    write_ave(tmp_path / "AVE")
    (tmp_path / "AVE" / "val_order.h5").unlink()
    with pytest.raises(FileNotFoundError, match="val_order.h5"):
        P.load_ave(tmp_path / "AVE")
    write_ave(tmp_path / "AVE")
    with h5py.File(tmp_path / "AVE" / "audio_feature.h5", "w") as f: f["features"] = np.zeros((15, 10, 128))
    with pytest.raises(ValueError, match=r"audio_feature.h5: no dataset 'avadataset'"):
        P.load_ave(tmp_path / "AVE")
    with pytest.raises(ValueError, match="5 event classes"):
        write_ave(tmp_path / "AVE2"); P.load_ave(tmp_path / "AVE2", classes=["a", "b"])


# ---- VGGSound-AVEL (zip of pickled arrays) ---------------------------------------------------------
def zip_pkl(path, obj, protocol=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z: z.writestr(f"{path.stem}.pkl", pickle.dumps(obj, protocol=protocol))


@pytest.fixture
def vggsound(tmp_path):
    root = tmp_path / "vgg"; root.mkdir()
    (root / "VggsoundAVEL40kCategories.txt").write_text("baby crying\ncat meowing\ndog barking\n")
    rows = ["video_id,category,split"]
    for k in range(9):
        vid = f"{k:02d}abcdefgh_{k}"
        zip_pkl(root / "audio" / f"{vid}.zip", np.arange((7 + k) * 128, dtype=np.float64).reshape(7 + k, 128), protocol=2 + k % 4)
        zip_pkl(root / "video" / f"{vid}.zip", np.full((10, 7, 7, 512), float(k)))
        zip_pkl(root / "avc" / f"{vid}.zip", (np.arange(10) < 4).astype(np.float64)[None])
        rows.append(f"{vid},{['cat meowing', 'dog barking', 'baby crying'][k % 3]},{['train', 'val', 'test'][k % 3]}")
    (root / "vggsound-avel40k.csv").write_text("\n".join(rows) + "\n")
    return root


def test_vggsound_avel_layout(vggsound):
    r = vggsound
    d = P.load_vggsound_avel(r / "vggsound-avel40k.csv", r / "audio", r / "video", r / "VggsoundAVEL40kCategories.txt", label_dir=r / "avc")
    assert d.shapes == {"audio": (10, 128), "visual": (10, 512)} and d.counts() == {"train": 3, "val": 3, "test": 3}
    assert d.y.tolist()[:3] == [1, 2, 0] and d.classes[0] == "baby crying"
    a0 = np.arange(7 * 128).reshape(7, 128)
    assert np.allclose(d.x["audio"][0, :7], a0) and np.allclose(d.x["audio"][0, 7:], a0[-1])     # repeat-last padding
    assert np.allclose(d.x["audio"][3], np.arange(10 * 128).reshape(10, 128))                        # 10 rows kept of 10
    assert (d.x["visual"][4] == 4).all() and d.seg_y[0].tolist() == [1] * 4 + [3] * 6


def test_vggsound_avel_refuses_code_in_pickles(vggsound, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self): return (os.system, (f"touch {marker}",))
    zip_pkl(vggsound / "video" / "05abcdefgh_5.zip", Evil())
    with pytest.raises(ValueError) as e:
        P.load_vggsound_avel(vggsound / "vggsound-avel40k.csv", vggsound / "audio", vggsound / "video", vggsound / "VggsoundAVEL40kCategories.txt")
    assert "refusing to unpickle" in str(e.value) and "vggsound-avel40k.csv:7" in str(e.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="expected a NumPy array"):
        P.load_numpy_pickle(pickle.dumps([1, 2, 3]))


def test_vggsound_avel_errors(vggsound):
    r = vggsound
    args = (r / "audio", r / "video", r / "VggsoundAVEL40kCategories.txt")
    (r / "bad.csv").write_text("video_id,category,split\n00abcdefgh_0,cat meowing,train\n01abcdefgh_1,dog barking,holdout\n")
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        P.load_vggsound_avel(r / "bad.csv", *args)
    (r / "bad.csv").write_text("id,label\nx,y\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: header"):
        P.load_vggsound_avel(r / "bad.csv", *args)
    (r / "bad.csv").write_text("video_id,category,split\n00abcdefgh_0,cat meowing,train\n01abcdefgh_1,horse,val\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: category 'horse'"):
        P.load_vggsound_avel(r / "bad.csv", *args)
    (r / "audio" / "02abcdefgh_2.zip").unlink()
    with pytest.raises(FileNotFoundError, match=r"02abcdefgh_2.zip.*vggsound-avel40k.csv:4"):
        P.load_vggsound_avel(r / "vggsound-avel40k.csv", *args)
