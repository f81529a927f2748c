"""The synthetic generator: determinism, per-segment labels, offsets, label-free nuisance, and the interaction knob."""
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mla_cmg.data.format import linear_probe, standardize
from mla_cmg.data.synthetic import make_synthetic


def test_deterministic_from_seed():
    a, b, c = make_synthetic(n=300, seed=5), make_synthetic(n=300, seed=5), make_synthetic(n=300, seed=6)
    for m in a.modalities:
        assert np.array_equal(a.x[m], b.x[m]) and not np.array_equal(a.x[m], c.x[m])
    assert np.array_equal(a.y, b.y) and np.array_equal(a.split, b.split) and np.array_equal(a.seg_y, b.seg_y)


def test_shapes_labels_and_segments():
    d, lat = make_synthetic(n=500, T=10, dims=(6, 9), n_classes=5, event_len=(2, 4), seed=0, return_latents=True)
    assert d.shapes == {"a": (10, 6), "b": (10, 9)} and d.n_classes == 5 and d.seg_y.shape == (500, 10)
    assert d.x["a"].dtype == np.float32 and (np.bincount(d.y) == 100).all()
    ev = d.seg_y != 5
    assert (ev.sum(1) == lat["length"]).all() and (ev.argmax(1) == lat["onset"]).all()
    assert ((d.seg_y == d.y[:, None]) | (d.seg_y == 5)).all()
    assert set(np.unique(d.split)) == {"train", "val", "test"}


def test_offset_shifts_each_modality():
    d, lat = make_synthetic(n=200, n_modalities=3, dims=(8, 8, 8), snr=(4, 4, 4), noise=0.05, nuisance=0.0,
                            offset=2, T=10, event_len=(2, 3), seed=1, return_latents=True)
    on = {m: ((d.x[m] ** 2).sum(-1) > 2).argmax(1) for m in d.modalities}
    assert (on["a"] == lat["onset"]).all() and (on["b"] == on["a"] + 2).all() and (on["c"] == on["a"] + 4).all()
    with pytest.raises(ValueError, match="event_len"):
        make_synthetic(n=10, T=6, offset=3, event_len=(3, 4))


def test_nuisance_is_independent_of_label():
    d, lat = make_synthetic(n=4000, seed=2, return_latents=True)
    z = lat["nuisance"]["a"]
    # class-conditional means of the nuisance factor: within sampling error of 0 (std 1/sqrt(400) = 0.05)
    means = np.stack([z[d.y == c].mean(0) for c in range(10)])
    assert np.abs(means).max() < 0.25
    # without signal and noise the features are the nuisance alone: constant over time, rank nuisance_dim
    q = make_synthetic(n=300, snr=(0.0, 0.0), noise=0.0, nuisance=2.0, nuisance_dim=3, seed=2).x["b"]
    assert np.allclose(q, q[:, :1], atol=1e-5)
    sv = np.linalg.svd(q[:, 0], compute_uv=False)
    assert sv[2] > 1 and sv[3] < 1e-3 * sv[0]


def _mlp_acc(d):
    from sklearn.neural_network import MLPClassifier
    s, _ = standardize(d)
    X = np.concatenate([s.x[m].reshape(s.n, -1) for m in s.modalities], 1)
    tr, te = s.split == "train", s.split == "test"
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        return MLPClassifier((128,), max_iter=300, random_state=0).fit(X[tr], s.y[tr]).score(X[te], s.y[te])


def test_interaction_needs_both_modalities():
    """With every class pair XOR-coded no modality alone, and no additive fusion, beats ~50 %; a joint model does."""
    d = make_synthetic(n=3000, interaction=1.0, snr=(2.0, 2.0), seed=0)
    acc = linear_probe(d)
    assert acc["a"] < 0.6 and acc["b"] < 0.6 and acc["late_fusion"] < 0.6 and acc["concat"] < 0.6, acc
    assert _mlp_acc(d) > 0.75


def test_zero_interaction_makes_modalities_redundant():
    """At interaction 0 each modality alone carries the label (high SNR: both near the optimum)."""
    acc = linear_probe(make_synthetic(n=2000, interaction=0.0, snr=(3.0, 3.0), seed=0))
    assert acc["a"] > 0.9 and acc["b"] > 0.9, acc


def test_default_knobs_make_a_dominant_and_b_lazy():
    acc = linear_probe(make_synthetic(seed=0))
    assert acc["a"] > acc["b"] + 0.2 and acc["late_fusion"] > acc["a"], acc


def test_bad_knobs():
    with pytest.raises(ValueError, match="n_modalities"): make_synthetic(n=10, n_modalities=4)
    with pytest.raises(ValueError, match="one entry per modality"): make_synthetic(n=10, n_modalities=3)
    with pytest.raises(ValueError, match="interaction"): make_synthetic(n=10, interaction=1.5)
