"""Data-parallel throughput at the papers' sizes (numbers printed, not a test), with synthetic tensors of the papers' shapes.

  python benchmarks/bench_ddp.py [--device cpu|cuda] [--procs 1 2] [--steps 5] [--warmup 2] [--which mla cmg]

* MLA: two ResNet18 encoders on CREMA-D-shaped inputs, audio spectrogram [257, 188] (1 channel) and `--frames` (1-3)
  video frames [3, F, 224, 224], 6 classes, global batch 64, SGD, HGM `owm`; plus the HGM overhead per MLA step
  (`HGM.project` at d=512 against the whole step).
* Uni-Code: D = 256, 400 codes, T = 10, VGGish-shaped audio [10, 128] and VGG19-pool5-shaped video [10, 7, 7, 512]
  (flattened per second to 25088), global batch 80, the full model.

Every configuration runs `engine.fit` in N processes (torch.multiprocessing, gloo on CPU / nccl on CUDA, one GPU per
rank) at per-rank batch B/N. Prints samples/s and the scaling efficiency (samples/s at N) / (N x samples/s at 1).
Needs only torch and mla_cmg (no dvc, papermill or data).
"""
import argparse, os, socket, sys, time

import torch
import torch.multiprocessing as mp


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


def _build(which, frames):
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


def _worker(rank, world, port, which, device, frames, steps, warmup, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "1"))))
    from mla_cmg import dist as D
    from mla_cmg.engine import fit
    dev = D.init_from_env(device)
    model, shapes, C, cfg, seq = _build(which, frames)
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


def run(which, world, device, frames, steps, warmup):
    q = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_worker, args=(world, _free_port(), which, device, frames, steps, warmup, q), nprocs=world,
                       start_method="spawn")
    return q.get()


def _hgm_share(hgm, dt) -> str:
    "HGM's time per step in ms and as a share of the step; three decimals, since on CPU the share is far below 0.01 %."
    return f"{hgm * 1e3:.3f} ms ({hgm / dt:.3%})" if hgm else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu"); ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=5); ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frames", type=int, default=3); ap.add_argument("--which", nargs="+", default=["mla", "cmg"])
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and torch.cuda.device_count() < max(a.procs):
        sys.exit(f"--procs {max(a.procs)} needs as many GPUs, found {torch.cuda.device_count()}")
    print(f"torch {torch.__version__}, device {a.device}, threads/rank {os.environ.get('BENCH_THREADS', '1')}, "
          f"{a.steps} timed steps after {a.warmup}")
    print(f"{'model':<34}{'procs':>6}{'s/step':>10}{'samples/s':>12}{'efficiency':>12}{'HGM/step':>22}")
    for which in a.which:
        base = None
        for n in a.procs:
            dt, B, hgm = run(which, n, a.device, a.frames, a.steps, a.warmup)
            sps = B / dt
            base = base or (sps if n == 1 else None)
            eff = f"{sps / (n * base):.0%}" if base else "-"
            name = f"MLA 2xResNet18 {a.frames}fr B=64" if which == "mla" else "Uni-Code D=256 M=400 T=10 B=80"
            print(f"{name:<34}{n:>6}{dt:>10.3f}{sps:>12.1f}{eff:>12}{_hgm_share(hgm, dt):>22}", flush=True)


if __name__ == "__main__":
    main()
