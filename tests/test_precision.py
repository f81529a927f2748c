"""The runtime fields of `TrainConfig` (issue 22): precision, channels_last, compile, num_workers, pin_memory.

At their defaults nothing changes, bitwise, and nothing new is recorded; bf16 autocast agrees with fp32 within what
bfloat16's precision allows, in one process and under torchrun; the quantities that must stay float32 do; the
memory layout and compilation do not change the outputs beyond float32 rounding; loader workers repeat and draw
different streams; bad values are refused naming the field.

Tolerances. bfloat16 keeps 8 significant bits: unit roundoff U = 2**-8 (about 0.4 %). Under autocast every matrix
product rounds its two operands to bf16 (relative error <= 2U per product, accumulated in float32); the models here
are at most 4 products deep, so a forward value, a loss or a gradient is off by at most about 8U = 2**-5 relatively.
SGD's step is linear in the gradient, so after a few steps the parameters' movement is off by <= 8U of itself.
Adam's step is not: it divides each coordinate by its own gradient scale, so a coordinate whose gradient is
rounding noise moves by up to lr in either run; its parameters are bounded by 2 * lr * steps, its losses by 8U.
"""
import copy, dataclasses, json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import CASES            # the tiny MLA / Uni-Code cases of the torchrun tests (float32 here)
from test_ddp import _run               # runs tests/ddp_worker.py in one process or under torchrun

from mla_cmg.core import ConfigError
from mla_cmg.engine import (RUNTIME_DEFAULTS, TrainConfig, _cfg_dict, check_runtime, drop_runtime_defaults, fit,
                            make_loader)

U = 2.0 ** -8
LOSS_REL = 8 * U                        # see the module docstring


def _fit(case, **runtime):
    model, (tr, va, te), cfg, collate = CASES[case]()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    res = fit(model, tr, va, te, dataclasses.replace(cfg, **runtime), collate_fn=collate, device="cpu")
    return res, model, start


def _flat(state, keys): return torch.cat([state[k].detach().flatten().double() for k in keys])


def _agree(a, b, case):
    "Run `b` (bf16) against run `a` (fp32): every step's losses, then the parameters (SGD: relative; Adam: bounded)."
    (ra, ma, start), (rb, mb, _) = a, b
    assert len(ra.steps) == len(rb.steps) >= 5
    for x, y in zip(ra.steps, rb.steps):
        for k in (k for k in x if k.startswith("loss")):
            assert abs(y[k] - x[k]) <= LOSS_REL * abs(x[k]) + 1e-6, (case, x["step"], k, x[k], y[k])
    sa, sb = ma.state_dict(), mb.state_dict()
    keys = [k for k in sa if sa[k].is_floating_point() and not k.startswith(("hgm.", "vq."))]   # trained parameters
    if case.startswith("mla"):          # SGD
        moved = (_flat(sa, keys) - _flat(start, keys)).norm()
        assert (_flat(sb, keys) - _flat(sa, keys)).norm() <= LOSS_REL * moved
    else:                               # Adam: every step moves a coordinate by at most about lr
        lr, n = CASES[case]()[2].lr, len(ra.steps)
        assert (_flat(sb, keys) - _flat(sa, keys)).abs().max() <= 2 * lr * n


# (a) the default path --------------------------------------------------------------------------------------------

def test_defaults_explicit_are_bitwise_the_default_run():
    for case in ("mla_owm", "cmg_full"):
        (r0, m0, _), (r1, m1, _) = _fit(case), _fit(case, **RUNTIME_DEFAULTS)
        assert r0.steps == r1.steps and r0.history == r1.history
        s0, s1 = m0.state_dict(), m1.state_dict()
        assert s0.keys() == s1.keys() and all(torch.equal(s0[k], s1[k]) for k in s0)


def test_recorded_config_leaves_out_runtime_defaults(tmp_path):
    base = {f.name for f in dataclasses.fields(TrainConfig)} - set(RUNTIME_DEFAULTS) - {"progress"}
    assert set(_cfg_dict(TrainConfig())) == base                                   # the keys recorded before
    assert _cfg_dict(TrainConfig(precision="bf16", num_workers=2)) == {**_cfg_dict(TrainConfig()), "precision": "bf16",
                                                                         "num_workers": 2}
    assert drop_runtime_defaults({"compile": None, "channels_last": False, "num_workers": 0, "lr": 1.0}) == {"lr": 1.0}
    # MLA's run folder: config.json and metrics.json as before; a bf16 run does not resume the fp32 run's folder
    from mla_cmg.mla.run import run_experiment
    from mla_cmg.data.synthetic import make_synthetic
    data = make_synthetic(n=90, T=6, dims=(4, 4), n_classes=3, seed=0)
    train = dict(epochs=1, batch_size=32, progress=False)
    run_experiment(data, {"method": "mla"}, None, train, out_dir=tmp_path / "r", probe=False)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    met = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert not set(RUNTIME_DEFAULTS) & (set(cfg["config"]["train"]) | set(met["config"]["train"]))
    with pytest.raises(ConfigError):
        run_experiment(data, {"method": "mla"}, None, {**train, "precision": "bf16"}, out_dir=tmp_path / "r", probe=False)


# (b) bf16 agrees with fp32, (c) what stays float32 ----------------------------------------------------------------

@pytest.mark.parametrize("case", ["mla_owm", "cmg_full"])
def test_bf16_agrees_with_fp32(case):
    a, b = _fit(case), _fit(case, precision="bf16")
    _agree(a, b, case)
    st = b[1].state_dict()
    for k in ("hgm.P", "vq.codebook", "vq.ema_count", "vq.ema_weight"):          # (c) the float32 state
        if k in st: assert st[k].dtype == torch.float32, k
    if case == "mla_owm":
        assert (st["hgm.P"] - torch.eye(st["hgm.P"].shape[0])).abs().max() > 1e-3   # P moved


def test_float32_quantities_under_bf16_autocast():
    from mla_cmg.cmg.club import TemporalCLUB
    from mla_cmg.mla.hgm import HGM
    torch.manual_seed(0)
    club, x, y = TemporalCLUB(8, 6, hidden=16), torch.randn(4, 5, 8), torch.randn(4, 5, 6)
    hgm = HGM(8)
    with torch.autocast("cpu", torch.bfloat16):
        assert club.gaussian(x[None])[0].dtype == torch.bfloat16                     # the networks do run in bf16
        assert club.loglik(x, y).dtype == club(x, y).dtype == torch.float32
        g = hgm.project(torch.randn(3, 8), torch.randn(16, 8).bfloat16(), 0.1)
    assert g.dtype == hgm.P.dtype == torch.float32


def test_bf16_refused_where_unsupported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(ConfigError, match="precision='bf16'.*no bfloat16 support"):
        check_runtime(TrainConfig(precision="bf16"), torch.device("cuda"))
    check_runtime(TrainConfig(precision="bf16"), torch.device("cpu"))


# (d) bf16 under torchrun ------------------------------------------------------------------------------------------

def test_bf16_two_processes_agree_with_one(tmp_path):
    cases = "mla_owm,cmg_full"
    _run([tmp_path / "one.pt", "--precision", "bf16", "--cases", cases])
    _run([tmp_path / "two.pt", "--precision", "bf16", "--cases", cases], nproc=2)
    one, two = (torch.load(tmp_path / f"{k}.pt", weights_only=False) for k in ("one", "two"))
    assert two["world"] == 2
    for case in cases.split(","):
        for x, y in zip(one[case]["steps"], two[case]["steps"]):
            for k in (k for k in x if k.startswith("loss")):
                assert abs(y[k] - x[k]) <= LOSS_REL * abs(x[k]) + 1e-6, (case, x["step"], k, x[k], y[k])
        sa, sb = one[case]["state"], two[case]["state"]
        assert all(sb[k].dtype == sa[k].dtype for k in sa) and sa["hgm.P" if case == "mla_owm" else "vq.codebook"].dtype == torch.float32
        keys = [k for k in sa if sa[k].is_floating_point() and not k.startswith(("hgm.", "vq."))]
        assert (_flat(sb, keys) - _flat(sa, keys)).abs().max() <= 2 * CASES[case]()[2].lr * len(one[case]["steps"])


# (e) channels_last ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,kind", [((3, 32, 32), "resnet18"), ((3, 32, 32), "cnn"), ((3, 3, 32, 32), "resnet18")])
def test_channels_last_same_outputs(shape, kind):
    from mla_cmg.encoders import build_encoder
    torch.manual_seed(0)
    enc = build_encoder(shape, {"image": kind, "video": kind, "d": 16}).eval()
    x = torch.randn(4, *shape)
    cl = copy.deepcopy(enc).to(memory_format=torch.channels_last)
    fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
    with torch.no_grad(): a, b = enc(x), cl(x.contiguous(memory_format=fmt))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()
    if x.ndim == 5:   # FrameEncoder's fold of the frames is a view of a channels_last_3d clip, already channels-last
        xc = x.contiguous(memory_format=fmt)
        f = xc.transpose(1, 2).reshape(-1, *x.shape[1:2], *x.shape[3:])
        assert f.data_ptr() == xc.data_ptr() and f.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_fit_matches_contiguous():
    from mla_cmg.mla.methods import build_method
    from ddp_worker import Split

    def run(cl):
        torch.manual_seed(0)
        model = build_method({"method": "mla"}, {"a": (2, 8, 8), "b": (5,)}, 3, {"d": 8, "hidden": 8, "layers": 2})
        ds = Split(32, 1)
        ds.x["a"] = torch.randn(32, 2, 8, 8, generator=torch.Generator().manual_seed(0)) + ds.y[:, None, None, None]
        cfg = TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=0.05, progress=False, log_steps=True,
                          channels_last=cl)
        from mla_cmg.mla.run import batch_collate
        res = fit(model, ds, None, None, cfg, collate_fn=batch_collate, device="cpu")
        return res, model.state_dict()
    (r0, s0), (r1, s1) = run(False), run(True)
    conv = [k for k in s1 if s1[k].ndim == 4]
    assert conv and all(s1[k].is_contiguous(memory_format=torch.channels_last) for k in conv)
    for x, y in zip(r0.steps, r1.steps): assert y["loss"] == pytest.approx(x["loss"], rel=1e-5, abs=1e-6)
    assert all(torch.allclose(s0[k], s1[k], rtol=1e-4, atol=1e-5) for k in s0 if s0[k].is_floating_point())


# (f) compile ------------------------------------------------------------------------------------------------------

def test_compile_aot_eager_same_losses():
    (r0, m0, _), (r1, m1, _) = _fit("mla_owm"), _fit("mla_owm", compile="aot_eager")
    assert m0.state_dict().keys() == m1.state_dict().keys()                       # compiled in place: same keys
    for x, y in zip(r0.steps, r1.steps):
        for k in (k for k in x if k.startswith("loss")): assert y[k] == pytest.approx(x[k], rel=1e-5, abs=1e-6)


# (g) loader workers, bad values -------------------------------------------------------------------------------------

class Noisy(torch.utils.data.Dataset):
    "Samples with noise from a numpy Generator that `seed_worker` reseeds (an augmenting dataset's pattern)."
    def __init__(self): self.rng, self.seeds = np.random.default_rng(0), []
    def seed_worker(self, seed): self.rng = np.random.default_rng(seed)
    def __len__(self): return 16
    def __getitem__(self, i): return torch.tensor([i, self.rng.random()], dtype=torch.float64)


def test_workers_repeat_and_draw_different_streams():
    def batches(): return [b.clone() for b in make_loader(Noisy(), 4, shuffle=True, seed=3, num_workers=2)]
    a, b = batches(), batches()
    assert all(torch.equal(x, y) for x, y in zip(a, b))                           # same batches, same order
    assert [x[:, 0].tolist() for x in a] == [x.tolist() for x in make_loader(torch.arange(16), 4, shuffle=True, seed=3)]
    # batches alternate between the two workers: each worker's first draw differs from the other's
    assert a[0][0, 1] != a[1][0, 1]
    noise = torch.cat(a)[:, 1]
    assert len(set(noise.tolist())) == 16


@pytest.mark.parametrize("bad", [dict(precision="fp16"), dict(precision="bfloat16"), dict(channels_last=1),
                                 dict(compile="inductr"), dict(compile=""), dict(num_workers=-1),
                                 dict(num_workers=1.5), dict(num_workers=True), dict(pin_memory="yes")])
def test_bad_runtime_values(bad):
    (k, v), = bad.items()
    with pytest.raises(ConfigError, match=rf"TrainConfig\.{k} .*got {v!r}"):
        TrainConfig(**bad)


def test_bf16_steps_inside_one_step_see_the_updated_weights():
    "A method that steps its optimizer twice per batch: under autocast's weight cache its second forward would use the bf16 weights from before the first update (losses off by several %)."
    from mla_cmg.engine import Method
    class Twice(Method):
        def __init__(self):
            super().__init__(); self.net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
        def training_step(self, batch, ctx):
            x, y = batch
            for _ in range(2):
                loss = nn.functional.cross_entropy(self.net(x), y); loss.backward(); ctx.step()
            return {"loss": loss.item()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g); ds = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    runs = []
    for prec in ("fp32", "bf16"):
        torch.manual_seed(0)
        runs.append(fit(Twice(), ds, cfg=TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=0.1, progress=False,
                                                     log_steps=True, precision=prec), device="cpu").steps)
    for a, b in zip(*runs): assert abs(b["loss"] - a["loss"]) <= LOSS_REL * a["loss"], (a, b)
