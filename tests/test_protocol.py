"""params.yaml follows its own selection rule (chapter 40b, `mla_cmg.sweeps.decide`).

Every committed evidence sweep (`results/evidence*/tables/sweep_*.json`) must
1. carry the rule's decision for each base (a sweep reported before the rule existed is stale: report it again with
   `scripts/run_profile.py PROFILE --results DEST --report-from RUNS`, or rerun the profile);
2. say that the protocol stands (a `switch` means params.yaml must take the pick's values; a `widen` means the sweep
   must first reach past the edge of its grid);
3. have been run at the protocol params.yaml holds now: the protocol point's value of every swept knob equals the
   value the runner resolves for the base variant today (a changed protocol makes the committed sweep stale).
"""
import json
from pathlib import Path

import pytest
import yaml

from mla_cmg.runner import apply_profile
from mla_cmg.sweeps import effective_variants

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"evidence": "evidence", "evidence_cmg": "evidence_cmg", "evidence_baselines": "evidence_baselines",
            "evidence_cmg_beyond": "evidence_cmg_beyond"}     # results/<folder> -> the profile that wrote it
SWEEPS = sorted(f for d in PROFILES for f in (ROOT / "results" / d / "tables").glob("sweep_*.json"))


def _params(folder: str) -> dict:
    return apply_profile(yaml.safe_load((ROOT / "params.yaml").read_text()), PROFILES[folder])


def test_there_are_sweeps_to_check():
    assert SWEEPS, "no committed evidence sweep under results/evidence*/tables: run `make evidence`"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_the_protocol_is_what_the_rule_picks(path):
    folder, (wing, bench) = path.parent.parent.name, path.stem.split("_", 2)[1:]
    table = json.loads(path.read_text())
    eff = effective_variants(_params(folder), wing, bench)
    for base, g in table.items():
        if base.startswith("_"): continue
        where = f"{path.relative_to(ROOT)}, base `{base}`"
        assert "decision" in g, f"{where}: no selection-rule decision; report the sweep again (see this module's docstring)"
        pick = next(r for r in g["rows"] if r["point"] == g["pick"])
        assert g["decision"] in ("stands", "unswept"), (
            f"{where}: the selection rule says {g['decision']!r} (pick {g['pick']} with {pick['knobs']}, Holm p = "
            f"{g.get('p_holm')}); {'set these values in params.yaml' if g['decision'] == 'switch' else 'widen the grid'} "
            f"and rerun the pipeline and the evidence")
        if g["protocol"] is None: continue
        prot = next(r for r in g["rows"] if r["point"] == g["protocol"])
        for knob, ran in prot["config"].items():
            now = eff.get(base, {}).get(knob)
            if now is None: continue                      # a knob the entry leaves at its dataclass default
            assert now == ran, (f"{where}: the sweep's protocol ran {knob}={ran!r}, params.yaml now resolves {knob}={now!r} "
                                f"for `{base}` on {bench}: the committed sweep is stale; rerun `make evidence`")
