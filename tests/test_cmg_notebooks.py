"""Papermill smoke run of the CMG experiment notebooks on a tiny generated dataset: the documented files and keys."""
import json, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs" / "experiments"


def _papermill(nb, out_nb, params: dict, cwd):
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out_nb), "-k", "mla_cmg", "--cwd", str(cwd),
           "-y", json.dumps(params), "--no-progress-bar"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]


def test_pretrain_and_downstream_notebooks(tmp_path):
    pytest.importorskip("papermill")
    from mla_cmg.data.format import save_dataset
    from mla_cmg.data.synthetic import make_synthetic
    data = tmp_path / "tiny.npz"
    save_dataset(data, make_synthetic(n=160, T=6, dims=(5, 4), n_classes=4, event_len=(2, 4), seed=0))
    pre = tmp_path / "pre"
    _papermill(NBS / "pretrain_cmg.ipynb", tmp_path / "pre.ipynb",
               dict(dataset=str(data), variant="full", mm_ema="cross_attention", codebook_size=16, seed=1, epochs=1,
                    out_dir=str(pre), dim=16, spec_dim=8, batch_size=32, reset_after=5,
                    config={"enc_ff": 32, "club_hidden": 8, "mi_iters": 1}), ROOT)
    m = json.loads((pre / "metrics.json").read_text())
    assert m["variant"] == "full" and m["mm_ema"] == "cross_attention" and m["codebook_size"] == 16
    for part in ("val", "test"):
        for k in ("loss", "recon", "commit", "club", "cpc", "cmcm", "perplexity_a", "perplexity_b", "used_all",
                  "used_partial", "used_none", "agreement"):
            assert k in m[part], (part, k)
    assert (pre / "model.pt").exists() and (pre / "history.csv").read_text().startswith("epoch")
    down = tmp_path / "down"
    _papermill(NBS / "downstream_cmg.ipynb", tmp_path / "down.ipynb",
               dict(checkpoint=str(pre / "model.pt"), dataset=str(data), seed=0, out_dir=str(down), epochs=1), ROOT)
    d = json.loads((down / "downstream.json").read_text())
    for k in ("xmod_acc_a_to_b", "xmod_acc_b_to_a", "inmod_acc_a", "inmod_acc_b", "loc_f1_a_to_b", "loc_f1_b_to_a",
              "recall@1_a_to_b", "recall@5_b_to_a", "recall@10_a_to_b", "test_perplexity_a", "test_used_all"):
        assert k in d, k
    assert json.loads((down / "metrics.json").read_text()) == d
