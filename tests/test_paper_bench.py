"""The papers' datasets through the pipeline's spine (chapter 15): raw clips in CREMA-D's layout -> `prepare_paper`
(the preprocessing command run from the `data.crema_d` knobs) -> the index a run finds by name -> one MLA run by
`launch.run_params`, as a pipeline stage makes it; and the DVC wiring of a paper profile."""
import json, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from clips import write_video, write_wav
from mla_cmg.core import ConfigError, load_json
from mla_cmg.data.paper_bench import PaperData, load_paper, prepare_paper, protocol_card
from mla_cmg.launch import run_params
from mla_cmg.mla.run import load_mla_data
from mla_cmg.runner import apply_profile

ROOT = Path(__file__).resolve().parents[1]
EMO = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
def sid(k): return f"{1001 + k % 6}_{['DFA', 'IEO', 'TIE'][k // 6]}_{EMO[k % 6]}_{['XX', 'HI', 'LO', 'MD'][k % 4]}"
CORRUPT = sid(9)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    "A working folder with the CREMA-D download in data/raw/papers/crema_d: 18 clips of 6 actors, one unreadable."
    raw = tmp_path / "data" / "raw" / "papers" / "crema_d"
    for k in range(18):
        write_wav(raw / "AudioWAV" / f"{sid(k)}.wav", 0.3 * np.sin(2 * np.pi * (300 + 100 * k) * np.arange(24000) / 16000))
        if sid(k) == CORRUPT: (raw / "VideoFlash" / f"{CORRUPT}.flv").write_bytes(b"FLV\x01" + bytes(300))
        else: write_video(raw / "VideoFlash" / f"{sid(k)}.flv", 2, fps=5, size=(16, 12))
    monkeypatch.chdir(tmp_path)
    return tmp_path


KNOBS = {"val_frac": 0.2, "image_size": 16, "workers": 1, "augment": True}


def test_raw_clips_to_a_run(workdir, capfd):
    out = prepare_paper("crema_d", KNOBS)
    assert out == Path("data/prepared/crema_d.npz") and out.exists()
    rec = load_json("data/papers/crema_d/preprocess.json")
    assert CORRUPT in json.dumps(rec.get("failed", rec.get("failures")))          # the unreadable clip is reported ...
    data = load_mla_data("crema_d", root="data/prepared")
    assert isinstance(data, PaperData) and CORRUPT not in set(data.ids)        # ... and left out; the others are in
    assert data.n == 17 and sum(data.counts().values()) == 17 and all(data.counts().values())
    assert data.shapes == {"audio": (1024, 128), "visual": (3, 3, 16, 16)} and data.n_classes == 6
    sheet = load_json("data/prepared/crema_d.json")
    assert sheet["content_sha256"] == data.sha256 and sheet["n_per_split"] == data.counts()
    # one MLA run by the pipeline's run body, on the clips streamed from disk
    p = {"dataset": "crema_d", "method": "mla", "epochs": 1, "batch_size": 4, "eval_batch_size": 8, "d": 8, "hidden": 4,
         "sequence": "cnn", "video": "cnn", "probe": False, "out_dir": "runs/mla/crema_d/mla/seed0", "seed": 0}
    res = run_params("mla", dict(p))
    m = load_json("runs/mla/crema_d/mla/seed0/metrics.json")
    assert m["dataset"] == "crema_d" and 0 <= m["acc_multimodal"] <= 1 and m["n_classes"] == 6
    assert res["features"]["y"].shape == (data.counts()["test"],)
    assert load_json("runs/mla/crema_d/mla/seed0/config.json")["config"]["data"] == {"name": "crema_d", "sha256": data.sha256}
    # the same run folder with other prepared clips (another split seed): refused, not resumed
    shutil.rmtree("data/papers/crema_d")
    prepare_paper("crema_d", {**KNOBS, "seed": 1})
    assert load_paper("data/prepared/crema_d.npz").sha256 != data.sha256
    with np.load("data/prepared/crema_d.npz", allow_pickle=False) as z:   # the index holds how the clips were made
        assert json.loads(str(z["preprocess"]))["settings"]["seed"] == 1
    with pytest.raises(ConfigError, match="another configuration"):
        run_params("mla", dict(p))
    # options that cannot apply to streamed clips are errors that name them
    with pytest.raises(ConfigError, match="missing_rate"):
        load_mla_data("crema_d", root="data/prepared", missing_rate=0.3)


def test_missing_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data/raw/papers/crema_d.*AudioWAV.*ln -s"):
        prepare_paper("crema_d", {})
    with pytest.raises(FileNotFoundError, match="dvc repro prepare_paper"):
        load_mla_data("crema_d", root="data/prepared")


@pytest.mark.parametrize("name", ["crema_d", "kinetics_sounds", "ave"])
def test_paper_profile_wires_the_stages(tmp_path, name):
    "`profiles.paper_<name>` turns on prepare_paper@<name> (reading data/raw/papers/<name> and data.<name>) and its runs."
    P = apply_profile(yaml.safe_load((ROOT / "params.yaml").read_text()), f"paper_{name}")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(P, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    stages = subprocess.run([dvc, "stage", "list", "--name-only"], cwd=tmp_path, check=True, capture_output=True,
                            text=True).stdout.split()
    assert f"prepare_paper@{name}" in stages
    wing = "cmg" if name == "ave" else "mla"
    runs = [s for s in stages if s.startswith(f"{wing}@{name}-")]
    assert len(runs) == len(P["pipeline"][wing]["variants"]) >= 4
    lock_free = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]["prepare_paper"]
    assert "data/raw/papers/${item.name}" in lock_free["deps"] and "data.${item.name}" in lock_free["params"]
    assert "| selection |" in protocol_card(name, P)


def test_in_process_augmentation_depends_on_seed_and_epoch_only():
    "Loading in the training process, an augmenting dataset's draws are a function of (seed, epoch): a resumed run repeats them."
    import torch
    from mla_cmg.engine import make_loader

    class Augmenting(torch.utils.data.Dataset):
        def __init__(self): self.rng = np.random.default_rng(123)
        def __len__(self): return 8
        def __getitem__(self, i): return torch.tensor(self.rng.random())
        def seed_worker(self, seed): self.rng = np.random.default_rng(seed)

    draws = lambda ds, epoch: torch.cat(list(make_loader(ds, 4, shuffle=True, seed=0, epoch=epoch)))
    ds = Augmenting()
    e0, e1 = draws(ds, 0), draws(ds, 1)
    assert not torch.equal(e0, e1)                        # each epoch draws anew
    resumed = Augmenting(); resumed.rng.random(100)        # another process, in another state, starting at epoch 1
    assert torch.equal(draws(resumed, 1), e1)
    assert not torch.equal(torch.cat(list(make_loader(Augmenting(), 4, shuffle=True, seed=1, epoch=1))), e1)
