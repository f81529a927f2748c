"""Killing the runner's process group stops its Jupyter kernels at once (they run in a session of their own)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")


def _kernels(marker: str) -> list:
    r = subprocess.run(["pgrep", "-f", "ipykernel_launcher"], capture_output=True, text=True)
    pids = [int(p) for p in r.stdout.split()]
    out = []
    for p in pids:
        try: env = Path(f"/proc/{p}/environ").read_bytes()
        except OSError: continue
        if marker.encode() in env: out.append(p)
    return out


def test_kill_runner_stops_kernels(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("params = {}", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\nfor _ in range(600): time.sleep(0.1)")]
    nbformat.write(nb, tmp_path / "sleep.ipynb")
    marker = f"MLA_CMG_KILL_TEST={os.getpid()}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    runner = subprocess.Popen([sys.executable, "-m", "mla_cmg.runner", "--notebook", str(tmp_path / "sleep.ipynb"),
                               "--out", str(tmp_path / "out.ipynb")], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not _kernels(marker) and time.time() - t0 < 120: time.sleep(0.2)
        kernels = _kernels(marker)
        assert kernels, "the kernel never started"
        time.sleep(2)                                            # the kernel is running the sleep cell now
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        t1 = time.time()
        while _kernels(marker) and time.time() - t1 < 5: time.sleep(0.05)
        assert not _kernels(marker), "kernel still alive 5 s after the runner was killed"
        assert time.time() - t1 < 0.9, f"kernel took {time.time() - t1:.2f}s to die"   # the parent poller needs 1-4 s
    finally:
        for p in _kernels(marker): os.kill(p, signal.SIGKILL)


# --- SIGKILL of the runner alone (not its group), in pipeline mode: no worker, kernel, torchrun or rank survives it
ROOT = Path(__file__).resolve().parents[1]


def _marked(marker: str) -> list:
    "Live processes (not zombies) whose environment holds `marker`."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try:
            if marker.encode() in (d / "environ").read_bytes(): out.append(int(d.name))
        except OSError: continue
    return out


def _kill_runner_while_training(tmp_path, sets, n_seeds, min_procs):
    import yaml
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p.update(seeds=list(range(n_seeds)), jobs=n_seeds)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    marker = f"MLA_CMG_KILL_TEST={os.getpid()}-{tmp_path.name}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", marker.split("=")[0]: marker.split("=")[1],
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    root = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mla_cmg.runner", "mla", "synthetic", "joint", "--params", str(tmp_path / "params.yaml"),
           "--root", str(root), *[a for kv in ["synthetic={n: 300}", "epochs=100000", "probe=false", *sets] for a in ("--set", kv)]]
    runner = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "stderr.txt", "w"))
    ckpts = [root / "mla" / "synthetic" / "joint" / f"seed{s}" / "ckpt" / "last.pt" for s in range(n_seeds)]
    try:
        t0 = time.time()     # every seed is training: each has written a checkpoint
        while not all(c.exists() for c in ckpts) and time.time() - t0 < 300 and runner.poll() is None: time.sleep(0.2)
        assert runner.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
        assert all(c.exists() for c in ckpts), "the runs never started training"
        procs = _marked(marker)
        assert len(procs) >= min_procs, (len(procs), procs)
        os.kill(runner.pid, signal.SIGKILL)                  # the runner only: its children are in its session
        runner.wait(timeout=10)
        t1 = time.time()
        while _marked(marker) and time.time() - t1 < 10: time.sleep(0.05)
        left = _marked(marker)
        assert not left, f"{len(left)} process(es) of the run still alive 10 s after the runner was killed"
        assert time.time() - t1 < 2, f"the run's processes took {time.time() - t1:.2f}s to die"
        before = [c.stat().st_mtime_ns for c in ckpts]
        time.sleep(1.5)
        assert [c.stat().st_mtime_ns for c in ckpts] == before             # nobody is training any more
    finally:
        for p in _marked(marker):
            try: os.kill(p, signal.SIGKILL)
            except OSError: pass


@pytest.mark.slow
def test_kill_runner_pipeline_three_seeds(tmp_path):
    "Pipeline mode, 3 seeds side by side: runner, 3 workers and 3 kernels; SIGKILL of the runner stops them all within 2 s."
    _kill_runner_while_training(tmp_path, [], 3, min_procs=7)


@pytest.mark.slow
def test_kill_runner_world_size_2(tmp_path):
    "world_size 2: runner, torchrun and 2 ranks; SIGKILL of the runner stops them all within 2 s."
    _kill_runner_while_training(tmp_path, ["world_size=2"], 1, min_procs=4)
