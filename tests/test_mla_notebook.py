"""Smoke run of the MLA experiment notebook with papermill on a tiny synthetic dataset file: it writes the
documented outputs, and bad parameters stop it with a clear message."""
import csv, json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from mla_cmg.data.format import save_dataset
from mla_cmg.data.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "nbs" / "experiments" / "train_mla.ipynb"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _papermill(tmp_path, **params):
    out = tmp_path / "run.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(NB), str(out), "-k", "mla_cmg", "--cwd", str(ROOT),
           "--no-progress-bar", "-y", json.dumps({"params": params})]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_dataset(p, make_synthetic(n=240, T=4, dims=(5, 5), n_classes=4, event_len=(2, 3), seed=0))
    return p


def test_smoke_run_writes_documented_outputs(tmp_path, tiny):
    out_dir = tmp_path / "run"
    r = _papermill(tmp_path, dataset=str(tiny), method="mla", epochs=2, d=8, hidden=8, layers=1, batch_size=32,
                   out_dir=str(out_dir), seed=1)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out_dir / "metrics.json").read_text())
    for k in ("acc_multimodal", "acc_a", "acc_b", "f1_macro", "modality_gap", "epochs_run", "protocol",
              "probe_a", "probe_b", "official_acc_multimodal"):
        assert k in m, k
    assert m["epochs_run"] == 2 and m["protocol"] == "val" and 0 <= m["acc_multimodal"] <= 1
    with np.load(out_dir / "features.npz") as f:
        assert {"h_a", "h_b", "y", "mask_a", "mask_b"} <= set(f.files)
        assert f["h_a"].shape == (len(f["y"]), 8)
    rows = list(csv.DictReader((out_dir / "history.csv").open()))
    assert len(rows) == 2 and {"train_loss", "train_loss_a", "val_acc_a", "val_acc_b", "test_acc"} <= set(rows[0])


def test_bad_parameter_stops_with_clear_error(tmp_path, tiny):
    # one kernel start is enough here; every bad choice is checked in tests/test_mla_methods.py
    r = _papermill(tmp_path, dataset=str(tiny), epochs=1, out_dir=str(tmp_path / "run"), hgm="ewc")
    assert r.returncode != 0
    assert "ConfigError" in r.stderr and "'ewc'" in r.stderr and "owm" in r.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_misspelt_parameter_is_an_error(tmp_path, tiny):
    r = _papermill(tmp_path, dataset=str(tiny), epochs=1, out_dir=str(tmp_path / "run"), lrr=0.1)
    assert r.returncode != 0 and "'lrr'" in r.stderr and not (tmp_path / "run").exists()
