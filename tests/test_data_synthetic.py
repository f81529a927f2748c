"""The synthetic generator: determinism, per-segment labels, offsets, label-free nuisance, the interaction knob, and the
instance-level knobs (symbols, AR(1) nuisance, private events, latents) whose defaults leave the old arrays unchanged."""
import hashlib, json, warnings
from pathlib import Path

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


# ---- instance-level knobs ------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def _hash(d):
    from mla_cmg.data.format import to_arrays
    h = hashlib.sha256()
    for k, a in to_arrays(d).items():
        a = np.ascontiguousarray(a); h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode()); h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["synthetic", "synthetic_xor", "synthetic3"])
def test_existing_benchmarks_are_byte_identical(name):
    "The prepared datasheets (written before the new knobs existed) still match what the generator builds."
    from mla_cmg.core import load_params
    from mla_cmg.data import benchmarks as bm
    want = json.loads((ROOT / "data" / "prepared" / f"{name}.json").read_text())["content_sha256"]
    assert bm.content_hash(bm.build(name, load_params(ROOT / "params.yaml", f"data.{name}"))) == want


def test_neutral_knob_values_change_nothing():
    kw = dict(n=400, n_modalities=3, dims=(6, 7, 8), snr=(2, 1, 1), offset=1, seed=9)
    assert _hash(make_synthetic(**kw)) == _hash(make_synthetic(**kw, n_symbols=0, nuisance_rho=1.0, private_rate=0.0, symbol_snr=5.0))


def test_symbols_are_shared_at_the_lag_and_instance_specific():
    d, lat = make_synthetic(n=300, T=9, dims=(5, 11), snr=(0, 0), nuisance=0.0, noise=0.02, offset=2, event_len=(3, 5),
                            n_symbols=4, seed=3, return_latents=True, latents=True)
    sym = d.latents["symbols"]
    assert sym.dtype == np.int64 and ((sym >= 0) == (d.seg_y != 10)).all()
    dec = {m: np.argmax(d.x[m] @ lat["G"][i].T, -1) for i, m in enumerate("ab")}
    on = sym[:, :7] >= 0
    assert np.array_equal(dec["a"][:, :7][on], sym[:, :7][on]) and np.array_equal(dec["b"][:, 2:][on], sym[:, :7][on])
    assert np.array_equal(lat["symbols"]["b"][:, 2:], lat["symbols"]["a"][:, :7])
    assert (d.latents["lag_a"] == 0).all() and (d.latents["lag_b"] == 2).all()
    seqs = [tuple(s[s >= 0]) for s in sym[d.y == 1]]
    assert len(set(seqs)) > 0.8 * len(seqs)


def test_ar1_nuisance_constant_at_rho_1_and_stationary():
    from mla_cmg.data.synthetic import _ar1
    d = make_synthetic(n=100, T=7, nuisance=1.5, seed=1, latents=True)
    assert (d.latents["nuisance_b"] == d.latents["nuisance_b"][:, :1]).all() and d.latents["nuisance_b"].shape == (100, 7, 4)
    for rho in (0.0, 0.3, 0.9, 0.999):
        eye = np.eye(15)
        coef = _ar1(eye[:, :1], eye[:, 1:, None], rho)[..., 0]      # coefficients of z_t on its unit-variance inputs
        assert np.allclose((coef ** 2).sum(0), 1, rtol=0, atol=1e-12)
        assert np.allclose((coef[:, :-1] * coef[:, 1:]).sum(0), rho, rtol=0, atol=1e-12)
    d, lat = make_synthetic(n=3000, T=10, nuisance=2.0, nuisance_rho=0.7, seed=4, return_latents=True, latents=True)
    z = d.latents["nuisance_a"].astype(np.float64)
    assert np.abs(z.var((0, 2)) - 1).max() < 0.1 and abs(np.mean(z[:, 1:] * z[:, :-1]) - 0.7) < 0.04
    d0 = make_synthetic(n=3000, T=10, nuisance=0.0, nuisance_rho=0.7, seed=4, latents=True)
    assert "nuisance_a" not in d0.latents and np.array_equal(d0.y, d.y)
    assert np.allclose(d.x["b"] - d0.x["b"], 2.0 * lat["nuisance_t"]["b"] @ lat["W"][1], atol=1e-5)


def test_private_events_touch_only_their_modality():
    kw = dict(n=1000, T=10, offset=1, n_symbols=5, nuisance_rho=0.5, seed=8, latents=True)
    dp, dn = make_synthetic(**kw, private_rate=0.4), make_synthetic(**kw)
    for m in "ab":
        pm = dp.latents[f"private_{m}"]
        diff = np.abs(dp.x[m] - dn.x[m]).sum(-1)
        assert pm.dtype == bool and (diff[~pm] == 0).all() and (diff[pm] > 0).all()
        assert abs(pm.any(1).mean() - 0.4) < 0.06
    assert np.array_equal(dp.seg_y, dn.seg_y) and np.array_equal(dp.y, dn.y)
    for other in (dict(n_symbols=0), dict(nuisance_rho=1.0)):             # one knob does not move another's draws
        do = make_synthetic(**{**kw, **other}, private_rate=0.4)
        assert all(np.array_equal(do.latents[f"private_{m}"], dp.latents[f"private_{m}"]) for m in "ab")


def test_instance_knob_errors():
    with pytest.raises(ValueError, match="n_symbols"): make_synthetic(n=10, n_symbols=1)
    with pytest.raises(ValueError, match="interaction"): make_synthetic(n=10, n_symbols=3, interaction=0.2)
    with pytest.raises(ValueError, match="nuisance_rho"): make_synthetic(n=10, nuisance_rho=1.2)
    with pytest.raises(ValueError, match="private_rate"): make_synthetic(n=10, private_rate=-0.1)
