"""Every pipeline stage declares the code it runs: each library module that the stage's command and notebook import,
directly or through other modules (also imports inside functions), is covered by one of the stage's `deps` in
dvc.yaml, so that `dvc repro` reruns a stage whenever code it uses changes (found by reading the sources, not by
running them). The runner imports an experiment's wing by name (`launch.wing`, `mla_cmg.<experiment>.run`): a
`python -m mla_cmg.runner <experiment> ...` stage counts that module among its roots."""
import ast, json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = "mla_cmg"


def _module_file(name: str) -> Path | None:
    p = ROOT / Path(*name.split("."))
    return p / "__init__.py" if (p / "__init__.py").exists() else p.with_suffix(".py") if p.with_suffix(".py").exists() else None


def _imports(tree: ast.AST, package: str) -> set[str]:
    "Names of the library modules an AST imports (absolute and relative; `from pkg import mod` counts mod)."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PKG}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != PKG: continue
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return out


def _closure(roots: set[str]) -> set[Path]:
    seen, todo = set(), set(roots)
    while todo:
        name = todo.pop()
        f = _module_file(name)
        if f is None or name in seen: continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts)): todo.add(".".join(parts[:i]))          # parent packages are imported first
        package = name if f.name == "__init__.py" else ".".join(parts[:-1])
        todo |= _imports(ast.parse(f.read_text()), package)
    return {_module_file(n).relative_to(ROOT) for n in seen}


def _inert(f: Path) -> bool:
    "A package __init__ that only holds a docstring and constants: changing it cannot change a result."
    body = ast.parse((ROOT / f).read_text()).body
    return f.name == "__init__.py" and all(isinstance(s, (ast.Expr, ast.Assign)) and not _imports(s, PKG) for s in body)


def _notebook_imports(nb: Path) -> set[str]:
    src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
    return _imports(ast.parse(src), PKG)


# Stages whose outputs no code change can alter, and why (the only exceptions).
CODE_INDEPENDENT = {"fetch": "its outputs are the pinned wheels, each checked against its sha256 in params.yaml"}


def _stages():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        cmd = st["cmd"] if isinstance(st["cmd"], str) else " ".join(st["cmd"])
        if f"-m {PKG}." in cmd and name not in CODE_INDEPENDENT: yield name, st, cmd


@pytest.mark.parametrize("name", [n for n, _, _ in _stages()])
def test_stage_declares_the_code_it_runs(name):
    st, cmd = next((s, c) for n, s, c in _stages() if n == name)
    roots = {cmd.split("-m ", 1)[1].split()[0]}
    words = cmd.split("-m ", 1)[1].split()
    if words[0] == f"{PKG}.runner" and len(words) > 1 and not words[1].startswith("-"):
        roots.add(f"{PKG}.{words[1]}.run")          # the wing the runner loads by name (`launch.wing`)
    deps = [d for d in st.get("deps", []) if "${" not in d]
    for d in deps:
        if d.endswith(".ipynb"): roots |= _notebook_imports(ROOT / d)
    if "--notebook" in cmd:
        roots |= _notebook_imports(ROOT / cmd.split("--notebook", 1)[1].split()[0])
    used = {f for f in _closure(roots) if not _inert(f)}
    covered = lambda f: any(f == Path(d) or Path(d) in f.parents for d in deps)
    missing = sorted(str(f) for f in used if not covered(f))
    assert not missing, f"dvc.yaml stage {name!r} runs {missing} but does not list them (or a folder above) in its deps"


def test_the_check_finds_a_missing_dependency():
    "The closure sees imports made inside functions and through relative imports (the engine's `from . import dist`)."
    used = _closure({f"{PKG}.runner", f"{PKG}.engine"})
    assert Path(PKG, "dist.py") in used and Path(PKG, "core.py") in used


def test_lock_names_only_stages_of_dvc_yaml():
    "dvc.lock has no entry for a stage dvc.yaml no longer defines (`make repro` prunes them: scripts/prune_lock.py)."
    import subprocess, sys
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "prune_lock.py"), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"dvc.lock names stages dvc.yaml lacks (run `python scripts/prune_lock.py`):\n{r.stdout}{r.stderr}"


def test_metrics_show_is_a_readable_table():
    "`dvc metrics show` on the committed files: no load failure, one row per pipeline stage, lines a terminal can show."
    import subprocess, sys
    dvc = Path(sys.executable).parent / "dvc"
    r = subprocess.run([str(dvc), "metrics", "show"], cwd=ROOT, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "failed to load" not in out, out[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    n_stages = sum(1 for s in yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"] if "@" in s)
    assert len(lines) == 1 + n_stages, (len(lines), n_stages)                 # header + one row per training stage
    assert max(map(len, lines)) <= 200, max(map(len, lines))


def test_readme_stage_count_is_dvc_yamls():
    "The README's 'executes N stages' is the number of stages `dvc stage list` expands from dvc.yaml."
    import re, subprocess, sys
    dvc = Path(sys.executable).parent / "dvc"
    n = len(subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    said = re.findall(r"executes (\d+) stages", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert said == [str(n)], f"README.md says {said} stages, dvc.yaml defines {n}: edit nbs/index.ipynb"
