"""Worker of tests/test_ddp.py: train tiny models (float64) with `engine.fit`, one process or under torchrun.
tests/test_precision.py runs it with `--precision bf16 --cases ...`: float32 models under bf16 autocast.

    python tests/ddp_worker.py OUT.pt [--ckpt DIR] [--stop-after K] [--precision fp32|bf16] [--cases a,b]
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT.pt ...

Writes (rank 0) a dict {case: {"state": state_dict, "history": ..., "steps": ..., "test": ...}} to OUT.pt.
"""
import argparse, dataclasses, os, sys

import torch

from mla_cmg import dist as D
from mla_cmg.core import seed_everything, set_threads
from mla_cmg.engine import TrainConfig, fit
from mla_cmg.mla.methods import build_method
from mla_cmg.mla.run import batch_collate
from mla_cmg.cmg.model import PairedSeqDataset, UniCode, cmg_config

B, EPOCHS = 16, 2
RB_MISSING = 0.8          # ReconBoost's cases: the rate of missing b


class Split(torch.utils.data.Dataset):
    "A tiny MLA-format split (x, mask, y) that slices whole batches."
    def __init__(self, n, seed, missing=0.0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = {"a": torch.randn(n, 6, generator=g, dtype=torch.get_default_dtype()) + self.y[:, None],
                  "b": torch.randn(n, 5, generator=g, dtype=torch.get_default_dtype()) - 0.5 * self.y[:, None]}
        self.mask = {"a": torch.ones(n, dtype=torch.bool), "b": torch.rand(n, generator=g) >= missing}
        self.x["b"] = self.x["b"] * self.mask["b"][:, None]
    def __len__(self): return len(self.y)
    def __getitems__(self, rows):
        rows = torch.as_tensor(rows, dtype=torch.long)
        return dict(x={m: t[rows] for m, t in self.x.items()}, mask={m: t[rows] for m, t in self.mask.items()}, y=self.y[rows])


def mla_case(method, missing=0.0, epochs=EPOCHS, **kw):
    seed_everything(0)
    model = build_method({"method": method, **kw}, {"a": (6,), "b": (5,)}, 3, {"d": 8, "hidden": 8, "layers": 1})
    data = [Split(48, 1, missing), Split(16, 2, missing), Split(16, 3, missing)]
    cfg = TrainConfig(epochs=epochs, batch_size=B, eval_batch_size=8, lr=0.05, optimizer="sgd", momentum=0.9, seed=0,
                      progress=False, log_steps=True)
    return model, data, cfg, batch_collate


def cmg_case(decoupler="club"):
    seed_everything(0)
    g = torch.Generator().manual_seed(4)
    a = torch.randn(48, 5, 6, generator=g, dtype=torch.get_default_dtype())
    b = a[..., :4] + 0.3 * torch.randn(48, 5, 4, generator=g, dtype=torch.get_default_dtype())
    model = UniCode({"a": 6, "b": 4}, cmg_config(dim=8, n_codes=12, spec_dim=4, enc_layers=1, enc_heads=2,
                                                 enc_ff=16, enc_dropout=0.0, club_hidden=8, mi_iters=2, reset_after=2,
                                                 club_start=0, club_warmup=2, decoupler=decoupler))
    ds = PairedSeqDataset({"a": a, "b": b})
    ds.x = {m: v.to(torch.get_default_dtype()) for m, v in ds.x.items()}
    cfg = TrainConfig(epochs=EPOCHS, batch_size=B, eval_batch_size=16, lr=3e-3, grad_clip=0.5, seed=0, progress=False,
                      log_steps=True, select_metric="train_steps", select_mode="max")
    return model, [ds, ds, None], cfg, None


CASES = {"joint": lambda: mla_case("joint"),
         "mla_owm": lambda: mla_case("mla", missing=0.25, hgm="owm"),
         "ogm_ge": lambda: mla_case("ogm_ge", alpha=0.5),
         "mmpareto": lambda: mla_case("mmpareto", missing=0.25),
         "agm": lambda: mla_case("agm", alpha=1.5, official_clip=True),
         "inforeg": lambda: mla_case("inforeg", missing=0.25, window=2),
         "gblending": lambda: mla_case("gblending", missing=0.25, super_epoch=1),
         # stages a, b, a (boost + rectify epochs): b mostly missing, so some ranks hold none of b's rows in its stage
         "reconboost": lambda: mla_case("reconboost", missing=RB_MISSING, epochs=5, stage_epochs=1, rectify_epochs=1,
                                        head_hidden=8),
         "reconboost_released": lambda: mla_case("reconboost", missing=RB_MISSING, epochs=5, stage_epochs=1,
                                                 rectify_epochs=1, head_hidden=0, head="separate", reconcile="kl",
                                                 consolidation="released", empty_ensemble="one"),
         "cmg_full": cmg_case,
         "cmg_grl": lambda: cmg_case("grl")}
RESUME = ("mla_owm", "cmg_full")


def run(name, run_dir=None, stop_after=None, precision="fp32"):
    model, (tr, va, te), cfg, collate = CASES[name]()
    if precision != "fp32": cfg = dataclasses.replace(cfg, precision=precision)
    res = fit(model, tr, va, te, cfg=cfg, run_dir=run_dir, collate_fn=collate, device="cpu", stop_after=stop_after)
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "history": res.history,
            "steps": res.steps, "test": res.test, "val": res.val}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out"); ap.add_argument("--ckpt", default=None)
    ap.add_argument("--stop-after", type=int, default=None, help="with --ckpt: stop the resume cases after K epochs")
    ap.add_argument("--precision", default="fp32", help="bf16: float32 models under bf16 autocast (float64 otherwise)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated names of CASES")
    a = ap.parse_args()
    set_threads(1)
    if a.precision == "fp32": torch.set_default_dtype(torch.float64)   # autocast leaves float64 alone
    D.init_from_env("cpu")
    out = {name: run(name, precision=a.precision) for name in a.cases.split(",")}
    if a.ckpt:
        for name in RESUME:
            out[f"resume_{name}"] = run(name, os.path.join(a.ckpt, name), a.stop_after)
    out["world"] = D.world()
    if D.is_main(): torch.save(out, a.out)
    D.barrier(); D.shutdown()


if __name__ == "__main__":
    sys.exit(main())
