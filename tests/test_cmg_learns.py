"""The default full Uni-Code learns codes that carry the class, in-modality and across modalities, on a small clean pairing.

The check that would have caught the collapse of earlier versions (CLUB at full weight from the first step, and a
reset that re-initialised the whole codebook every N_re + 1 steps): in-modality and zero-shot cross-modal accuracy at
chance, code perplexity 1-3. Everything is the default `CMGConfig('full')` except the sizes and the length of the run,
and the step counts of the schedule (CLUB start and warm-up, N_re) scaled with it.
"""
import numpy as np
import pytest

from mla_cmg.cmg.downstream import DownstreamConfig, paired_only
from mla_cmg.cmg.run import run_experiment, split_params
from mla_cmg.core import set_threads
from mla_cmg.data.format import standardize
from mla_cmg.data.synthetic import make_synthetic

SMALL = dict(dim=16, spec_dim=16, n_codes=32, enc_ff=32, club_hidden=16, enc_dropout=0.0, cpc_anchors="all",
             reset_after=25, club_start=60, club_warmup=60)


def _pairing(seed=0):
    "Two sequence modalities of one class event, both clean (high SNR, little nuisance): 4 classes, 800 samples."
    d = make_synthetic(n=800, T=6, dims=(8, 8), n_classes=4, snr=(3.0, 3.0), nuisance=0.3, nuisance_dim=2,
                       event_len=(3, 5), noise=0.5, seed=seed)
    return standardize(paired_only(d))[0]


@pytest.mark.parametrize("seed", [0])
def test_default_full_model_codes_carry_the_class(seed):
    set_threads(1)
    data = _pairing()
    model, train, down, _ = split_params({**SMALL, "epochs": 30, "batch_size": 32, "lr": 3e-3,
                                          "seed": seed, "head_epochs": 20})
    assert model.decoupler == "club" and model.cpc and model.mmema and model.reset and model.cmcm and model.mm_ema == "cross_attention"
    n_steps = 30 * int(np.ceil((data.split == "train").sum() / 32))
    assert n_steps > model.club_start + model.club_warmup          # CLUB reaches its full weight within the run
    m = run_experiment(data, model, train, down)["metrics"]
    chance = m["chance_acc"]
    for x in ("a", "b"):
        assert m[f"inmod_acc_{x}"] > chance + 0.35, m                 # chance is 0.25 here
        assert m[f"test_perplexity_{x}"] > 5, m                       # not collapsed onto a few codes
    assert m["xmod_acc_a_to_b"] > chance + 0.25 and m["xmod_acc_b_to_a"] > chance + 0.25, m
