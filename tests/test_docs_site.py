"""The documentation site (`make docs`, docs/build.py) in a real browser: headless Chromium through selenium.

Every page of the built site is loaded from a local http.server on 127.0.0.1 and must have a title, no console
errors, every <img> loaded with a non-zero natural size, every internal link (and its #fragment) resolving, and
its equations typeset by MathJax (no raw `$$`, `\\(` or `\\[` left outside code), no markdown table left as
text (a line of pipes outside code), every figure shown at >= 60 % of its pixel width or linked to its full-size
file, and (at 1400 px) at most 2 % of the code blocks scrolling sideways. Full-page screenshots of the index,
an MLA chapter, a CMG chapter and the results page go to tests/artifacts/ (git-ignored).

Skipped, saying why, only where no Chromium/chromedriver or no selenium is installed; `make test` installs Debian's
chromium and chromium-driver when it runs as root (CI), so there it always runs.
"""
from __future__ import annotations
import functools, http.server, json, os, re, shutil, sys, threading, time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_site"
ART = ROOT / "tests" / "artifacts"
SHOTS = {"index": "index.html", "mla_chapter": "nbs/20_mla_hgm.html", "cmg_chapter": "nbs/30_cmg_vq.html",
         "results": "results.html"}
MATH_PAGES = ["index.html", "nbs/20_mla_hgm.html", "nbs/21_mla_fusion.html", "nbs/30_cmg_vq.html", "nbs/32_cmg_club.html"]
PIPE_ROW = re.compile(r"^\s*\|.*\|.*\|\s*$|^\s*\|?\s*:?-{3,}:?\s*\|")   # `| a | b |` or `|---|---|` left as text
RESULT_FIGURES = sorted(p.name for p in (ROOT / "results" / "figures").glob("*.png"))

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
DRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None
if not (CHROMIUM and DRIVER and selenium):
    pytest.skip("browser test skipped: no " + ", ".join(n for n, ok in (("chromium", CHROMIUM), ("chromedriver", DRIVER),
                ("selenium", selenium)) if not ok) + " installed (`make test` installs Debian's chromium and "
                "chromium-driver when run as root; selenium comes with `make setup`)", allow_module_level=True)


def _sources() -> list[Path]:
    pats = ["nbs/[0-9][0-9]*_*.ipynb", "README.md", "params.yaml", "results/**/*", "docs/*.py", "docs/*.md", "docs/static/*", "mla_cmg/**/*.py"]
    return [p for pat in pats for p in ROOT.glob(pat) if p.is_file()]


@pytest.fixture(scope="module")
def site() -> Path:
    "The built site: `make docs`'s _site/ when it is newer than every source, else built now."
    info = SITE / ".build-info.json"
    if not info.exists() or info.stat().st_mtime < max(p.stat().st_mtime for p in _sources()):
        sys.path.insert(0, str(ROOT / "docs"))
        import build
        build.build(SITE, ROOT / "_build" / "docs_src")
    assert (SITE / "index.html").exists()
    return SITE


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
              "--no-first-run", "--disable-extensions", "--disable-background-networking", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    d.set_page_load_timeout(60); d.set_script_timeout(60)
    yield d
    d.quit()


_PAGE_STATE = """
const done = arguments[arguments.length - 1];
(async () => {
  for (const img of document.images) img.loading = 'eager';
  await Promise.all(Array.from(document.images).map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea').forEach(e => e.remove());
  done({
    title: document.title,
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, w: i.naturalWidth, h: i.naturalHeight,
                                                   ok: i.complete, shown: i.clientWidth,
                                                   linked: !!(i.closest('a') && i.closest('a').href === (i.currentSrc || i.src))})),
    code_blocks: document.querySelectorAll('div.highlight pre').length,
    code_scrolls: Array.from(document.querySelectorAll('div.highlight pre, div.cell_output pre'))
                       .filter(p => p.scrollWidth > p.clientWidth + 2).map(p => p.innerText.split(String.fromCharCode(10))[0].slice(0, 80)),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    math_nodes: document.querySelectorAll('.math, .math-display').length,
    mjx: document.querySelectorAll('mjx-container').length,
    mjx_errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    text: body.innerText,
  });
})();
"""


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(site).parts))


def _ids(path: Path, cache={}) -> set:
    if path not in cache: cache[path] = set(re.findall(r"\bid=\"([^\"]+)\"", path.read_text(encoding="utf-8", errors="replace")))
    return cache[path]


def _resolve(site: Path, base: str, href: str) -> str | None:
    "None when an internal link resolves (file and fragment), else why not; external links are not followed."
    u = urlparse(href)
    if not href.startswith(base) or u.scheme not in ("http", "https"): return None
    path = site / unquote(u.path).lstrip("/")
    if path.is_dir(): path = path / "index.html"
    if not path.exists(): return f"{href}: no such file"
    if u.fragment and path.suffix == ".html" and unquote(u.fragment) not in _ids(path):
        return f"{href}: no element with id {u.fragment!r}"
    return None


def test_every_page_in_chromium(site, server, driver):
    t0 = time.time()
    pages = _pages(site)
    assert len(pages) >= 25, pages                 # index, 20+ chapters, results, api, search, genindex, ...
    for want in ["index.html", "results.html", "api.html", *SHOTS.values()]: assert want in pages
    chapters = [f"nbs/{nb.stem}.html" for nb in (ROOT / "nbs").glob("*.ipynb") if nb.stem != "index"]
    assert chapters and not [c for c in chapters if c not in pages], [c for c in chapters if c not in pages]
    ART.mkdir(parents=True, exist_ok=True)
    problems, seen_imgs, report, scrolling, code_total, code_scroll = [], {}, {}, {}, 0, 0
    for page in pages:
        driver.get_log("browser")                   # drop what earlier pages left; keep this load's entries
        driver.get(server + page)
        st = driver.execute_async_script(_PAGE_STATE)
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if not st["title"].strip(): problems.append(f"{page}: no <title>")
        problems += [f"{page}: console error: {e['message'][:300]}" for e in logs]
        for im in st["images"]:
            if not (im["ok"] and im["w"] > 0 and im["h"] > 0): problems.append(f"{page}: image not loaded: {im['src']}")
            seen_imgs.setdefault(page, []).append(im["src"].rsplit("/", 1)[-1])
            if im["ok"] and "/_static/" not in im["src"] and im["shown"] < 0.6 * im["w"] and not im["linked"]:
                problems.append(f"{page}: figure {im['src'].rsplit('/', 1)[-1]} shown at {im['shown']} of {im['w']} px "
                                "and not linked to its full-size file")
        problems += [f"{page}: broken link {why}" for h in sorted(set(st["links"])) if (why := _resolve(site, server, h))]
        if st["math_nodes"] and st["mjx"] == 0: problems.append(f"{page}: {st['math_nodes']} math element(s), none typeset by MathJax")
        if st["mjx_errors"]: problems.append(f"{page}: {st['mjx_errors']} MathJax error(s)")
        rows = [l for l in st["text"].splitlines() if PIPE_ROW.match(l)]
        if rows: problems.append(f"{page}: {len(rows)} line(s) of a markdown table shown as text, e.g. {rows[0][:120]!r}")
        for raw in ("$$", "\\(", "\\["):
            if raw in st["text"]:
                i = st["text"].index(raw)
                problems.append(f"{page}: raw {raw!r} left in the text: …{st['text'][max(0, i - 60):i + 60]!r}…")
        code_total += st["code_blocks"]; code_scroll += len(st["code_scrolls"])
        if st["code_scrolls"]: scrolling[page] = st["code_scrolls"]
        report[page] = dict(title=st["title"], images=len(st["images"]), links=len(set(st["links"])), mjx=st["mjx"])
    (ART / "pages.json").write_text(json.dumps(report, indent=1))
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])
    # code that fits the page at 1400 px: at most 2 % of the code blocks (and outputs) scroll sideways
    assert code_total > 100 and code_scroll <= 0.02 * code_total, (code_scroll, code_total, scrolling)
    for page in MATH_PAGES: assert report[page]["mjx"] > 0, f"{page}: no rendered equation"
    # the results page shows every figure of the pipeline, the index the README's figures
    assert sorted(set(seen_imgs.get("results.html", [])) & set(RESULT_FIGURES)) == RESULT_FIGURES
    readme_figs = re.findall(r"!\[[^\]]*\]\(results/figures/([^)]+)\)", (ROOT / "README.md").read_text())
    assert readme_figs and set(readme_figs) <= set(seen_imgs.get("index.html", [])), (readme_figs, seen_imgs.get("index.html"))
    print(f"\nbrowser test: {len(pages)} pages in {time.time() - t0:.0f} s")


def test_screenshots(site, server, driver):
    "Full-page screenshots (for a person to look at); each must be a tall, non-blank PNG."
    from PIL import Image, ImageStat
    ART.mkdir(parents=True, exist_ok=True)
    for name, page in SHOTS.items():
        driver.set_window_size(1400, 900)
        driver.get(server + page)
        driver.execute_async_script(_PAGE_STATE)
        h = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 16000)
        driver.set_window_size(1400, h)
        time.sleep(0.5)
        out = ART / f"{name}.png"
        assert driver.save_screenshot(str(out)), out
        with Image.open(out) as im:
            assert im.height >= min(h, 2000) * 0.9, (out, im.size)
            assert max(ImageStat.Stat(im.convert("L")).stddev) > 10, f"{out} looks blank"
    driver.set_window_size(1400, 900)
