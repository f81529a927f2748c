"""CMG timings on CPU (numbers printed, not a timed test).

1. One quantizer training step at the paper's size (M=400 codes, D=256, B=80, T=10, two modalities, float32):
   forward, EMA update, reset, commitment, L_cmcm where it applies, backward. Rows: a plain EMA quantizer (plain EMA
   into the shared codebook, self commitment only), Uni-Code's (MM-EMA + reset + cross commitment + L_cmcm, the
   distances of the assignment reused by L_cmcm), and a re-implementation of the released `Cross_VQEmbeddingEMA`
   step (benchmarks/official_vq.py).
2. The CLUB inner steps (5 Adam steps of the estimators of both modalities, grouped) at the pipeline size.
3. Pretraining steps per second of the whole Uni-Code step (encoders, quantizer, CLUB inner steps, Cross-CPC,
   L_cmcm, backward, Adam) for `full`, `no_club` and `vq`, at the paper's size and at the pipeline's size
   (params.yaml `cmg.common`: D = D_s = 64, M = 128, FFN 128, CLUB hidden 64, avdigits inputs 13-d and 8-d, T = 8),
   with the CLUB term on (after its warm-up) and off (before it).

    .venv/bin/python benchmarks/bench_cmg.py [--reps 30] [--threads 1]
"""
import argparse, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_vq import OfficialCrossVQ
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


def quantizer_steps(reps: int, M=400, D=256, B=80, T=10) -> dict:
    "ms per step of the plain, Uni-Code and official quantizer steps, interleaved so that machine noise hits all alike."
    torch.manual_seed(0)
    z = {m: torch.randn(B, T, D, requires_grad=True) for m in ("a", "b")}
    def ours(**kw):
        vq = SharedCodebookEMA(M, D, reset_after=300, **kw).train()
        vq.codebook.normal_(); vq.ema_weight.copy_(vq.codebook)
        return vq
    plain, paired, xattn = ours(mm_ema="none", reset=False, cross_commit=False), ours(mm_ema="paired"), ours()
    off = OfficialCrossVQ(M, D).train(); off.embedding.normal_(); off.ema_weight.copy_(off.embedding)
    def step(vq, cmcm):
        out = vq(z)
        (out.commit_loss + (cmcm_loss(z, out.codebook, d2=out.d2) if cmcm else 0)).backward()
    def step_official():
        out = off(z["a"], z["b"]); (out[2] + out[3] + out[4]).backward()
    rows = {"plain EMA (no MM-EMA, no reset, self commitment)": lambda: step(plain, False),
            "Uni-Code: MM-EMA paired + reset + cross commitment + L_cmcm": lambda: step(paired, True),
            "Uni-Code: MM-EMA cross_attention + reset + cross commitment + L_cmcm": lambda: step(xattn, True),
            "official Cross_VQEmbeddingEMA (re-implemented), same work": step_official}
    rounds = {k: [] for k in rows}
    for _ in range(3):
        for k, fn in rows.items(): rounds[k].append(timeit(fn, max(3, reps // 3)))
    return {k: statistics.median(v) for k, v in rounds.items()}


# the rows timed below, as switch settings (params.yaml cmg.variants)
ROWS = {"full": {}, "no_club": {"decoupler": "none"},
        "vq": dict(decoupler="none", cpc=False, mmema=False, cross_commit=False, reset=False, cmcm=False)}


def pipeline_config(variant: str, **kw):
    return cmg_config(**ROWS[variant], dim=64, spec_dim=64, n_codes=128, enc_ff=128, club_hidden=64, cpc_anchors="all",
                      enc_dropout=0.0, mm_ema="paired", reset_after=50, **kw)


def step_time(model: UniCode, dims: dict, reps: int, B=80, T=10, club_on: bool = True) -> float:
    "ms per Uni-Code training step (Adam, clip 0.5); `club_on` moves the model past the CLUB warm-up."
    opt = make_optimizer(model.optim_params(), TrainConfig(lr=4e-4))
    x = {m: torch.randn(B, T, d) for m, d in dims.items()}
    ctx = StepContext(0, 0, 1, 0, opt, model.optim_params(), grad_clip=0.5)
    model.train_steps.fill_(10 ** 6 if club_on else 0)
    return timeit(lambda: model.training_step({"x": x}, ctx), reps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30); ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    set_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), medians of 3 interleaved rounds of {max(3, a.reps // 3)} repeats")
    print("\n1. one quantizer training step, M=400, D=256, B=80, T=10, two modalities, float32")
    q = quantizer_steps(a.reps)
    plain = next(iter(q.values())); official = list(q.values())[-1]
    for name, ms in q.items():
        print(f"   {name:<72s} {ms:7.2f} ms  {ms / plain:5.2f}x plain  {official / ms:5.2f}x faster than official")
    seed_everything(0)
    m = UniCode({"audio": 13, "visual": 8}, pipeline_config("full"))
    g = {k: torch.randn(2, 80, 8, 64) for k in "qs"}
    print(f"\n2. CLUB inner steps (5 Adam steps, both modalities grouped), pipeline size: "
          f"{timeit(lambda: m.train_decoupler(dict(zip(m.mods, g['q'])), dict(zip(m.mods, g['s']))), a.reps):.2f} ms")
    print("\n3. Uni-Code pretraining steps/s (B=80)")
    for size, dims, T, make in [("paper size: D=256, M=400, D_s=256, FFN 1024; inputs 128-d / 512-d, T=10",
                                 {"audio": 128, "video": 512}, 10, lambda v: cmg_config(**ROWS[v])),
                                ("pipeline size: D=64, M=128, D_s=64, FFN 128; inputs 13-d / 8-d, T=8",
                                 {"audio": 13, "visual": 8}, 8, pipeline_config)]:
        print(f"   {size}")
        for v in ("full", "no_club", "vq"):
            seed_everything(0); model = UniCode(dims, make(v))
            reps = max(5, a.reps // 3)
            on = step_time(model, dims, reps, T=T, club_on=True)
            line = f"      {v:<8s} {1e3 / on:6.2f} steps/s"
            if v == "full": line += f"  (before the CLUB warm-up ends: {1e3 / step_time(model, dims, reps, T=T, club_on=False):6.2f})"
            print(line)


if __name__ == "__main__":
    main()
