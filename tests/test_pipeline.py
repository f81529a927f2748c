"""The whole DVC pipeline on the smoke profile, in a temporary copy (scripts/run_profile.py smoke).

Checks that `dvc repro` runs every stage, that a second `dvc repro` does nothing, that `dvc repro -f` of a training
stage reproduces its dvc.lock entry, that `dvc push` / `dvc pull` restore every cached output through the default
local remote, and that the report wrote its tables, figures and README section.

Then, in the same copy, the parameter sweep of docs/scale_out.md ("Many independent runs on one machine"): two experiments
queued with `dvc exp run --queue -S 'seeds=[s]' -S mla.common.lr=... -S +mla.common.device=cpu mla@avdigits-joint`, run by
`dvc queue start -j 2`, each in its own temporary workspace, while the workspace's dvc.lock stays as it was.
"""
import json, os, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The queue's workers are started as `dvc exp queue-worker` found on PATH (dvc_task), and the stages call `python`:
# both must be the venv's, as `make` arranges with its PATH.
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def smoke_copy(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_profile.py"), "smoke", "--keep", "--workdir", str(work)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(r.stdout.splitlines()[0])
    return work


def test_smoke_pipeline(smoke_copy):
    work = smoke_copy
    summary = (work / "results" / "summary.md").read_text()
    assert "MLA — avdigits" in summary and "| MLA (HGM + DF) |" in summary
    for f in ("mla_tsne.png", "mla_gap.png", "mla_missing_rate.png", "cmg_tsne.png", "cmg_codes.png"):
        assert (work / "results" / "figures" / f).stat().st_size > 1000, f
    assert (work / "runs" / "report.ipynb").exists()


def dvc(work, *args, check=True, timeout=300):
    r = subprocess.run([str(BIN / "dvc"), *args], cwd=work, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check: assert r.returncode == 0, f"dvc {' '.join(args)} (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def queue_states(work, names) -> dict:
    "Each named task's status in `dvc queue status` (Queued, Running, Success, Failed)."
    rows = [line.split() for line in dvc(work, "queue", "status").splitlines()]
    return {row[1]: row[-1] for row in rows if len(row) >= 3 and row[1] in names}


def wait_for_queue(work, names, timeout=600) -> dict:
    "Wait until every named task has ended; `dvc queue status` (~1 s of CPU) is asked every 15 s or once refs appear."
    t0, asked, states = time.time(), 0.0, {}
    while time.time() - t0 < timeout:
        refs = subprocess.run(["git", "for-each-ref", "--format=%(refname:lstrip=-1)", "refs/exps"], cwd=work,
                              capture_output=True, text=True).stdout.split()
        if set(names) <= set(refs) or time.time() - asked > 15:    # a successful experiment is a ref; a failed one is not
            asked, states = time.time(), queue_states(work, names)
            if len(states) == len(names) and all(v in ("Success", "Failed") for v in states.values()): return states
        time.sleep(2)
    pytest.fail(f"the queue has not finished after {timeout} s: {states}")


def dir_manifest(work, out: dict) -> list:
    "The files of a cached directory output (its `.dir` object in the cache), as relative paths."
    md5 = out["md5"]
    return [e["relpath"] for e in json.loads((work / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())]


def test_queue_sweep(smoke_copy):
    "Two queued experiments of one training stage, run by two queue workers side by side (docs/scale_out.md's sweep)."
    work, stage, lr = smoke_copy, "mla@avdigits-joint", 0.003
    metrics_file = "runs/mla/avdigits/joint.json"
    before = {f: (work / f).read_bytes() for f in ("dvc.lock", "params.yaml", metrics_file)}
    base_seeds = yaml.safe_load(before["params.yaml"])["seeds"]
    seeds = {f"sweep-s{s}": s for s in (1, 2)}
    assert not set(seeds.values()) & set(base_seeds), "the sweep must differ from the workspace's seeds"
    t0 = time.time()
    for name, s in seeds.items():
        dvc(work, "exp", "run", "--queue", "-n", name, "-S", f"seeds=[{s}]", "-S", f"mla.common.lr={lr}",
            "-S", "+mla.common.device=cpu", stage)     # `+`: a key params.yaml lacks (how docs/scale_out.md assigns a GPU)
    try:
        dvc(work, "queue", "start", "-j", "2")
        states = wait_for_queue(work, seeds)
    finally:
        dvc(work, "queue", "stop", check=False)
    elapsed = time.time() - t0
    if not all(v == "Success" for v in states.values()):
        logs = {n: dvc(work, "queue", "logs", n, check=False)[-2000:] for n in seeds}
        pytest.fail(f"{states}\n" + "\n".join(f"--- {n}\n{log}" for n, log in logs.items()))
    print(f"2 queued experiments of {stage} with `dvc queue start -j 2`: {elapsed:.1f}s")

    # the workspace is untouched: its lock, its parameters and its outputs are those of before the sweep
    for f, b in before.items(): assert (work / f).read_bytes() == b, f"the sweep changed the workspace's {f}"

    shown = json.loads(dvc(work, "exp", "show", "--json"))
    exps = {e["name"]: e["revs"][0] for base in shown for e in (base.get("experiments") or []) if e["name"] in seeds}
    assert set(exps) == set(seeds), f"experiments shown: {sorted(exps)}"
    results = {}
    for name, s in seeds.items():
        rev = exps[name]
        assert rev["error"] is None, rev["error"]
        p = rev["data"]["params"]["params.yaml"]["data"]
        assert p["seeds"] == [s] and p["mla"]["common"]["lr"] == lr and p["mla"]["common"]["device"] == "cpu", (name, p)
        # the stage itself ran with the parameters it was given: its dvc.lock entry in the experiment's commit records
        # them, and its output folder holds the run of seed s only
        lock = yaml.safe_load(subprocess.run(["git", "show", f"{rev['rev']}:dvc.lock"], cwd=work, capture_output=True,
                                             text=True, check=True).stdout)["stages"][stage]
        assert lock["params"]["params.yaml"]["seeds"] == [s] and lock["params"]["params.yaml"]["mla.common"]["lr"] == lr
        out = next(o for o in lock["outs"] if o["path"] == "runs/mla/avdigits/joint")
        runs = {Path(f).parts[0] for f in dir_manifest(work, out) if not f.startswith(".")}
        assert runs == {f"seed{s}"}, (name, runs)
        # the stage summary (a plain cached output: `dvc metrics show` reads the report's headline files instead),
        # read from the cache by the md5 the experiment's lock records
        md5 = next(o for o in lock["outs"] if o["path"] == metrics_file)["md5"]
        m = json.loads((work / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())
        used = m["parameters"]                                  # what the run itself was given
        assert used["lr"] == lr and used["device"] == "cpu", (name, used)
        results[name] = {k: v["mean"] for k, v in m["metrics"].items() if isinstance(v, dict) and "mean" in v}
    # different seeds train different models: the trained numbers of the two runs (and the workspace's) differ
    a, b = results.values()
    base = {k: v["mean"] for k, v in json.loads(before[metrics_file])["metrics"].items() if isinstance(v, dict) and "mean" in v}
    assert {"acc_multimodal", "f1_macro"} <= a.keys() == b.keys() == base.keys(), sorted(a)
    assert any(a[k] != b[k] for k in a), f"seeds {list(seeds.values())} gave identical metrics: {a}"
    assert any(a[k] != base[k] for k in a), "a swept run reproduced the workspace's metrics"
