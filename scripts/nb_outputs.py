#!/usr/bin/env python3
"""The chapters in nbs/ carry the outputs of their quick cells in git, so that they read well unexecuted.

  python scripts/nb_outputs.py run   [NB ...]   execute chapters from nbs/ with the venv's kernel, keep the outputs,
                                                record a hash of each code cell's source (`make outputs`)
  python scripts/nb_outputs.py check [NB ...]   fail when a chapter's outputs are stale (a code cell's source no longer
                                                matches the hash recorded when it ran), missing, errors, or the
                                                notebook is over MAX_BYTES (`make check-outputs`, part of `make test`)

Cells flagged `#| notest` (the settings.ini `tst_flags`; heavy evidence cells that train) are not run here, as
under nbdev_test: their hash is recorded with no output, and the cells after them show the stored records.
Stderr streams (progress bars, warnings with absolute paths) are dropped; figures are inline PNGs at 100 dpi, and a
figure whose smallest text would be under 9 px high as the site shows it (mla_cmg.viz.legibility) fails the run.
Without arguments every chapter is run/checked: nbs/*.ipynb except index.ipynb (no code) and nbs/experiments/
(papermill templates, run by DVC).
"""
from __future__ import annotations
import argparse, hashlib, json, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
# Cell metadata written by `run`: {"source_sha": hash of the source it ran, "outputs": how many outputs it left}.
# nbdev_clean keeps it (settings.ini allowed_cell_metadata_keys).
KEY = "executed"
MAX_BYTES = 500_000
KERNEL = os.environ.get("KERNEL", "mla_cmg")
# Run before the chapter, not saved: small inline PNGs; every chapter on matplotlib's Agg backend (the library selects it
# on import), so that each figure left open after a cell reaches the post-run hook, which checks it as the site shows it
# (mla_cmg.viz.smallest_text: text at least MIN_TEXT_PX px high in the article column) and shows it once (not again when
# it is the cell's value). _CHECK, run after the chapter (not saved), fails the run on an illegible figure.
_SETUP = """\
import matplotlib as _mpl, matplotlib.pyplot as _plt
from IPython.core.pylabtools import select_figure_formats as _sff
from IPython.display import display as _display
from mla_cmg.viz import MIN_TEXT_PX as _MIN_PX, smallest_text as _smallest_text
_mpl.use('Agg')
_mpl.rcParams['figure.dpi'] = 100
_sff(get_ipython(), {'png'})
_illegible = []
def _show_open_figures(result=None):
    for _n in _plt.get_fignums():
        _f = _plt.figure(_n)
        _px, _pt, _t, _ = _smallest_text(_f)
        if _px < _MIN_PX:
            _info = getattr(result, 'info', None)
            _cell = getattr(_info, 'cell_id', None) or repr(getattr(_info, 'raw_cell', '').strip().splitlines()[:1])
            _illegible.append(f"cell {_cell}: {_t[:40]!r} ({_pt:g} pt) is shown {_px:.1f} px high")
        if _f is not getattr(result, 'result', None): _display(_f)      # not twice when it is the cell's value
    _plt.close('all')
get_ipython().events.register('post_run_cell', _show_open_figures)
"""
_CHECK = """\
assert not _illegible, (f"figures with text under {_MIN_PX} px as the site shows them (larger fonts, a narrower figure): "
                        + "; ".join(_illegible))
"""


def chapters(names=None) -> list[Path]:
    "The chapter notebooks named (paths or stems), default all of nbs/*.ipynb except index."
    allnb = sorted(p for p in NBS.glob("*.ipynb") if p.name != "index.ipynb")
    if not names: return allnb
    out = []
    for n in names:
        p = Path(n)
        cand = [q for q in allnb if q.resolve() == p.resolve() or q.stem == p.stem or q.name == p.name]
        if not cand: raise SystemExit(f"nb_outputs: {n!r} is not a chapter of nbs/ (chapters: {', '.join(q.stem for q in allnb)})")
        out += cand
    return out


def src_hash(source: str) -> str:
    "Short sha256 of a code cell's source."
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def is_skipped(source: str) -> bool:
    "A cell nbdev_test does not run: a `#| notest` flag or `#| eval: false`."
    return bool(re.search(r"^#\|\s*(notest\b|eval:\s*false)", source, re.M))


def _tidy_output(o: dict) -> dict | None:
    "Drop stderr; no execution counts or transient metadata; repository paths made relative."
    if o.get("output_type") == "stream" and o.get("name") == "stderr": return None
    o.pop("transient", None)
    if "execution_count" in o: o["execution_count"] = None
    if "metadata" in o and o["output_type"] in ("display_data", "execute_result"): o["metadata"] = o.get("metadata") or {}
    def rel(t): return t.replace(str(NBS), ".").replace(str(ROOT), "..")
    if o.get("output_type") == "stream":
        o["text"] = rel(_src({"source": o.get("text", "")}))
    for k, v in (o.get("data") or {}).items():
        if k.startswith("text/"):
            o["data"][k] = rel(_src({"source": v}))
    return o


def run_one(path: Path, timeout: int = 900) -> dict:
    """Execute one chapter in nbs/ and write it back (atomically) with outputs and source hashes.

    Only `outputs`, `execution_count` and the `source_sha` cell metadata change: the file keeps its layout (key order,
    one JSON key per line as scripts/pct2nb.py writes it), so that a branch that edits the source merges cleanly."""
    import nbformat
    from nbclient import NotebookClient
    raw = json.loads(path.read_text(encoding="utf-8"))
    exe = nbformat.reads(json.dumps(raw), as_version=4)
    skipped = 0
    for c in exe.cells:
        if c.cell_type == "code" and is_skipped(c.source): c.source, skipped = "", skipped + 1
    exe.cells.insert(0, nbformat.v4.new_code_cell(_SETUP))
    exe.cells.append(nbformat.v4.new_code_cell(_CHECK))
    t0 = time.time()
    env_keep = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "MPLBACKEND")}
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    os.environ.pop("MPLBACKEND", None)
    try:
        NotebookClient(exe, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(NBS)}}).execute()
    finally:
        for k, v in env_keep.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    secs = time.time() - t0
    for c, e in zip(raw["cells"], exe.cells[1:]):
        if c.get("cell_type") != "code": continue
        src = _src(c)
        c["execution_count"] = None
        c["outputs"] = [] if is_skipped(src) else [_lines(t) for o in e.outputs if (t := _tidy_output(json.loads(json.dumps(o)))) is not None]
        c.setdefault("metadata", {})[KEY] = {"source_sha": src_hash(src), "outputs": len(c["outputs"])}
    text = json.dumps(raw, indent=1, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8"); os.replace(tmp, path)
    return dict(seconds=round(secs, 1), bytes=len(text.encode()), skipped=skipped)


def _lines(o: dict) -> dict:
    "Multi-line strings as lists of lines, as Jupyter stores them (small diffs)."
    def split(v): return v.splitlines(keepends=True) if isinstance(v, str) and "\n" in v else v
    if "text" in o: o["text"] = split(o["text"])
    for k, v in (o.get("data") or {}).items():
        if not k.startswith("image/") or k == "image/svg+xml": o["data"][k] = split(v)
    return o


def problems(path: Path, max_bytes: int = MAX_BYTES) -> list[str]:
    "What is wrong with a chapter's committed outputs (empty list when nothing is)."
    try:
        raw = path.read_bytes(); nb = json.loads(raw)
    except (OSError, ValueError) as e:
        return [f"{path.name}: cannot read the notebook ({e})"]
    out, code = [], 0
    if len(raw) > max_bytes:
        out.append(f"{path.name}: {len(raw) / 1000:.0f} kB is over the {max_bytes / 1000:.0f} kB limit (smaller figures or fewer printed lines)")
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code": continue
        code += 1
        src, outs = _src(c), c.get("outputs", [])
        tag = f"{path.name} cell {i} (id {c.get('id', '?')})"
        rec = c.get("metadata", {}).get(KEY)
        if not isinstance(rec, dict) or "source_sha" not in rec:
            out.append(f"{tag}: never executed by `make outputs` (no recorded source hash)")
        elif rec["source_sha"] != src_hash(src): out.append(f"{tag}: its source changed since its outputs were made (stale)")
        elif rec.get("outputs", 0) != len(outs):
            out.append(f"{tag}: {len(outs)} output(s) committed where its run left {rec.get('outputs', 0)} (outputs cleared or edited)")
        if any(o.get("output_type") == "error" for o in outs): out.append(f"{tag}: has an error output")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["run", "check"])
    ap.add_argument("notebooks", nargs="*")
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    a = ap.parse_args(argv)
    nbs = chapters(a.notebooks)
    if a.cmd == "run":
        failed = []
        for p in nbs:
            try:
                r = run_one(p)
                print(f"{p.name}: {r['seconds']:.1f} s, {r['bytes'] / 1000:.0f} kB"
                      + (f", {r['skipped']} #| notest cell(s) not run" if r["skipped"] else ""), flush=True)
            except Exception as e:       # one failing chapter does not stop the others; the exit status says it
                failed.append(p.name); print(f"{p.name}: FAILED: {type(e).__name__}: {str(e)[-2000:]}", flush=True)
        bad = [m for p in nbs for m in problems(p, a.max_bytes)]
        for m in bad: print("  " + m)
        if failed: print(f"nb_outputs run: {len(failed)} chapter(s) failed: {', '.join(failed)}")
        return 1 if failed or bad else 0
    bad = [m for p in nbs for m in problems(p, a.max_bytes)]
    if bad:
        print("Chapter outputs are stale, missing or too large; rerun `make outputs` (or "
              "`make outputs NB=nbs/NN_name.ipynb`) and commit the notebooks:")
        for m in bad: print("  " + m)
        return 1
    print(f"check-outputs: {len(nbs)} chapters carry current outputs, each under {a.max_bytes / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
