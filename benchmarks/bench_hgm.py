"""HGM overhead per MLA training step at d = 512, against hgm=off (target: at most 5 %).

One "training step" is one MLA batch with the official schedule: one forward of both encoders, then per
modality CE on the shared head -> backward -> HGM on the head's weight gradient -> optimizer step.
Variants are timed in interleaved rounds (so drift on a shared machine hits them alike) and the median
over rounds is reported. Numbers are printed, nothing is asserted.

    .venv/bin/python benchmarks/bench_hgm.py                 # MLP encoders, d = 512, 1 thread
    .venv/bin/python benchmarks/bench_hgm.py --encoder gru --device cuda
"""
import argparse, json, statistics, time

import torch

from mla_cmg.engine import StepContext, TrainConfig, make_optimizer
from mla_cmg.mla.hgm import HGM
from mla_cmg.mla.methods import build_method


def batch_for(encoder, B, C, device):
    g = torch.Generator().manual_seed(0)
    if encoder == "mlp": x = {"a": torch.randn(B, 512, generator=g), "b": torch.randn(B, 256, generator=g)}
    else: x = {"a": torch.randn(B, 16, 40, generator=g), "b": torch.randn(B, 16, 64, generator=g)}
    return {"x": {m: v.to(device) for m, v in x.items()}, "mask": {m: torch.ones(B, dtype=torch.bool, device=device) for m in x},
            "y": torch.randint(C, (B,), generator=g).to(device), "idx": torch.arange(B, device=device)}


def time_steps(model, opt, batch, steps, device):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync(); t0 = time.perf_counter()
    for i in range(steps):
        model.training_step(batch, StepContext(0, i % 50, 50, i, opt, list(model.parameters())))
    sync()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--encoder", choices=["mlp", "gru"], default="mlp")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="off,owm,official,add")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    variants = a.variants.split(",")
    batch = batch_for(a.encoder, a.batch, a.classes, a.device)
    shapes = {m: tuple(v.shape[1:]) for m, v in batch["x"].items()}
    enc = dict(d=a.d, hidden=a.d, layers=2, sequence="gru")
    runs = {}
    for v in variants:
        torch.manual_seed(0)
        model = build_method({"hgm": v}, shapes, a.classes, enc).to(a.device)
        opt = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=1e-3, weight_decay=1e-4))
        time_steps(model, opt, batch, 3, a.device)                           # warm-up
        runs[v] = (model, opt)
    times = {v: [] for v in variants}
    for _ in range(a.rounds):
        for v in variants: times[v].append(time_steps(*runs[v], batch, a.steps, a.device))
    med = {v: statistics.median(t) for v, t in times.items()}
    # the HGM call alone: P update + gradient projection for one unimodal step
    h = HGM(a.d, "owm").to(a.device); g = torch.randn(a.classes, a.d, device=a.device); f = torch.rand(a.batch, a.d, device=a.device)
    for _ in range(10): h.project(g, f, 0.05)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    sync(); t0 = time.perf_counter()
    for _ in range(500): h.project(g, f, 0.05)
    sync(); call_us = (time.perf_counter() - t0) / 500 * 1e6
    n_params = sum(p.numel() for p in runs[variants[0]][0].parameters())
    print(f"MLA training step, {a.encoder} encoders, d={a.d}, batch={a.batch}, C={a.classes}, {n_params:,} parameters, "
          f"device={a.device}, threads={a.threads}; median of {a.rounds} rounds x {a.steps} steps")
    base = med.get("off")
    for v in variants:
        rel = f"{100 * (med[v] / base - 1):+.1f} %" if base and v != "off" else "baseline"
        print(f"  hgm={v:9s} {1e3 * med[v]:8.3f} ms/step   {rel}")
    print(f"  one HGM call (owm: P update + projection): {call_us:.1f} us, 2 calls per step")
    print(json.dumps({"encoder": a.encoder, "d": a.d, "device": a.device, "ms_per_step": {v: round(1e3 * t, 4) for v, t in med.items()},
                      "overhead_pct": {v: round(100 * (med[v] / base - 1), 2) for v in variants if base and v != "off"},
                      "hgm_call_us": round(call_us, 2)}))


if __name__ == "__main__":
    main()
