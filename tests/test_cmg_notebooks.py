"""Papermill run of the CMG experiment notebook on a tiny generated dataset: the documented files and keys, and errors."""
import json, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs" / "experiments"


def _papermill(nb, out_nb, params: dict, cwd, ok: bool = True):
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out_nb), "-k", "mla_cmg", "--cwd", str(cwd),
           "-y", json.dumps({"params": params}), "--no-progress-bar"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert (r.returncode == 0) == ok, r.stderr[-3000:]
    return r


def test_train_cmg_notebook(tmp_path):
    pytest.importorskip("papermill")
    from mla_cmg.data.format import save_dataset
    from mla_cmg.data.synthetic import make_synthetic
    from mla_cmg.cmg.model import load_pretrained
    data = tmp_path / "tiny.npz"
    save_dataset(data, make_synthetic(n=160, T=6, dims=(5, 4), n_classes=4, event_len=(2, 4), seed=0))
    out = tmp_path / "run"
    params = dict(dataset=str(data), mm_ema="cross_attention", n_codes=16, seed=1, epochs=1,
                  out_dir=str(out), dim=16, spec_dim=8, batch_size=32, reset_after=5, head_epochs=1, enc_ff=32,
                  club_hidden=8, mi_iters=1, club_start=1, club_warmup=2)
    _papermill(NBS / "train_cmg.ipynb", tmp_path / "run.ipynb", params, ROOT)
    m = json.loads((out / "metrics.json").read_text())
    cfg = m["config"]["model"]
    assert cfg["decoupler"] == "club" and cfg["mm_ema"] == "cross_attention" and cfg["n_codes"] == 16
    for part in ("val", "test"):
        for k in ("loss", "recon", "commit", "club", "cpc", "cmcm", "perplexity_a", "perplexity_b", "used_all",
                  "used_partial", "used_none", "agreement"):
            assert k in m[part], (part, k)
    for k in ("xmod_acc_a_to_b", "xmod_acc_b_to_a", "inmod_acc_a", "inmod_acc_b", "loc_f1_a_to_b", "loc_f1_b_to_a",
              "recall@1_a_to_b", "recall@5_b_to_a", "recall@10_a_to_b", "test_perplexity_a", "test_used_all"):
        assert k in m, k
    assert (out / "history.csv").read_text().startswith("epoch") and (out / "steps.csv").read_text().startswith("step")
    assert "time_s" not in (out / "history.csv").read_text() and "train_s" not in m   # timings live in timing.json
    # the saved model is the one that was evaluated: scoring it again gives the same numbers
    import torch
    from mla_cmg.cmg.downstream import DownstreamConfig, downstream_eval, prepare_data
    from mla_cmg.core import seed_everything
    torch.set_num_threads(1); seed_everything(1)
    model = load_pretrained(out / "model.pt")
    assert model.cfg.decoupler == "club" and model.cfg.n_codes == 16
    again = downstream_eval(model, prepare_data(str(data)), DownstreamConfig(head_epochs=1), seed=1)
    for k in ("test_perplexity_a", "test_used_all", "recall@5_a_to_b", "xmod_acc_a_to_b", "inmod_acc_b"):
        assert again[k] == m[k], (k, again[k], m[k])
    # a misspelt key fails before anything is trained, naming the key and the closest valid name
    r = _papermill(NBS / "train_cmg.ipynb", tmp_path / "bad.ipynb", {**params, "lrr": 0.1, "out_dir": str(tmp_path / "bad")},
                   ROOT, ok=False)
    assert "'lrr'" in r.stderr and "'lr'" in r.stderr and not (tmp_path / "bad" / "train").exists()
    # the same folder with another configuration is refused, never resumed into the old model
    r = _papermill(NBS / "train_cmg.ipynb", tmp_path / "other.ipynb", {**params, "decoupler": "none"}, ROOT, ok=False)
    assert "another configuration" in r.stderr and "model.decoupler: 'club' -> 'none'" in r.stderr
