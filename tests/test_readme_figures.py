"""The README's figures render in any clone: every image it links is a file tracked by git (not a DVC-cached
output), the report's figures together stay small, and the report stage keeps them out of the DVC cache."""
import re, subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def tracked() -> set:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {p for p in out.split("\0") if p}


def test_readme_images_are_in_git():
    imgs = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README) + re.findall(r"<img[^>]+src=\"([^\"]+)\"", README)
    assert len(imgs) >= 5, imgs
    local = [i for i in imgs if not re.match(r"https?://", i)]
    assert local == imgs, f"README links images outside the repository: {sorted(set(imgs) - set(local))}"
    missing = sorted(set(local) - tracked())
    assert not missing, f"README images not tracked by git (broken in a fresh clone): {missing}"
    for want in ("results/figures/mla_tsne.png", "results/figures/mla_gap.png", "results/figures/cmg_tsne.png"):
        assert want in local


def test_report_figures_small_and_uncached():
    figs = [ROOT / p for p in tracked() if p.startswith("results/figures/") and p.endswith(".png")]
    assert len(figs) >= 7
    total = sum(f.stat().st_size for f in figs)
    assert total <= 1_500_000, f"results/figures/ is {total / 1e6:.2f} MB (> 1.5 MB): save smaller figures"
    outs = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["outs"]
    spec = next(o for o in outs if isinstance(o, dict) and "results/figures" in o)
    assert spec["results/figures"].get("cache") is False           # DVC leaves them to git


def test_readme_does_not_promise_dvc_pull():
    assert "`dvc pull` on a fresh clone is not promised" in README
