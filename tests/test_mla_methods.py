"""MLA outside the notebooks: a killed-and-resumed run ends exactly like an uninterrupted one, and bad
choices fail with messages that name the allowed values."""
import pytest
import torch
from torch.utils.data import Dataset

from mla_cmg.core import ConfigError, seed_everything
from mla_cmg.encoders import EncoderConfig
from mla_cmg.engine import TrainConfig, fit
from mla_cmg.mla.methods import METHODS, build_method, known_methods, method_options

torch.set_num_threads(1)


class Toy(Dataset):
    "Two modalities (a vector and a sequence) that both carry the class, with a few samples missing b."
    def __init__(self, n, seed, C=3):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(C, (n,), generator=g)
        ca = torch.randn(C, 6, generator=torch.Generator().manual_seed(99))
        cb = torch.randn(C, 4, 3, generator=torch.Generator().manual_seed(98))
        self.x = {"a": ca[self.y] + torch.randn(n, 6, generator=g), "b": cb[self.y] + 2 * torch.randn(n, 4, 3, generator=g)}
        self.mask = {"a": torch.ones(n, dtype=torch.bool), "b": torch.rand(n, generator=g) > 0.2}

    def __len__(self): return len(self.y)

    def __getitem__(self, i):
        return dict(x={m: v[i] * self.mask[m][i] for m, v in self.x.items()},
                    mask={m: v[i] for m, v in self.mask.items()}, y=self.y[i], idx=torch.tensor(i))


SHAPES, C = {"a": (6,), "b": (4, 3)}, 3
ENC = EncoderConfig(d=16, hidden=16, layers=2, dropout=0.1)   # dropout: randomness inside the step


def _strip(h):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in h]


@pytest.mark.parametrize("spec", [dict(hgm="owm", order="random"), dict(hgm="official", fusion="batch"),
                                  dict(method="ogm_ge", end=3), dict(method="ume"), dict(method="mmpareto"),
                                  dict(method="agm", end=3), dict(method="inforeg", window=2)])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, spec):
    tr, va, te = Toy(160, 0), Toy(80, 1), Toy(80, 2)
    cfg = TrainConfig(epochs=5, batch_size=32, optimizer="sgd", lr=0.05, weight_decay=1e-4, lr_step=2,
                      progress=False, seed=3)
    seed_everything(3); full_m = build_method(spec, SHAPES, C, ENC)
    full = fit(full_m, tr, va, te, cfg, run_dir=tmp_path / "full", device="cpu")
    seed_everything(3); part = fit(build_method(spec, SHAPES, C, ENC), tr, va, te, cfg, run_dir=tmp_path / "cut",
                                   device="cpu", stop_after=2)
    assert part.epochs_run == 2
    seed_everything(999); m = build_method(spec, SHAPES, C, ENC)      # a different init: the checkpoint must win
    resumed = fit(m, tr, va, te, cfg, run_dir=tmp_path / "cut", device="cpu")
    assert _strip(resumed.history) == _strip(full.history)
    assert resumed.test == full.test and resumed.val == full.val and resumed.best_epoch == full.best_epoch
    for (n, p), q in zip(m.state_dict().items(), full_m.state_dict().values()):
        assert torch.equal(p, q), n
    if spec.get("method", "mla") == "mla":
        assert m.hgm.P.numel() and int(m.hgm.calls) == int(full_m.hgm.calls) > 0


@pytest.mark.parametrize("bad,word", [(dict(method="mla2"), "method"), (dict(hgm="ewc"), "hgm"),
                                      (dict(fusion="gated"), "fusion"), (dict(schedule="epoch"), "schedule"),
                                      (dict(order="sorted"), "order"), (dict(method="joint", head="gru"), "head"),
                                      (dict(method="unimodal"), "modality")])
def test_bad_choices_are_clear_errors(bad, word):
    with pytest.raises(ConfigError, match=word) as e:
        build_method(bad, SHAPES, C, ENC)
    val = bad.get("method") if len(bad) > 1 or "method" in bad else next(iter(bad.values()))
    val = next(v for k, v in bad.items() if k != "method") if len(bad) > 1 else val
    assert val == "unimodal" or val in str(e.value)


@pytest.mark.parametrize("name", known_methods())
def test_a_key_of_another_method_names_the_method_and_its_keys(name):
    "Every registered method refuses every other method's option that it does not take itself, naming itself and its keys."
    e = METHODS[name]
    foreign = sorted({k for o in METHODS.values() for k in o.keys} - set(e.keys))
    assert foreign
    for k in foreign:
        with pytest.raises(ConfigError) as err:
            method_options({"method": name, k: 1})
        assert f"'{k}'" in str(err.value) and f"method {name!r} takes {e.keys}" in str(err.value), str(err.value)


@pytest.mark.parametrize("name", known_methods())
def test_every_registered_method_builds_and_records_its_options(name):
    "The defaults build (unimodal needs its modality); the options round-trip through a plain mapping."
    kw = {"modality": "a"} if name == "unimodal" else {}
    opts = method_options({"method": name, **kw})
    import dataclasses
    assert method_options(dataclasses.asdict(opts)) == opts
    m = build_method(opts, SHAPES, C, ENC)
    assert isinstance(m, METHODS[name].cls) and m.fuses_unimodal == METHODS[name].fused


def test_unknown_unimodal_modality():
    with pytest.raises(ConfigError, match="'c'"):
        build_method(dict(method="unimodal", modality="c"), SHAPES, C, ENC)
