# Sphinx configuration of the documentation site (`make docs`; docs/build.py stages the sources and runs Sphinx).
# The stack: Sphinx + myst-nb (renders the notebooks with their committed outputs, never executes them) +
# sphinx-book-theme; math by MathJax 3 served from the site itself (copied out of the django-static-mathjax wheel
# by docs/build.py); nothing is loaded from a CDN.
import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "mla_cmg"
author = "mla_cmg developers"
copyright = "2026 onwards, mla_cmg developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax"]

# Notebooks: committed outputs only; a chapter is never run while the site is built.
nb_execution_mode = "off"
nb_merge_streams = True
# Markdown printed by a cell (text/markdown outputs: the evidence tables) is parsed as MyST, which has pipe tables;
# myst-nb's default, CommonMark, has none and would show a table as one paragraph of pipes.
nb_render_markdown_format = "myst"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "myst.xref_missing"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# API pages: the signatures and docstrings of what each module exports (`__all__`).
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False

# MathJax 3 from _static/mathjax (docs/build.py copies it there); Sphinx then never points at a CDN.
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]}}

html_theme = "sphinx_book_theme"
html_title = "mla_cmg"
# docs/build.py stages the sources (and MathJax under _static/) and names the folder here.
_STAGE = Path(os.environ.get("MLA_CMG_DOCS_STAGE", ROOT / "_build" / "docs_src"))
html_static_path = [str(_STAGE / "_static")]
html_favicon = str(_STAGE / "_static" / "favicon.png")
html_css_files = ["mla_cmg.css"]     # docs/static/: code that wraps, figures linked to their full-size files
html_js_files = ["mla_cmg.js"]
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
# An explicit colour mode: with none, the theme logs a console error ("invalid theme mode") on a first visit.
html_context = {"default_mode": "light"}
