"""Drop the entries of dvc.lock whose stage dvc.yaml no longer defines (`make repro` runs it after `dvc repro`).

DVC keeps a lock entry for every stage it ever ran, also after a benchmark or variant leaves the pipeline lists of
params.yaml; those entries name outputs that no stage writes any more. The stages are the ones `dvc stage list`
expands from dvc.yaml (matrix stages included). The lock is rewritten atomically, entries in their order.

    python scripts/prune_lock.py [--check]     # --check: only list them, exit 1 when there are any
"""
import argparse, os, subprocess, sys, tempfile
from pathlib import Path

from ruamel.yaml import YAML      # DVC's own YAML library: round-trip, YAML 1.2 (`hgm: off` stays the string 'off')

ROOT = Path(__file__).resolve().parents[1]


def stale(root: Path = ROOT) -> tuple[dict, list]:
    "(the lock, names of its stages that dvc.yaml does not define)."
    dvc = Path(sys.executable).parent / "dvc"
    r = subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=root, capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"prune_lock: `dvc stage list` failed in {root}:\n{r.stderr[-2000:]}")
    defined = set(r.stdout.split())
    lock = YAML().load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {"stages": {}}
    return lock, [s for s in lock.get("stages", {}) if s not in defined]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    lock, old = stale()
    if a.check:
        print("\n".join(old) if old else "dvc.lock: every entry is a stage of dvc.yaml")
        return 1 if old else 0
    for s in old: del lock["stages"][s]
    if old:
        fd, tmp = tempfile.mkstemp(dir=ROOT, prefix=".dvc.lock.")
        with os.fdopen(fd, "w") as f: YAML().dump(lock, f)
        os.replace(tmp, ROOT / "dvc.lock")
    print(f"dvc.lock: removed {len(old)} entr{'y' if len(old) == 1 else 'ies'} of stages dvc.yaml no longer defines"
          + (f" ({', '.join(old[:5])}{', ...' if len(old) > 5 else ''})" if old else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
