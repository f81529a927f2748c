"""Uni-Code pretraining: kill-and-resume equals an uninterrupted run, with either decoupler (its networks and their
optimizer included)."""
import pytest
import torch

from mla_cmg.core import seed_everything, set_threads
from mla_cmg.engine import TrainConfig, fit
from mla_cmg.cmg.model import PairedSeqDataset, UniCode, cmg_config

SMALL = dict(dim=16, n_codes=24, spec_dim=8, enc_ff=32, club_hidden=16, mi_iters=2, reset_after=3, club_start=2, club_warmup=4)


def _data():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 6, 5, generator=g)
    return PairedSeqDataset({"a": a, "b": a[..., :3] + 0.1 * torch.randn(40, 6, 3, generator=g)})


def _run(run_dir, stop_after=None, **kw):
    set_threads(1)
    ds = _data()
    seed_everything(0)
    model = UniCode({"a": 5, "b": 3}, cmg_config(**{**SMALL, **kw}))
    cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, grad_clip=0.5, select_metric="train_steps", select_mode="max",
                      seed=0, progress=False)
    res = fit(model, ds, ds, cfg=cfg, run_dir=run_dir, stop_after=stop_after, device="cpu")
    return model, res


@pytest.mark.parametrize("decoupler", ["club", "grl"])
def test_resume_equals_uninterrupted(tmp_path, decoupler):
    m1, r1 = _run(tmp_path / "a", decoupler=decoupler)
    _, r_part = _run(tmp_path / "b", stop_after=2, decoupler=decoupler)
    assert r_part.epochs_run == 2
    m2, r2 = _run(tmp_path / "b", decoupler=decoupler)  # a fresh process would do the same: resumes from last.pt
    assert r2.epochs_run == 4 and [h["epoch"] for h in r2.history] == [0, 1, 2, 3]
    for h1, h2 in zip(r1.history, r2.history):
        for k in h1:
            if k != "time_s": assert h1[k] == h2[k], (k, h1[k], h2[k])
    assert r1.val == r2.val
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(k.startswith(f"{decoupler}.") for k in s1)                      # the decoupler's networks, compared
    assert int(m2.vq.n_resets) == int(m1.vq.n_resets) and int(m2.train_steps) == int(m1.train_steps) > 0
    o1, o2 = m1.decoupler_opt.state_dict()["state"], m2.decoupler_opt.state_dict()["state"]   # its optimizer state
    assert o1.keys() == o2.keys() and all(torch.equal(o1[i]["exp_avg"], o2[i]["exp_avg"]) for i in o1)   # restored
    w = f"train_{decoupler}_weight"
    assert r1.history[-1][w] == 1.0 and r1.history[0][w] < 1.0                  # the schedule ran


@pytest.mark.parametrize("first, then", [("club", "none"), ("club", "grl"), ("grl", "none")])
def test_resume_rejects_other_decoupler(tmp_path, first, then):
    _run(tmp_path / "c", stop_after=1, decoupler=first)
    with pytest.raises((RuntimeError, ValueError), match=first):   # never a silent resume into another model
        _run(tmp_path / "c", decoupler=then)
