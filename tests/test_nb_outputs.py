"""The chapters' committed outputs (scripts/nb_outputs.py; `make outputs`, `make check-outputs`).

The check itself must pass on the committed chapters, and must fail on each way outputs go wrong: a cell's source
edited after its run (stale), outputs cleared, a cell never run, an error output, a notebook over the size limit.
nbdev_clean (the settings.ini clean step) must keep the outputs and the recorded hashes.
"""
import copy, json, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import nb_outputs as nbo

CHAPTERS = nbo.chapters()


def test_committed_chapters_are_current():
    assert len(CHAPTERS) >= 20 and all(p.name != "index.ipynb" for p in CHAPTERS)
    bad = [m for p in CHAPTERS for m in nbo.problems(p)]
    assert not bad, "\n".join(bad)
    outs = {p.stem: sum(len(c.get("outputs", [])) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code")
            for p in CHAPTERS}
    # the chapters carry their outputs (most test cells are plain asserts, which print nothing)
    assert sum(outs.values()) >= 30 and sum(1 for v in outs.values() if v) >= 12, outs
    for ch in ("20_mla_hgm", "30_cmg_vq", "40_viz"):                   # figures among them (inline PNGs)
        nb = json.loads((ROOT / "nbs" / f"{ch}.ipynb").read_text())
        assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", [])), ch


def _with_output(nb):
    return next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs"))


@pytest.fixture
def chapter(tmp_path):
    src = ROOT / "nbs" / "20_mla_hgm.ipynb"
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    return dst


def _edit(path, fn):
    nb = json.loads(path.read_text()); fn(nb); path.write_text(json.dumps(nb, indent=1))


def test_check_fails_on_stale_cleared_unrun_error_and_size(chapter):
    assert nbo.problems(chapter) == []
    base = json.loads(chapter.read_text())
    i = _with_output(base)
    cases = {
        "stale": lambda nb: nb["cells"][i]["source"].append("\nprint('edited')"),
        "cleared": lambda nb: nb["cells"][i].update(outputs=[]),
        "never executed": lambda nb: nb["cells"][i]["metadata"].pop(nbo.KEY),
        "error output": lambda nb: nb["cells"][i]["outputs"].append(
            {"output_type": "error", "ename": "E", "evalue": "x", "traceback": []}) or
            nb["cells"][i]["metadata"][nbo.KEY].update(outputs=len(nb["cells"][i]["outputs"])),
    }
    words = {"stale": "stale", "cleared": "outputs cleared", "never executed": "never executed", "error output": "error output"}
    for name, fn in cases.items():
        chapter.write_text(json.dumps(base, indent=1)); _edit(chapter, fn)
        msgs = nbo.problems(chapter)
        assert any(words[name] in m for m in msgs), (name, msgs)
    chapter.write_text(json.dumps(base, indent=1))
    assert any("over the" in m for m in nbo.problems(chapter, max_bytes=1000))
    assert nbo.main(["check", str(ROOT / "nbs" / "20_mla_hgm.ipynb")]) == 0


def test_nbdev_clean_keeps_outputs_and_hashes(chapter):
    before = json.loads(chapter.read_text())
    r = subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(chapter)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    after = json.loads(chapter.read_text())
    assert nbo.problems(chapter) == []
    outs = lambda nb: [c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"]
    assert sum(map(len, outs(after))) == sum(map(len, outs(before))) > 0


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(SystemExit, match="not a chapter of nbs/"):
        nbo.chapters(["no_such_chapter"])


def _tiny_chapter(path, *sources):
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "execution_count": None, "outputs": [], "id": f"c{i:03d}"}
             for i, s in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1))


def test_run_shows_each_figure_once_and_fails_on_illegible_text(tmp_path):
    ok = tmp_path / "ok.ipynb"
    _tiny_chapter(ok, "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3)); ax.plot([0, 1])",
                  "fig2, ax2 = plt.subplots(figsize=(4, 3)); ax2.plot([1, 0]); fig2")
    nbo.run_one(ok)
    outs = [c["outputs"] for c in json.loads(ok.read_text())["cells"]]
    assert [sum("image/png" in o.get("data", {}) for o in c) for c in outs] == [1, 1]    # the cell's value: not shown twice
    bad = tmp_path / "bad.ipynb"          # a row of panels 16 in wide with a 6-pt legend: about 4 px high in the column
    _tiny_chapter(bad, "import matplotlib.pyplot as plt\nfig, axs = plt.subplots(1, 4, figsize=(16, 3))\n"
                       "axs[0].plot([0, 1], label='tiny legend'); axs[0].legend(fontsize=6)")
    with pytest.raises(Exception, match="tiny legend"):
        nbo.run_one(bad)
