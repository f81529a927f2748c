"""CMG timings on CPU (numbers printed, not a timed test).

1. One quantizer step at the paper's size (M=400 codes, D=256, B=80, T=10, two modalities): MM-EMA + dead-code
   reset + cross commitment + L_cmcm (forward, EMA update, reset, backward) against a plain EMA quantizer step
   (independent EMA into the shared codebook, self commitment only) of the same size.
2. Pretraining steps per second of the whole Uni-Code step (encoders, quantizer, CLUB inner steps, Cross-CPC,
   L_cmcm, backward, Adam) at the default size, for `full`, `no_club` and `vq`.

    .venv/bin/python benchmarks/bench_cmg.py [--reps 30] [--threads 1]
"""
import argparse, statistics, time

import torch

from mla_cmg.core import seed_everything, set_threads
from mla_cmg.engine import StepContext, TrainConfig, make_optimizer
from mla_cmg.cmg.cmcm import cmcm_loss
from mla_cmg.cmg.model import UniCode, cmg_config
from mla_cmg.cmg.vq import SharedCodebookEMA


def timeit(fn, reps: int, warmup: int = 3) -> float:
    "Median wall time of `fn()` in milliseconds."
    for _ in range(warmup): fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def quantizer_step(mm_ema: str, reset: bool, cross: bool, cmcm: bool, reps: int, M=400, D=256, B=80, T=10) -> float:
    vq = SharedCodebookEMA(M, D, mm_ema=mm_ema, reset=reset, cross_commit=cross, reset_after=300).train()
    vq.codebook.normal_(); vq.ema_weight.copy_(vq.codebook)
    z = {m: torch.randn(B, T, D, requires_grad=True) for m in ("a", "b")}
    def step():
        out = vq(z)
        loss = out.commit_loss + (cmcm_loss(z, vq.codebook) if cmcm else 0)
        loss.backward()
    return timeit(step, reps)


def pretrain_steps_per_s(variant: str, reps: int, B=80, T=10, dims=None) -> float:
    dims = dims or {"audio": 128, "video": 512}
    seed_everything(0)
    model = UniCode(dims, cmg_config(variant))           # the paper's sizes: D=256, M=400, D_s=256, FFN 1024
    opt = make_optimizer(model.optim_params(), TrainConfig(lr=4e-4))
    x = {m: torch.randn(B, T, d) for m, d in dims.items()}
    ctx = StepContext(0, 0, 1, 0, opt, model.optim_params(), grad_clip=0.5)
    return 1e3 / timeit(lambda: model.training_step({"x": x}, ctx), reps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30); ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    set_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), median of {a.reps} repeats")
    print("\n1. one quantizer step, M=400, D=256, B=80, T=10, two modalities (forward + EMA + reset + backward)")
    rows = [("plain EMA (mm_ema='none', no reset, self commitment)", "none", False, False, False),
            ("MM-EMA paired + reset + cross commitment + L_cmcm", "paired", True, True, True),
            ("MM-EMA cross_attention + reset + cross commitment + L_cmcm", "cross_attention", True, True, True),
            ("MM-EMA paired + reset + cross commitment (no L_cmcm)", "paired", True, True, False)]
    base = None
    for name, mode, reset, cross, cm in rows:
        ms = quantizer_step(mode, reset, cross, cm, a.reps)
        base = base or ms
        print(f"   {name:<62s} {ms:7.2f} ms  ({ms / base:4.2f}x)")
    print("\n2. Uni-Code pretraining step at the default size (D=256, M=400, D_s=256, B=80, T=10; inputs 128-d and 512-d)")
    for v in ("full", "no_club", "vq"):
        print(f"   {v:<10s} {pretrain_steps_per_s(v, max(5, a.reps // 3)):6.2f} steps/s")


if __name__ == "__main__":
    main()
