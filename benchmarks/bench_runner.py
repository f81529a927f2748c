"""What one pipeline run costs before it trains (numbers printed, not a timed test).

1. Import times, each in a fresh interpreter: torch, torch._dynamo (loaded by every torch optimizer on its first
   step), papermill with and without jsonschema's optional IRI checker, scikit-learn (the probes), matplotlib.
2. `mla_cmg.runner.run_all` on a notebook that only imports torch and takes one Adam step: one run, then three runs
   side by side (`jobs=3`, what a pipeline stage does with seeds 0, 1, 2), wall time of each call.

    .venv/bin/python benchmarks/bench_runner.py [--reps 3]
"""
import argparse, json, statistics, subprocess, sys, tempfile, time
from pathlib import Path

IMPORTS = {
    "torch": "import torch",
    "torch._dynamo (after torch)": "import torch, time; t = time.perf_counter(); import torch._dynamo; print(time.perf_counter() - t)",
    "papermill": "import papermill",
    "papermill without rfc3987_syntax": "import sys; sys.modules['rfc3987_syntax'] = None; import papermill",
    "sklearn.linear_model": "import sklearn.linear_model",
    "matplotlib.pyplot": "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot",
}


def import_time(code: str) -> float:
    "Seconds to run `code` in a fresh interpreter minus a bare interpreter's start (or the code's own printed time)."
    def run(c):
        t0 = time.perf_counter(); r = subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True)
        return time.perf_counter() - t0, r.stdout.strip()
    wall, out = run(code)
    if out: return float(out)
    return wall - run("pass")[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    print("import times (s, median of reps):")
    for name, code in IMPORTS.items():
        print(f"  {name:36s} {statistics.median(import_time(code) for _ in range(a.reps)):.2f}")

    import nbformat
    from mla_cmg.runner import run_all
    tmp = Path(tempfile.mkdtemp(prefix="bench_runner-"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("seed = 0\nout_dir = '.'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import torch\np = torch.zeros(3, requires_grad=True)\nopt = torch.optim.Adam([p])\n"
                                          "p.sum().backward(); opt.step()\n"
                                          "from mla_cmg.core import save_json\nsave_json(f'{out_dir}/metrics.json', {'seed': seed})")]
    nbformat.write(nb, tmp / "exp.ipynb")
    for n in (1, 3):
        walls = []
        for r in range(a.reps):
            t0 = time.perf_counter()
            run_all(tmp / "exp.ipynb", [{"seed": s, "out_dir": f"runs/r{r}_{n}/s{s}"} for s in range(n)], jobs=n, cwd=tmp, log=None)
            walls.append(time.perf_counter() - t0)
        print(f"run_all, {n} run(s) side by side: {statistics.median(walls):.2f} s (median of {a.reps})")
    print(json.dumps({"python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
