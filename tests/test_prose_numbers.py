"""Every number in the results prose is one of the report's numbers.

The rule. The *prose* is the README's results and evidence sections (from its `## Results` and `## What the evidence
says` headings to the next `## ` heading) and
the markdown files directly under `results/` (`summary.md`, `findings.md`, `drift.md`), with these parts removed:
fenced code blocks, inline code spans, table lines (lines starting with `|`), image lines, HTML comments, link
targets, and every *label* of the results JSONs (their dict keys and string values, e.g. the row name
"fixed 0.55 / 0.45 (released default)" or "10% missing": names, not numbers). The *report's numbers* are every
numeric leaf of `results/tables/*.json` and `results/evidence*/tables/*.json`: the table cells (mean, std, per-seed
values), the reference rows (chance, raw-feature probes), the test split's interval and the test records under
`_tests` (difference, CI bounds, t, df, p, Holm p, detectable difference, α, the p floor 0.001).

1. A pair `x ± y` must be one table cell: |x − mean·s| and |y − std·s| both at most half a unit of the last printed
   decimal, s the cell's `scale` (100 for accuracies, 1 for perplexities; both are tried for cells without one).
2. Every other number written with decimals must be a report number at its printed precision: |x − v·s| at most
   half a unit of its last decimal, for some numeric leaf v and s in {1, 100}, sign included (a hyphen, + or the
   minus sign).
3. Integers are not checked: they are counts (seeds, samples, comparisons, "k of n seeds collapsed"), seed ids,
   percent levels and missing rates, which the report prints from params.yaml.

A hand-typed number that is not one of the report's (a stale "59.0 ± 1.2" when the table says 59.1 ± 1.1) fails:
`test_a_planted_stale_number_fails` plants one.
"""
import json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUM = r"[+\-−]?\d+\.\d+"
PAIR = re.compile(rf"({NUM}|[+\-−]?\d+)\s*±\s*(\d+(?:\.\d+)?)")
DEC = re.compile(rf"(?<![\w.]){NUM}(?![\w.])")


def _num(s: str) -> tuple[float, int]:
    "Value and number of decimals of a printed number."
    s = s.replace("−", "-")
    return float(s), (len(s.split(".")[1]) if "." in s else 0)


def _close(x: float, d: int, v: float) -> bool:
    return abs(x - v) <= 0.5 * 10 ** -d + 1e-9


def report_numbers(files) -> tuple[list, list, set]:
    "(cells [(mean, std, scales)], numeric leaves, labels) of the table JSONs `files`."
    cells, leaves, labels = [], [], set()
    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("mean"), (int, float)) and isinstance(x.get("std"), (int, float)):
                cells.append((x["mean"], x["std"], [x["scale"]] if isinstance(x.get("scale"), (int, float)) else [100.0, 1.0]))
            for k, v in x.items():
                labels.add(str(k)); walk(v)
        elif isinstance(x, list):
            for v in x: walk(v)
        elif isinstance(x, bool): pass
        elif isinstance(x, (int, float)): leaves.append(float(x))
        elif isinstance(x, str): labels.add(x)
    for f in files: walk(json.loads(Path(f).read_text()))
    return cells, leaves, labels


def prose(text: str, labels: set) -> str:
    "The prose of a markdown text: code, tables, images, comments, link targets and JSON labels removed."
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith(("|", "![")))
    text = re.sub(r"\]\([^)]*\)", "]", text)
    for lab in sorted((l for l in labels if re.search(r"\d", l) and re.search(r"[A-Za-z]", l)), key=len, reverse=True):
        text = text.replace(lab, " ")
    return text


def unmatched(text: str, cells, leaves) -> list[str]:
    "The numbers of `text` (prose) that break the rule, with their context."
    bad = []
    for m in PAIR.finditer(text):
        (x, dx), (y, dy) = _num(m.group(1)), _num(m.group(2))
        if not any(_close(x, dx, mu * s) and _close(y, dy, sd * s) for mu, sd, ss in cells for s in ss):
            bad.append(f"{m.group(0)!r} in …{text[max(0, m.start() - 60):m.end() + 20]!r}")
    rest = PAIR.sub(" ", text)
    for m in DEC.finditer(rest):
        x, d = _num(m.group(0))
        if not any(_close(x, d, v * s) for v in leaves for s in (1.0, 100.0)):
            bad.append(f"{m.group(0)!r} in …{rest[max(0, m.start() - 60):m.end() + 20]!r}")
    return bad


def results_section(readme: str, heading: str = "Results") -> str:
    m = re.search(rf"^## {heading}\s*$(.*?)(?=^## )", readme, flags=re.M | re.S)
    return m.group(1) if m else ""


def committed_sources() -> dict:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    out = {"README.md (results section)": results_section(readme),
           "README.md (evidence section)": results_section(readme, "What the evidence says")}
    out.update({f"results/{f.name}": f.read_text(encoding="utf-8") for f in sorted((ROOT / "results").glob("*.md"))})
    return out


def test_committed_prose_numbers_are_the_reports():
    files = sorted((ROOT / "results" / "tables").glob("*.json")) + sorted((ROOT / "results").glob("evidence*/tables/*.json"))
    assert files, "no results table JSON: run `make repro`"
    cells, leaves, labels = report_numbers(files)
    src = committed_sources()
    assert src["README.md (evidence section)"].strip(), "README.md has no '## What the evidence says' section"
    assert src["README.md (results section)"].strip(), "README.md has no '## Results' section"
    bad = {name: b for name, text in src.items() if (b := unmatched(prose(text, labels), cells, leaves))}
    assert not bad, ("numbers in the results prose that no results table JSON holds (stale or hand-typed; rerun the report "
                     "or take them out):\n" + "\n".join(f"{n}: {x}" for n, b in bad.items() for x in b[:20]))


@pytest.fixture()
def tables(tmp_path):
    js = {"MLA (HGM + DF)": {"visual (head)": {"mean": 0.5911, "std": 0.0112, "n": 3, "values": [0.58, 0.59, 0.6033],
                                              "seeds": [0, 1, 2], "scale": 100.0, "digits": 1},
                             "ppl audio": {"mean": 24.81, "std": 3.46, "n": 3, "scale": 1.0, "digits": 1}},
          "fixed 0.55 / 0.45 (released default)": {"x": None},
          "_tests": [{"diff": 0.0187, "lo": 0.008, "hi": 0.0294, "t": 4.9, "df": 3.97, "p": 0.0081, "p_holm": 0.133, "mdd": 0.031,
                      "alpha": 0.05, "p_floor": 0.001}]}
    f = tmp_path / "t.json"; f.write_text(json.dumps(js))
    return report_numbers([f])


def test_report_numbers_pass(tables):
    cells, leaves, labels = tables
    text = ("MLA's visual head reaches 59.1 ± 1.1 % and its audio codes a perplexity of 24.8 ± 3.5; the row "
            "fixed 0.55 / 0.45 (released default) is a name. Δ = +1.9 points, 95 % CI [+0.8, +2.9], t(4.0) = 4.90, "
            "p = 0.008, Holm p = 0.133, detects ≥ 3.1 points, p < 0.001, α = 0.05; 2 of 3 seeds; seeds 0-2; 10% missing.")
    assert unmatched(prose(text, labels), cells, leaves) == []


def test_a_planted_stale_number_fails(tables):
    cells, leaves, labels = tables
    for stale in ("MLA's visual head reaches 59.0 ± 1.2 %.",          # the audit's stale prose: the table says 59.1 ± 1.1
                  "the perplexity is 2481.0 ± 346.0",                   # a perplexity printed × 100 (the old drift.md bug)
                  "Δ = +2.4 points, p = 0.011."):                       # statistics that no test record holds
        assert unmatched(prose(stale, labels), cells, leaves), stale
    # code, tables and comments are not prose
    assert unmatched(prose("`59.0 ± 1.2`\n| 59.0 ± 1.2 |\n<!-- 59.0 -->\n```\n3.14\n```", labels), cells, leaves) == []
