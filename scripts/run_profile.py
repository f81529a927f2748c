"""Run the whole DVC pipeline on a profile of params.yaml in a temporary copy of the repository.

    python scripts/run_profile.py smoke [--keep] [--workdir DIR]          # make smoke: the checks below
    python scripts/run_profile.py evidence --results results/evidence     # make evidence: the wider grids
    python scripts/run_profile.py evidence --results results/evidence --report-from RUNS   # report kept runs again

The copy holds the files git tracks plus untracked, non-ignored files (so uncommitted work is tested), and the
fetched wheels in data/raw when this checkout has them (the fetch stage then finds them up to date), and a link to
data/raw/papers (the papers' downloads, `make paper`) when it exists.
`profiles.<NAME>` of params.yaml is merged over params.yaml in the copy, then `dvc repro` runs the same stages,
runner and report as `make repro`. With `--results DEST` the copy's tables, figures and summary are copied to DEST.

With `--checks` (the default for `smoke`): a second `dvc repro` must find nothing to do; `dvc repro -f` of one
training stage must reproduce its dvc.lock entry exactly (nothing time-dependent in a hashed output); and
`dvc push` / `dvc pull` must restore every cached output (checked file by file, then `dvc status` must be clean).
Prints the wall time of each step. Used by tests/test_pipeline.py, `make smoke` and `make evidence`.

With `--report-from RUNS` (the `runs/` folder of a kept copy, `--keep`): no copy and no training; the report stage's
command runs on the profile's params over those runs' records, so a change to the report code reaches committed evidence
without retraining. Its tables compare against DEST's committed tables (results/drift.md).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mla_cmg.runner import apply_profile  # noqa: E402


def sh(cmd, cwd, env=None, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed in {cwd} (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def make_copy(dst: Path, profile: str) -> Path:
    files = sh(["git", "ls-files", "-co", "--exclude-standard", "-z"], ROOT).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    for whl in (ROOT / "data" / "raw").glob("*.whl"):
        (dst / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copy2(whl, dst / "data" / "raw" / whl.name)
    papers = ROOT / "data" / "raw" / "papers"         # the papers' downloads (make paper): linked, never copied
    if papers.exists() and not (dst / "data" / "raw" / "papers").exists():
        (dst / "data" / "raw").mkdir(parents=True, exist_ok=True)
        (dst / "data" / "raw" / "papers").symlink_to(papers.resolve(), target_is_directory=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    (dst / "params.yaml").write_text(yaml.safe_dump(apply_profile(params, profile), sort_keys=False))
    sh("git init -q && git add -A && git -c user.name=profile -c user.email=profile@localhost commit -qm profile", dst)
    return dst


def require_clean(dvc, work, env, when):
    st = sh([dvc, "status"], work, env).stdout
    if "up to date" not in st:
        raise RuntimeError(f"`dvc status` {when} is not clean:\n{st}")


def lock_entry(work: Path, stage: str) -> dict:
    return yaml.safe_load((work / "dvc.lock").read_text())["stages"][stage]


def checks(dvc, work, env, times):
    t = time.time(); r2 = sh([dvc, "repro"], work, env); times["repro_again"] = time.time() - t
    if "Running stage" in r2.stdout:
        raise RuntimeError(f"second `dvc repro` reran stages:\n{r2.stdout[-3000:]}")
    require_clean(dvc, work, env, "after repro")
    stage = next(s for s in yaml.safe_load((work / "dvc.lock").read_text())["stages"] if s.startswith("mla@"))
    before = lock_entry(work, stage)
    t = time.time(); sh([dvc, "repro", "-f", "-s", stage], work, env); times["repro_force_one"] = time.time() - t
    if lock_entry(work, stage) != before:
        raise RuntimeError(f"`dvc repro -f {stage}` changed its dvc.lock entry: a hashed output depends on the run")
    t = time.time()
    sh([dvc, "push"], work, env)
    cached = [work / "runs", *(work / "data" / "prepared").glob("*.npz")]   # datasheets, tables, figures: git files
    own = {".timing", ".locks", ".failed"}     # the runner's timings, locks and failed records: outside every DVC output
    outs = sorted(f for p in cached for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file() and not own & set(f.parts))
    shutil.rmtree(work / ".dvc" / "cache", ignore_errors=True)
    for p in cached:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    sh([dvc, "pull"], work, env)
    missing = [str(p.relative_to(work)) for p in outs if not p.exists()]
    if missing:
        raise RuntimeError(f"dvc pull did not restore {len(missing)} file(s), e.g. {missing[:5]}")
    require_clean(dvc, work, env, "after push, delete and pull")
    times["push_pull"] = time.time() - t


def copy_results(src: Path, dest: Path) -> None:
    "The report's tables, figures and summaries from `src` (a results/ folder) to `dest`."
    for part in ("tables", "figures"):
        shutil.rmtree(dest / part, ignore_errors=True)
        shutil.copytree(src / part, dest / part)
    for f in ("summary.md", "findings.md", "verdicts.md", "drift.md"):
        if (src / f).exists(): shutil.copy2(src / f, dest / f)


def report_from(profile: str, runs: Path, dest: Path) -> int:
    "The report stage's command on profile `profile` over the records in `runs`, its results copied to `dest`."
    if not (runs / "mla").is_dir() and not (runs / "cmg").is_dir():
        raise SystemExit(f"{runs}: no mla/ or cmg/ run records here; pass the runs/ folder of a copy kept with --keep")
    with tempfile.TemporaryDirectory(prefix=f"mla_cmg-report-{profile}-") as tmp:
        tmp = Path(tmp)
        params = apply_profile(yaml.safe_load((ROOT / "params.yaml").read_text()), profile)
        (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out = tmp / "results"
        if dest.exists():                                      # the committed tables: what results/drift.md compares with
            shutil.copytree(dest / "tables", out / "tables") if (dest / "tables").is_dir() else None
        t = time.time()
        sh([sys.executable, "-m", "mla_cmg.runner", "--notebook", "nbs/experiments/report.ipynb", "--out", str(tmp / "report.ipynb"),
            "--set", f"params_file={tmp / 'params.yaml'}", "--set", f"runs_root={runs.resolve()}", "--set", f"out_dir={out}",
            "--set", "prepared=data/prepared"], ROOT)
        copy_results(out, dest)
    print(f"profile {profile} reported from {runs} into {dest} in {time.time() - t:.1f}s")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?", default="smoke", help="a key of params.yaml's `profiles`")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--results", default=None, help="copy the copy's results/ (tables, figures, summary) here")
    ap.add_argument("--checks", action=argparse.BooleanOptionalAction, default=None,
                    help="the reproducibility checks (default: on for the smoke profile only)")
    ap.add_argument("--report-from", default=None, metavar="RUNS", help="report these runs again (no copy, no training)")
    a = ap.parse_args(argv)
    if a.report_from:
        if not a.results: ap.error("--report-from needs --results DEST")
        return report_from(a.profile, Path(a.report_from), Path(a.results))
    work = Path(a.workdir or tempfile.mkdtemp(prefix=f"mla_cmg-{a.profile}-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    dvc = str(Path(sys.executable).parent / "dvc")
    times = {}
    try:
        t = time.time(); make_copy(work, a.profile); times["copy"] = time.time() - t
        t = time.time(); r = sh([dvc, "repro"], work, env); times["repro"] = time.time() - t
        if a.checks if a.checks is not None else a.profile == "smoke": checks(dvc, work, env, times)
        if a.results: copy_results(work / "results", Path(a.results))
        print(f"profile {a.profile} OK: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
        print(r.stdout[-1500:])
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
