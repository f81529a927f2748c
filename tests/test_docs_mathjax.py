"""The documentation site ships what MathJax's accessibility extension reads (issue 21): a11y/sre.js looks for its
speech rules under [mathjax]/sre/mathmaps (the loader's `sre` path) and falls back to a CDN when they are absent."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_site_ships_the_speech_rules(tmp_path):
    sys.path.insert(0, str(ROOT / "docs"))
    import build
    build.stage(tmp_path / "stage")
    mj = tmp_path / "stage" / "_static" / "mathjax"
    sre = (mj / "a11y" / "sre.js").read_text(encoding="utf-8")
    assert 'resolvePath("[sre]"' in sre                       # the extension reads the loader's sre path ...
    loader = (mj / "tex-chtml.js").read_text(encoding="utf-8")
    assert re.search(r'sre:"\[mathjax\]/sre/mathmaps"', loader)   # ... which is [mathjax]/sre/mathmaps
    for f in ("base.json", "en.json"):                       # and the site has the rules there (the default locale)
        assert json.loads((mj / "sre" / "mathmaps" / f).read_text(encoding="utf-8")), f
