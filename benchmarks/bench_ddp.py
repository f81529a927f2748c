"""Throughput at the papers' sizes (numbers printed, not a test): data-parallel scaling, precision, model FLOP
utilisation, and whether data loading keeps up; synthetic tensors of the papers' shapes.

  python benchmarks/bench_ddp.py [--device cpu|cuda] [--procs 1 2] [--steps 5] [--warmup 2] [--which mla cmg]
                                 [--precision fp32 bf16] [--channels-last] [--compile BACKEND] [--batch B]
                                 [--peak-tflops T] [--data-root DIR --workers N --pin-memory]

* MLA: two ResNet18 encoders on CREMA-D-shaped inputs, audio spectrogram [257, 188] (1 channel) and `--frames` (1-3)
  video frames [3, F, 224, 224], 6 classes, global batch 64, SGD, HGM `owm`; plus the HGM overhead per MLA step
  (`HGM.project` at d=512 against the whole step).
* Uni-Code: D = 256, 400 codes, T = 10, VGGish-shaped audio [10, 128] and VGG19-pool5-shaped video [10, 7, 7, 512]
  (flattened per second to 25088), global batch 80, the full model.

Every configuration runs `engine.fit` in N processes (torch.multiprocessing, gloo on CPU / nccl on CUDA, one GPU per
rank) at per-rank batch B/N, once per `--precision` (`TrainConfig.precision`; `--channels-last` and `--compile` set
the other runtime fields). Prints, per row: seconds per step, samples/s, the scaling efficiency (samples/s at N) /
(N x samples/s at 1, same precision), the HGM share (MLA) and MFU.

MFU (model FLOP utilisation) = FLOPs of one training step / step time / peak FLOP/s of the N devices. The FLOPs are
measured, not estimated: one `engine.fit` step (forward and backward of every loss, HGM's projection, the decoupler's
inner steps) at the global batch, run eagerly in this process under `torch.utils.flop_counter.FlopCounterMode`
(matrix products and convolutions; elementwise work and the optimizer are not counted, as is usual for MFU). The
peak is dense (no 2:4 sparsity) tensor-core throughput for bf16 and, for fp32, TF32 tensor-core throughput where
PyTorch lets convolutions or matrix products use TF32 (`cudnn.allow_tf32`, on by default), else plain FP32; from PEAK_TFLOPS
for known GPUs, or `--peak-tflops`. On CPU (no table) MFU is '-' unless `--peak-tflops` is given.

`--data-root DIR` (a folder in MLA's CREMA-D layout, as `mla_cmg.data.papers.crema_d(DIR, 'train')` reads it:
fbank `.npy` files and JPEG frames) also times the data pipeline: batches of the benchmark's batch size from
`--workers` processes and `--pin-memory` (the engine's worker seeding), decoded and collated, 20 batches timed from
the loader's start: the rate loading sustains on its own, printed beside the step time, so one sees whether loading
(and not the model) bounds training.

Goals on one H200 (issue 22): MLA at batch 64 in bf16 >= 3x its fp32 samples/s (>= 1,300 samples/s), Uni-Code >= 2x
(>= 1,650 samples/s). Needs only torch and mla_cmg (no dvc, papermill or data).
"""
import argparse, dataclasses, os, socket, sys, time

import torch
import torch.multiprocessing as mp


# Dense peak TFLOP/s per GPU (no sparsity), (bf16, fp32 via TF32 tensor cores, plain fp32 without TF32), from the
# vendors' data sheets: NVIDIA H100 Tensor Core GPU datasheet (SXM5: BF16 989.4, TF32 494.7, FP32 66.9; PCIe: 756,
# 378, 51.2), NVIDIA H200 datasheet (SXM: the H100 SXM's compute, 989 / 494 / 67; NVL: 835 / 418 / 60), NVIDIA A100
# datasheet (SXM and PCIe: BF16 312, TF32 156, FP32 19.5). The datasheets print the sparse figures (2x) first; the
# dense Hopper figures agree with https://glennklockwood.com/garden/processors/h100 (H200: the same GH100 compute).
PEAK_TFLOPS = {"H100 SXM": (989.4, 494.7, 66.9), "H100 PCIe": (756.0, 378.0, 51.2), "H100 NVL": (835.0, 418.0, 60.0),
               "H200": (989.4, 494.7, 66.9), "H200 NVL": (835.0, 418.0, 60.0), "A100": (312.0, 156.0, 19.5)}


def device_peak(device: str, precision: str, override: float | None = None):
    "(peak TFLOP/s per device, what it is) for MFU: `override`, else the table's entry for this GPU; None on CPU / unknown GPUs."
    if override: return override, "--peak-tflops"
    if not device.startswith("cuda"): return None, "no peak for CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name(torch.device(device))
    # longest matching key first: 'H100 NVL' before 'H100'; the H100 SXM5 reports itself as 'NVIDIA H100 80GB HBM3'
    keys = sorted(PEAK_TFLOPS, key=len, reverse=True)
    alias = "H100 SXM" if "H100" in name and "HBM3" in name else None
    key = next((k for k in keys if k in name), None) or alias
    if key is None: return None, f"{name}: not in PEAK_TFLOPS (give --peak-tflops)"
    bf16, tf32, fp32 = PEAK_TFLOPS[key]
    if precision == "bf16": return bf16, f"{key} dense bf16"
    # fp32 convolutions use TF32 tensor cores by default (cudnn.allow_tf32), matrix products only when allowed: with
    # either on, the TF32 peak (a lower MFU than against plain FP32, never above 100 %)
    if torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32: return tf32, f"{key} dense tf32"
    return fp32, f"{key} fp32 (TF32 off)"


def _free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class _Synthetic(torch.utils.data.Dataset):
    "n samples that are all the same random batch-shaped tensors (the data is not what is timed)."
    def __init__(self, n, shapes, n_classes, seq=False):
        g = torch.Generator().manual_seed(0)
        self.n, self.seq = n, seq
        self.x = {m: torch.randn(8, *s, generator=g) for m, s in shapes.items()}
        self.y = torch.randint(0, n_classes, (8,), generator=g)
    def __len__(self): return self.n
    def __getitems__(self, rows):
        k = torch.as_tensor(rows) % 8
        b = {"x": {m: v[k] for m, v in self.x.items()}}
        if not self.seq: b.update(mask={m: torch.ones(len(k), dtype=torch.bool) for m in self.x}, y=self.y[k])
        return b


def _collate(b): return b


def _build(which, frames, runtime=None, batch=None):
    "Model, sample shapes, classes, TrainConfig (with `runtime` fields and `batch` when given), sequence data?"
    model, shapes, C, cfg, seq = _build_paper(which, frames)
    cfg = dataclasses.replace(cfg, **(runtime or {}), **({"batch_size": batch} if batch else {}))
    return model, shapes, C, cfg, seq


def _build_paper(which, frames):
    from mla_cmg.core import seed_everything
    from mla_cmg.engine import TrainConfig
    seed_everything(0)
    if which == "mla":
        from mla_cmg.mla.methods import build_method
        shapes = {"audio": (257, 188), "visual": (3, frames, 224, 224)}
        model = build_method({"method": "mla", "hgm": "owm"}, shapes, 6, {"d": 512, "sequence": "resnet18", "video": "resnet18"})
        return model, shapes, 6, TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=1e-3, progress=False), False
    from mla_cmg.cmg.model import UniCode, cmg_config
    shapes = {"audio": (10, 128), "video": (10, 7 * 7 * 512)}
    model = UniCode({m: s[1] for m, s in shapes.items()}, cmg_config(dim=256, n_codes=400, spec_dim=256))
    return model, shapes, 1, TrainConfig(epochs=1, batch_size=80, lr=4e-4, grad_clip=0.5, progress=False,
                                         select_metric="train_steps"), True


def _worker(rank, world, port, which, device, frames, steps, warmup, q, runtime=None, batch=None):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "1"))))
    from mla_cmg import dist as D
    from mla_cmg.engine import fit
    dev = D.init_from_env(device)
    model, shapes, C, cfg, seq = _build(which, frames, runtime, batch)
    n = (steps + warmup) * cfg.batch_size
    times = []
    def tick(ctx, logs):
        if device.startswith("cuda"): torch.cuda.synchronize()
        times.append(time.perf_counter())
    fit(model, _Synthetic(n, shapes, C, seq), cfg=cfg, device=dev, collate_fn=_collate, on_batch_end=tick)
    dt = (times[-1] - times[warmup - 1]) / steps
    hgm = None
    if which == "mla" and rank == 0:          # HGM's cost at this size: project() = update P + g P^T, d = 512, C = 6
        h, g = torch.randn(64, 512, device=dev), torch.randn(6, 512, device=dev)
        for _ in range(5): model.hgm.project(g, h, 0.05)
        if device.startswith("cuda"): torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50): model.hgm.project(g, h, 0.05)
        if device.startswith("cuda"): torch.cuda.synchronize()
        hgm = 2 * (time.perf_counter() - t0) / 50   # two projections per MLA step (one per modality)
    if rank == 0: q.put((dt, cfg.batch_size, hgm))
    D.shutdown()


def run(which, world, device, frames, steps, warmup, runtime=None, batch=None):
    q = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_worker, args=(world, _free_port(), which, device, frames, steps, warmup, q, runtime, batch),
                       nprocs=world, start_method="spawn")
    return q.get()


def step_flops(which, device, frames, precision, batch=None) -> int:
    "FLOPs of one training step at the global batch, counted by FlopCounterMode around a one-step `engine.fit` (eager, one process)."
    from torch.utils.flop_counter import FlopCounterMode
    from mla_cmg.engine import fit
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "1"))))
    model, shapes, C, cfg, seq = _build(which, frames, {"precision": precision}, batch)
    with FlopCounterMode(display=False) as fc:
        fit(model, _Synthetic(cfg.batch_size, shapes, C, seq), cfg=cfg, device=torch.device(device), collate_fn=_collate)
    return fc.get_total_flops()


def data_time(root, batch, workers, pin, frames, n_batches=20):
    """Seconds per batch of CREMA-D train clips from `root`: `n_batches` batches (clips drawn with replacement, so a
    small folder serves too), decoded and collated in `workers` processes as the engine's loader does, timed from the
    loader's start (its workers' start-up included) to the last batch: the rate loading sustains on its own."""
    from mla_cmg.data.papers import crema_d
    from mla_cmg.engine import seed_loader_worker
    ds = crema_d(root, "train", n_frames=frames)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batch * n_batches,
                                             generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=pin,
                                         worker_init_fn=seed_loader_worker if workers else None)
    t0 = time.perf_counter()
    for _ in loader: pass
    return (time.perf_counter() - t0) / n_batches, len(ds)


def _hgm_share(hgm, dt) -> str:
    "HGM's time per step in ms and as a share of the step; three decimals, since on CPU the share is far below 0.01 %."
    return f"{hgm * 1e3:.3f} ms ({hgm / dt:.3%})" if hgm else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu"); ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=5); ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frames", type=int, default=3); ap.add_argument("--which", nargs="+", default=["mla", "cmg"])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action="store_true", help="TrainConfig.channels_last")
    ap.add_argument("--compile", default=None, metavar="BACKEND", help="TrainConfig.compile, e.g. inductor (GPU)")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: the papers', MLA 64, Uni-Code 80)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s per device for MFU (overrides the table)")
    ap.add_argument("--data-root", default=None, help="a CREMA-D folder: also time loading its train batches")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for --data-root")
    ap.add_argument("--pin-memory", action="store_true", help="pinned host memory for --data-root")
    ap.add_argument("--out", default=None, help="also write the table as markdown here (the README shows "
                    "benchmarks/results/hardware.md), with the date, the device and the command")
    a = ap.parse_args(argv)
    if a.warmup < 1: sys.exit("--warmup must be >= 1 (the first timed interval starts at the end of a warm-up step)")
    if a.device.startswith("cuda") and torch.cuda.device_count() < max(a.procs):
        sys.exit(f"--procs {max(a.procs)} needs as many GPUs, found {torch.cuda.device_count()}")
    runtime = dict(channels_last=a.channels_last, compile=a.compile)
    dev_name = torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, device {a.device} ({dev_name}), threads/rank {os.environ.get('BENCH_THREADS', '1')}, "
          f"{a.steps} timed steps after {a.warmup}, channels_last={a.channels_last}, compile={a.compile}")
    for p in a.precision:
        peak, what = device_peak(a.device, p, a.peak_tflops)
        print(f"MFU peak, {p}: " + (f"{peak:g} TFLOP/s per device ({what})" if peak else f"- ({what})"))
    data = {}
    if a.data_root:
        for which in a.which:
            if which != "mla": continue      # the CREMA-D layout is MLA's; Uni-Code's benchmark inputs are features
            B = a.batch or 64
            data[which], n = data_time(a.data_root, B, a.workers, a.pin_memory, a.frames)
            print(f"data: {a.data_root} ({n} train clips), batch {B}, {a.workers} workers, pin_memory={a.pin_memory}: "
                  + f"{data[which]:.3f} s/batch")
    print(f"{'model':<34}{'prec':>6}{'procs':>6}{'s/step':>10}{'samples/s':>12}{'efficiency':>12}{'GFLOP/step':>12}"
          f"{'MFU':>8}{'data s/batch':>14}{'HGM/step':>22}")
    rows = []
    for which in a.which:
        for prec in a.precision:
            base, flops = None, step_flops(which, a.device, a.frames, prec, a.batch)
            peak = device_peak(a.device, prec, a.peak_tflops)[0]
            for n in a.procs:
                dt, B, hgm = run(which, n, a.device, a.frames, a.steps, a.warmup, {**runtime, "precision": prec}, a.batch)
                sps = B / dt
                base = base or (sps if n == 1 else None)
                eff = f"{sps / (n * base):.0%}" if base else "-"
                mfu = f"{flops / dt / (peak * 1e12 * n):.1%}" if peak else "-"
                dat = f"{data[which]:.3f}" if data.get(which) else "-"
                name = (f"MLA 2xResNet18 {a.frames}fr B={B}" if which == "mla" else f"Uni-Code D=256 M=400 T=10 B={B}")
                print(f"{name:<34}{prec:>6}{n:>6}{dt:>10.3f}{sps:>12.1f}{eff:>12}{flops / 1e9:>12.1f}{mfu:>8}{dat:>14}"
                      f"{_hgm_share(hgm, dt):>22}", flush=True)
                rows.append(dict(model=name, which=which, prec=prec, procs=n, dt=dt, sps=sps, eff=eff, gflop=flops / 1e9,
                                 mfu=mfu, data=dat, hgm=_hgm_share(hgm, dt)))
    if a.out: write_markdown(a.out, rows, a, dev_name, argv if argv is not None else sys.argv[1:])


def write_markdown(path, rows, a, dev_name, argv) -> None:
    "The table as markdown (atomically), with when, where and how it was measured, and bf16's speed-up over fp32."
    from mla_cmg.core import atomic_write_text
    cpu = not a.device.startswith("cuda")
    head = (f"Recorded {time.strftime('%Y-%m-%d')} with `python benchmarks/bench_ddp.py {' '.join(argv)}` "
            f"(torch {torch.__version__}, {'CPU, ' + os.environ.get('BENCH_THREADS', '1') + ' thread(s) per process' if cpu else dev_name}"
            f"; channels_last={a.channels_last}, compile={a.compile}).")
    if cpu:
        head += (" **No GPU was available when this was recorded**: these are CPU figures, which show the table's shape "
                 "and bf16's effect on a CPU, not the GPU figures; the GPU goals (one H200: MLA at batch 64 in bf16 at "
                 "least 3x its fp32 samples/s, Uni-Code at least 2x) are not measured yet. On a GPU box: "
                 "`python benchmarks/bench_ddp.py --device cuda --procs 1 --channels-last --out benchmarks/results/hardware.md`.")
    lines = [head, "", "| model | precision | processes | s/step | samples/s | vs fp32 | GFLOP/step | MFU | data s/batch | HGM/step |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = next((q["sps"] for q in rows if q["which"] == r["which"] and q["procs"] == r["procs"] and q["prec"] == "fp32"), None)
        vs = f"{r['sps'] / base:.2f}x" if base else "-"
        lines.append(f"| {r['model']} | {r['prec']} | {r['procs']} | {r['dt']:.3f} | {r['sps']:.1f} | {vs} | {r['gflop']:.1f} "
                     f"| {r['mfu']} | {r['data']} | {r['hgm']} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
