"""The whole DVC pipeline on the smoke profile, in a temporary copy (scripts/run_profile.py smoke).

Checks that `dvc repro` runs every stage, that a second `dvc repro` does nothing, that `dvc repro -f` of a training
stage reproduces its dvc.lock entry, that `dvc push` / `dvc pull` restore every cached output through the default
local remote, and that the report wrote its tables, figures and README section.
"""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_pipeline(tmp_path):
    work = tmp_path / "repo"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_profile.py"), "smoke", "--keep", "--workdir", str(work)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(r.stdout.splitlines()[0])
    summary = (work / "results" / "summary.md").read_text()
    assert "MLA — avdigits" in summary and "| MLA (HGM + DF) |" in summary
    for f in ("mla_tsne.png", "mla_gap.png", "mla_missing_rate.png", "cmg_tsne.png", "cmg_codes.png"):
        assert (work / "results" / "figures" / f).stat().st_size > 1000, f
    assert (work / "runs" / "report.ipynb").exists()
