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
