#!/usr/bin/env python3
"""Build the documentation site into _site/ (`make docs`): offline, from what is in git, without running anything.

  python docs/build.py [--out _site] [--stage _build/docs_src] [--check-only]

It stages a copy of the sources in the repository's layout (so every relative link of the README and the chapters
stays valid) and runs Sphinx (docs/conf.py) on it:
- index:    README.md (rendered from nbs/index.ipynb, with the pipeline's results), figures from results/figures/;
- chapters: nbs/NN_*.ipynb in dependency order with their committed outputs (myst-nb, never executed); `#|`
            directive lines are taken out of the shown code, `#| hide` cells are not shown, and a figure a chapter
            links that is not generated yet (e.g. results/evidence/ before `make evidence`) becomes a note;
- results:  every table of results/tables/ and every figure of results/figures/, captioned with what was run
            (mla_cmg.report.figure_captions on params.yaml);
- scale_out: docs/scale_out.md (GPUs, torchrun, the experiment queue, measured scaling);
- api:      the signatures and docstrings of every exported function and class (autodoc, `__all__`), modules in
            the chapters' order, each linked to its chapter.
MathJax 3 is copied from the django-static-mathjax wheel into _static/mathjax/: no page loads anything from a CDN.
The build fails when a page would load a script or stylesheet over http(s).
"""
from __future__ import annotations
import argparse, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from nb_outputs import chapters  # noqa: E402  the library chapters in dependency (file-name) order, as `make outputs` runs them
from mla_cmg.core import evidence_target  # noqa: E402

GROUPS = [("Shared pieces", "0"), ("Data", "1"), ("MLA (CVPR 2024)", "2"), ("CMG / Uni-Code (NeurIPS 2023)", "3"),
          ("Figures and report", "4")]
# The accessibility extension (a11y/sre.js) reads its speech rules from [mathjax]/sre/mathmaps when the site has them
# and from a CDN otherwise: the site ships the base and English rules (the menu's default locale).
MATHJAX_PARTS = ["tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y", "adaptors",
                 "sre/mathmaps/base.json", "sre/mathmaps/en.json"]


def mathjax_dir() -> Path:
    "MathJax 3's es5 folder inside the installed django-static-mathjax package."
    import importlib.util
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("docs: MathJax not installed: `make setup` installs django-static-mathjax (dev requirements)")
    d = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "es5"
    if not (d / "tex-chtml.js").exists(): raise SystemExit(f"docs: {d}/tex-chtml.js missing: reinstall django-static-mathjax")
    return d


def _strip_directives(src: str) -> str:
    "Code as a reader sees it: without nbdev's `#|` directive lines."
    return "\n".join(l for l in src.split("\n") if not l.lstrip().startswith("#|")).strip("\n")


def stage_chapter(src: Path, dst: Path) -> dict:
    "Copy one chapter for the site; return what was changed."
    nb = json.loads(src.read_text(encoding="utf-8"))
    hidden, notes = 0, []
    cells = []
    for c in nb["cells"]:
        s = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "code":
            first = s.lstrip().split("\n", 1)[0]
            shown = _strip_directives(s)
            if first.startswith("#| hide") or (not shown and not c.get("outputs")):
                hidden += 1; continue
            c["source"] = shown
        elif c["cell_type"] == "markdown":
            def img(m):
                target = (src.parent / m.group(2)).resolve()
                if target.exists(): return m.group(0)
                notes.append(m.group(2))
                return (f"*Figure `{m.group(2).replace('../', '')}` ({m.group(1)}) is not generated yet: "
                        f"{'`make evidence` writes it' if 'evidence' in m.group(2) else '`make repro` writes it'}.*")
            c["source"] = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", img, s)
        cells.append(c)
    nb["cells"] = cells
    dst.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return dict(hidden=hidden, missing_figures=notes)


def _title(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    for c in cells:
        if c["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(c["source"]), re.M)
            if m: return m.group(1).strip()
    return nb.stem


def index_md(chs: list[Path]) -> str:
    "The README, then the site's tables of contents (hidden: the sidebar shows them)."
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = re.sub(r"^<!--.*?-->\s*", "", readme, flags=re.S)
    readme = readme.replace("](results/summary.md)", "](results.md)").replace("](docs/scale_out.md)", "](scale_out.md)")
    tocs = []
    for caption, prefix in GROUPS:
        names = [f"nbs/{p.stem}" for p in chs if p.stem.startswith(prefix)]
        if names: tocs.append("```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(names) + "\n```\n")
    tocs.append("```{toctree}\n:hidden:\n:caption: Results and reference\n\nresults\nscale_out\napi\n```\n")
    return readme + "\n\n" + "\n".join(tocs)


def results_md(params: dict) -> str:
    "The results page: what was run, every table of results/tables/ and every figure with its caption."
    import mla_cmg.report as report
    caps = report.figure_captions(params)
    order = lambda p: (0 if p.stem.startswith("mla") else 1, p.stem)
    seeds = params.get("seeds", [])
    out = ["# Results", "",
           "Generated by the pipeline's `report` stage (`make repro` = `dvc repro`, then the README) from the stored "
           f"runs under `runs/`; committed in `results/`. All numbers are on the test split, mean ± std over seeds "
           f"{', '.join(map(str, seeds))}. The protocol is `params.yaml`; the README's *Results* section lists which of "
           "the papers' claims reproduce. Nothing on this page was rerun to build the site.", ""]
    out += ["## Figures", ""]
    figs = sorted((ROOT / "results" / "figures").glob("*.png"))
    for f in sorted(figs, key=order):
        cap = caps.get(f.name, f"`{f.name}`, written by the report stage.")
        out += [f"```{{figure}} results/figures/{f.name}", f":name: fig-{f.stem}", f":alt: {f.stem}", "", cap, "```", ""]
    tables = sorted((ROOT / "results" / "tables").glob("*.md"))
    out += ["## Tables", ""]
    for t in sorted(tables, key=order):
        text = t.read_text(encoding="utf-8").strip()
        text = re.sub(r"^###\s+", "### ", text)
        if not text.startswith("###"): text = f"### {t.stem}\n\n" + text
        out += [text, "", f"*Source: `results/tables/{t.name}` (and `{t.stem}.json`).*", ""]
    for ev in sorted(p for p in (ROOT / "results").glob("evidence*") if p.is_dir()):   # every committed evidence profile
        name = profile = ev.name
        if not ((ev / "figures").is_dir() or (ev / "tables").is_dir()): continue
        target = evidence_target(name)
        out += [f"## Evidence: `profiles.{profile}` (`make {target}`)", "",
                f"The same DAG on the wider grids of `profiles.{profile}` in `params.yaml`, copied to `results/{name}/`; "
                "the method chapters (MLA evidence, CMG model) read these.", ""]
        if (ev / "verdicts.md").exists():
            v = (ev / "verdicts.md").read_text(encoding="utf-8").strip()
            out += [f"### {name}: verdicts", "", re.sub(r"^\*\*(.+)\*\*$", r"#### \1", v, flags=re.M), ""]
        for t in sorted((ev / "tables").glob("*.md"), key=order):
            text = t.read_text(encoding="utf-8").strip()
            if not text.startswith("###"): text = f"### {t.stem}\n\n" + text
            out += [text.replace("### ", f"### {name}: ", 1), ""]
        for f in sorted((ev / "figures").glob("*.png"), key=order):
            out += [f"```{{figure}} results/{name}/figures/{f.name}", f":alt: {name} {f.stem}", "",
                    f"Profile {profile}: {caps.get(f.name, f.name)}", "```", ""]
    return "\n".join(out) + "\n"


def api_md() -> str:
    "One section per module, in the order of the chapters that write them (core first): the chapter's link, then autodoc."
    out = ["# API reference", "",
           "The signatures and docstrings of what each module of `mla_cmg` exports (`__all__`), generated from the "
           "package, which `nbdev_export` writes from the chapters. Each section links the chapter that defines it; the "
           "modules come in the chapters' order, so a module only uses those above it.", ""]
    mods = []
    for py in (ROOT / "mla_cmg").rglob("*.py"):
        if py.name.startswith("_"): continue
        m = re.search(r"File to edit: (?:\.\./)+nbs/(\S+?)\.ipynb", py.read_text(encoding="utf-8")[:4000])
        if not m: raise SystemExit(f"docs: {py.relative_to(ROOT)} names no chapter (`File to edit:`): export it with nbdev_export")
        mods.append((m.group(1), ".".join(py.relative_to(ROOT).with_suffix("").parts)))
    for nb, mod in sorted(mods):
        out += [f"## `{mod}`", "", f"Written in the chapter [{_title(ROOT / 'nbs' / (nb + '.ipynb'))}](nbs/{nb}.ipynb).", "",
                "```{eval-rst}", f".. automodule:: {mod}", "```", ""]
    return "\n".join(out) + "\n"


def stage(stage_dir: Path) -> dict:
    "Lay out the site's sources in `stage_dir` (removed first)."
    import yaml
    if stage_dir.exists(): shutil.rmtree(stage_dir)
    (stage_dir / "nbs").mkdir(parents=True)
    chs = chapters()
    info = {p.name: stage_chapter(p, stage_dir / "nbs" / p.name) for p in chs}
    for figs in (ROOT / "results" / "figures", *sorted((ROOT / "results").glob("evidence*/figures"))):  # tables are inlined
        if figs.is_dir(): shutil.copytree(figs, stage_dir / figs.relative_to(ROOT), ignore=shutil.ignore_patterns("*.tmp*", ".*"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (stage_dir / "index.md").write_text(index_md(chs), encoding="utf-8")
    (stage_dir / "results.md").write_text(results_md(params), encoding="utf-8")
    (stage_dir / "api.md").write_text(api_md(), encoding="utf-8")
    (stage_dir / "scale_out.md").write_text((ROOT / "docs" / "scale_out.md").read_text(encoding="utf-8")
                                            .replace("](../README.md)", "](index.md)"), encoding="utf-8")
    from PIL import Image, ImageDraw      # a favicon of our own: browsers would otherwise ask for /favicon.ico (a 404)
    shutil.copytree(ROOT / "docs" / "static", stage_dir / "_static")   # the site's own css and js
    ico = Image.new("RGBA", (32, 32), (0, 0, 0, 0)); ImageDraw.Draw(ico).rounded_rectangle((2, 2, 29, 29), 6, fill=(31, 119, 180))
    ico.save(stage_dir / "_static" / "favicon.png")
    mj, dst = mathjax_dir(), stage_dir / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        s = mj / part
        if s.is_dir(): shutil.copytree(s, dst / part)
        elif s.exists(): (dst / part).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(s, dst / part)
        else: raise SystemExit(f"docs: MathJax part {s} missing: reinstall django-static-mathjax")
    return info


def external_assets(site: Path) -> list[str]:
    "Scripts, stylesheets, images or fonts that a page would load over the network (must be none)."
    bad = []
    pat = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*(?:src|href)=\"((?:https?:)?//[^\"]+)\"", re.I)
    for page in site.rglob("*.html"):
        for m in pat.finditer(page.read_text(encoding="utf-8", errors="replace")):
            tag = m.group(0)
            if tag.lower().startswith("<link") and not re.search(r"rel=\"(stylesheet|preload|icon|modulepreload)\"", tag): continue
            bad.append(f"{page.relative_to(site)}: {m.group(1)}")
    for css in site.rglob("*.css"):
        for m in re.finditer(r"(?:url\(|@import\s+)[\"']?((?:https?:)?//[^\"')]+)", css.read_text(errors="replace")):
            bad.append(f"{css.relative_to(site)}: {m.group(1)}")
    return bad


def build(out: Path, stage_dir: Path, quiet: bool = True) -> dict:
    "Stage the sources and run Sphinx into `out` (written to a temporary folder, then moved into place)."
    t0 = time.time()
    info = stage(stage_dir)
    tmp_out = stage_dir / "html"        # built here (myst-nb writes beside it), then moved into place
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(ROOT / "docs"), "-d", str(stage_dir / ".doctrees"),
           "-E", "--keep-going", *(["-q"] if quiet else []), "-w", str(stage_dir / "warnings.txt"), str(stage_dir), str(tmp_out)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "MLA_CMG_DOCS_STAGE": str(stage_dir)}
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    if r.returncode != 0: raise SystemExit(f"docs: sphinx-build failed (exit {r.returncode}); see {stage_dir / 'warnings.txt'}")
    bad = external_assets(tmp_out)
    if bad: raise SystemExit("docs: pages would load assets from the network:\n  " + "\n  ".join(bad[:20]))
    old = out.with_name(f".old-{out.name}")
    if old.exists(): shutil.rmtree(old)
    if out.exists(): os.replace(out, old)
    shutil.move(str(tmp_out), str(out))
    if old.exists(): shutil.rmtree(old)
    warnings = [w for w in (stage_dir / "warnings.txt").read_text().splitlines() if w.strip()]
    (out / ".build-info.json").write_text(json.dumps({"seconds": round(time.time() - t0, 1), "warnings": warnings,
                                                      "chapters": info}, indent=1))
    return dict(seconds=time.time() - t0, warnings=warnings, info=info)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "_site"))
    ap.add_argument("--stage", default=str(ROOT / "_build" / "docs_src"))
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    r = build(Path(a.out), Path(a.stage), quiet=not a.verbose)
    for w in r["warnings"]: print("warning:", w)
    missing = sorted({f for i in r["info"].values() for f in i["missing_figures"]})
    if missing: print("figures linked by chapters but not generated yet (shown as notes):", ", ".join(missing))
    n = len(list(Path(a.out).rglob("*.html")))
    print(f"docs: {n} pages in {a.out} in {r['seconds']:.1f} s ({len(r['warnings'])} Sphinx warning(s)); "
          f"open {Path(a.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
