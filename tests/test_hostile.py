"""Issue 21, "nothing silent, nothing orphaned, nothing overwritten": the runner tried as a hostile but fair user would.

One table of cases. Each row is a command line of the runner (pipeline mode `EXPERIMENT BENCHMARK VARIANT`, or
`--notebook`), optionally with a patch of params.yaml, and what must come of it: a clear error (exit code and the
words that name the value, where it came from and what is allowed) before anything is written, or a run that
works. Fast rows run in `make test`; rows that start kernels or torchrun are marked `slow` (`make test-slow`, which
CI runs too). The kill tests (pipeline mode with 3 seeds, world_size 2) are in tests/test_runner_kill.py.
"""
import io, json, os, subprocess, sys, time, zipfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLOW = pytest.mark.slow
MLA = ["mla", "synthetic", "joint"]
CMG = ["cmg", "synthetic", "full"]
# small and quick: MLA on 300 generated samples; CMG on a small prepared pairing (written by the fixture)
MLA_SMALL = ["synthetic={n: 300}", "epochs=2", "probe=false"]
CMG_SMALL = ["epochs=2", "dim=16", "spec_dim=16", "n_codes=16", "enc_ff=32", "club_hidden=16", "club_start=4",
             "club_warmup=4", "head_epochs=3"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    "params.yaml of the repository with one seed and one job, and a small prepared CMG pairing."
    d = tmp_path_factory.mktemp("hostile")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p.update(seeds=[0], jobs=1)
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    from mla_cmg.data.format import save_dataset
    from mla_cmg.data.synthetic import make_synthetic
    save_dataset(d / "prepared" / "synthetic.npz", make_synthetic(n=300, T=6, dims=(8, 8), n_classes=4, snr=(3.0, 3.0), seed=0))
    return d


def _params(base, tmp, patch):
    p = yaml.safe_load((base / "params.yaml").read_text())
    for k, v in (patch or {}).items():          # "a.b.c": value, or "-a.b" to delete
        keys, node = k.lstrip("-").split("."), p
        for key in keys[:-1]: node = node.setdefault(key, {})
        if k.startswith("-"): node.pop(keys[-1], None)
        else: node[keys[-1]] = v
    (tmp / "params.yaml").write_text(yaml.safe_dump(p))
    return tmp / "params.yaml"


def _files(root: Path) -> dict:
    "Every file under root (but the runner's locks) with its bytes and mtime."
    return {str(f.relative_to(root)): (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(root.rglob("*"))
            if f.is_file() and ".locks" not in f.parts}


def cli_inprocess(argv):
    "The runner's command line in this process (no kernel starts when it must refuse): (exit code, stderr)."
    from mla_cmg import runner
    err = io.StringIO()
    with redirect_stderr(err): rc = runner.cli([str(a) for a in argv])
    return rc, err.getvalue()


def cli_subprocess(argv, timeout=600):
    r = subprocess.run([sys.executable, "-m", "mla_cmg.runner", *map(str, argv)], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stderr


def _sets(items): return [a for kv in items for a in ("--set", kv)]


# id: (argv (pipeline mode: experiment, benchmark, variant, --set ...), params.yaml patch, exit code, words in the message)
# every refused row must also leave --root without any file
REFUSED = {
    # item 3: bad numbers, via --set and via params.yaml, on both wings
    "grad_clip=-1 (--set, MLA)": (MLA + _sets(["grad_clip=-1"]), None, 2, ["grad_clip", "> 0", "-1"]),
    "grad_clip=-1 (params, MLA)": (MLA, {"mla.common.grad_clip": -1}, 2, ["grad_clip", "> 0", "-1"]),
    "grad_clip=-1 (--set, CMG)": (CMG + _sets(["grad_clip=-1"]), None, 2, ["grad_clip", "> 0"]),
    "grad_clip=0 (--set, MLA)": (MLA + _sets(["grad_clip=0"]), None, 2, ["grad_clip", "or None"]),
    "lr_gamma=-5 (--set, MLA)": (MLA + _sets(["lr_gamma=-5"]), None, 2, ["lr_gamma", "> 0", "-5"]),
    "lr_gamma=-5 (params, CMG)": (CMG, {"cmg.common.lr_gamma": -5}, 2, ["lr_gamma", "> 0", "-5"]),
    "lr_gamma=0 (--set, CMG)": (CMG + _sets(["lr_gamma=0"]), None, 2, ["lr_gamma", "> 0"]),
    "lr=-1 (--set, CMG)": (CMG + _sets(["lr=-1"]), None, 2, ["lr", "> 0"]),
    "lr=nan (--set, MLA)": (MLA + _sets(["lr=.nan"]), None, 2, ["lr", "finite"]),
    "lr=inf (params, MLA)": (MLA, {"mla.common.lr": float("inf")}, 2, ["lr", "finite"]),
    "momentum=-0.5 (--set, MLA)": (MLA + _sets(["momentum=-0.5"]), None, 2, ["momentum", ">= 0"]),
    "weight_decay=-1 (--set, CMG)": (CMG + _sets(["weight_decay=-1"]), None, 2, ["weight_decay", ">= 0"]),
    "epochs=0 (--set, MLA)": (MLA + _sets(["epochs=0"]), None, 2, ["epochs", ">= 1"]),
    "lr='fast' (--set, MLA)": (MLA + _sets(["lr=fast"]), None, 2, ["'lr'", "--set", "float", "fast"]),
    # item 4: the runner's own keys
    "world_size: 0": (MLA, {"world_size": 0}, 2, ["world_size", "integer >= 1", "got 0"]),
    "world_size: -1": (MLA, {"world_size": -1}, 2, ["world_size", "integer >= 1", "got -1"]),
    "world_size: '2' (a string)": (MLA, {"world_size": "2"}, 2, ["world_size", "integer >= 1", "'2'"]),
    "world_size: true": (MLA, {"world_size": True}, 2, ["world_size", "integer >= 1"]),
    "world_sise: 2 (typo)": (MLA, {"world_sise": 2}, 2, ["'world_sise'", "did you mean 'world_size'"]),
    "jobs: 0": (MLA, {"jobs": 0}, 2, ["jobs", "integer >= 1"]),
    "jbos: 2 (typo)": (MLA, {"jbos": 2}, 2, ["'jbos'", "did you mean 'jobs'"]),
    "seed: [3, 4] (typo of seeds)": (MLA, {"seed": [3, 4]}, 2, ["'seed'", "did you mean 'seeds'"]),
    "--set seed=7": (MLA + _sets(["seed=7"]), None, 2, ["--set", "'seed' is set by the runner", "seeds=[7]"]),
    "seed in mla.common": (MLA, {"mla.common.seed": 7}, 2, ["[mla.common]", "'seed' is set by the runner"]),
    "seed in a CMG variant": (CMG, {"cmg.variants.full.seed": 7}, 2, ["[cmg.variants.full]", "'seed' is set by the runner"]),
    "--set out_dir=x": (MLA + _sets(["out_dir=x"]), None, 2, ["'out_dir' is set by the runner", "--root"]),
    "seeds: [0, 0]": (MLA, {"seeds": [0, 0]}, 2, ["[seeds]", "appear twice"]),
    "seeds: []": (MLA, {"seeds": []}, 2, ["[seeds]", "non-empty list"]),
    "seeds: '0,1'": (MLA, {"seeds": "0,1"}, 2, ["[seeds]", "non-empty list", "'0,1'"]),
    "seeds: [-1]": (MLA, {"seeds": [-1]}, 2, ["[seeds]", "non-negative"]),
    "variant seeds: [1, 1]": (MLA, {"mla.variants.joint.seeds": [1, 1]}, 2, ["[mla.variants.joint]", "appear twice"]),
    "--set seeds=[0,0]": (MLA + _sets(["seeds=[0,0]"]), None, 2, ["--set seeds", "appear twice"]),
    "--set seeds=[]": (MLA + _sets(["seeds=[]"]), None, 2, ["--set seeds", "non-empty"]),
    "--set world_size=0": (MLA + _sets(["world_size=0"]), None, 2, ["--set world_size", "integer >= 1"]),
    "--set jobs=-2": (MLA + _sets(["jobs=-2"]), None, 2, ["--set jobs", "integer >= 1"]),
    "unknown variant (MLA)": (["mla", "synthetic", "mlaa"], None, 2, ["'mlaa' not found", "did you mean 'mla'"]),
    "unknown variant (CMG)": (["cmg", "synthetic", "ful"], None, 2, ["'ful' not found", "did you mean 'full'"]),
    "unknown experiment": (["mal", "synthetic", "mla"], None, 2, ["'mal' not found", "did you mean 'mla'"]),
    "unknown profile": (MLA + ["--profile", "smoek"], None, 2, ["profile 'smoek' not found", "smoke"]),
    "--set typo epoch=3 (MLA)": (MLA + _sets(["epoch=3"]), None, 2, ["'epoch'", "--set", "did you mean 'epochs'"]),
    "--set typo n_code=3 (CMG)": (CMG + _sets(["n_code=3"]), None, 2, ["'n_code'", "did you mean 'n_codes'"]),
    "params typo in mla.common": (MLA, {"mla.common.epoch": 3}, 2, ["'epoch'", "[mla.common]", "did you mean 'epochs'"]),
    "params typo in a CMG variant": (CMG, {"cmg.variants.full.n_code": 3}, 2, ["'n_code'", "[cmg.variants.full]"]),
    "retired switch club: false in a CMG variant": (CMG, {"cmg.variants.full.club": False}, 2,
                                                    ["'club'", "[cmg.variants.full]", "`decoupler: none` for `club: false`"]),
    "--set typo under world_size 2": (MLA + _sets(["epoch=3", "world_size=2"]), None, 2, ["did you mean 'epochs'"]),
    "--set without =": (MLA + ["--set", "epochs"], None, 2, ["--set expects KEY=VALUE"]),
    "--set bad YAML": (MLA + _sets(["epochs=[1,"]), None, 2, ["--set", "not valid YAML"]),
    # item 2: known before torchrun starts
    "batch_size=63, world_size 2 (--set)": (MLA + _sets(["batch_size=63", "world_size=2"]), None, 2,
                                           ["batch_size", "(63)", "divisible by world_size (2)", "batch_size=62"]),
    "batch_size=63, world_size: 2 (params, CMG)": (CMG + _sets(["batch_size=63"]), {"world_size": 2}, 2,
                                                   ["batch_size", "divisible by world_size (2)", "batch_size=62"]),
    # item 6: paths and names
    "BENCHMARK is a dataset path": (["mla", "data/mine.npz", "joint"], None, 2, ["BENCHMARK", "plain name", "--set dataset="]),
    "BENCHMARK is mine.npz": (["mla", "mine.npz", "joint"], None, 2, ["BENCHMARK", "plain name"]),
    "BENCHMARK with ..": (["mla", "..", "joint"], None, 2, ["BENCHMARK", "plain name"]),
    "BENCHMARK with ../": (["mla", "../../x", "joint"], None, 2, ["BENCHMARK", "plain name"]),
    "--name with /": (MLA + ["--name", "a/b"], None, 2, ["--name", "plain name"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_anything_runs(base, tmp_path, case):
    argv, patch, rc, words = REFUSED[case]
    root = tmp_path / "runs"
    code, err = cli_inprocess([*argv, "--params", _params(base, tmp_path, patch), "--root", root])
    assert code == rc, (code, err)
    assert err.startswith("error: ") and "Traceback" not in err, err
    for w in words: assert w in err, (w, err)
    assert not _files(root), f"{case}: wrote {list(_files(root))}"          # nothing started, nothing written
    assert not (ROOT / "data" / "mine.npz").exists() and not (tmp_path.parent / "x").exists()


def test_values_reach_the_notebook_as_written(base):
    "No templating: braces in a value are the value's own characters."
    from mla_cmg.runner import resolve
    p = yaml.safe_load((base / "params.yaml").read_text())
    _, sets, _ = resolve(p, "mla", "synthetic", "joint", sets={"data_root": "d/{bench}-{seed}/{{x}}"})
    assert sets[0]["data_root"] == "d/{bench}-{seed}/{{x}}"


def test_set_seeds_and_world_size_are_the_runners(base):
    from mla_cmg.runner import resolve, runner_settings
    p = yaml.safe_load((base / "params.yaml").read_text())
    _, sets, src = resolve(p, "mla", "synthetic", "joint", sets={"seeds": [7, 8]})
    assert [s["seed"] for s in sets] == [7, 8] and src["seed"] == "--set seeds" and "seeds" not in sets[0]
    assert runner_settings(p, sets={"world_size": 2}) == (2, 1) and runner_settings(p) == (1, 1)


def test_a_running_configuration_is_not_run_twice(base, tmp_path):
    "A second runner of a configuration that is running is refused (the lock dies with the first runner)."
    import fcntl
    from mla_cmg.runner import _claim_config
    root = tmp_path / "runs"
    fd = _claim_config(root, "mla", "synthetic", "joint")
    try:
        code, err = cli_inprocess([*MLA, "--params", base / "params.yaml", "--root", root])
        assert code == 2 and f"pid {os.getpid()}" in err and "another runner" in err, err
    finally: os.close(fd)
    fd = _claim_config(root, "mla", "synthetic", "joint"); os.close(fd)            # free again


# --- data and checkpoints (item 6) ----------------------------------------------------------------------------------
def test_flipped_bytes_in_npz_name_the_file(tmp_path):
    from mla_cmg.data.format import load_npz, save_dataset
    from mla_cmg.data.synthetic import make_synthetic
    p = save_dataset(tmp_path / "d.npz", make_synthetic(n=200, seed=0))
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z: info = z.getinfo("x_a.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 50, start + 60): raw[i] ^= 0xFF               # inside x_a's compressed bytes
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as e: load_npz(p)
    assert str(p) in str(e.value) and "not a readable .npz" in str(e.value)


def test_labels_without_classes_must_use_every_class(tmp_path):
    from mla_cmg.data.format import check_arrays
    rng = np.random.default_rng(0)
    y = rng.choice([0, 3, 42], 100)
    a = {"x_a": rng.normal(size=(100, 4)).astype(np.float32), "x_b": rng.normal(size=(100, 4)).astype(np.float32), "y": y}
    with pytest.raises(ValueError) as e: check_arrays(a, where="mine.npz")
    assert "mine.npz" in str(e.value) and "'classes'" in str(e.value) and "0..42" in str(e.value)
    d = check_arrays({**a, "classes": np.array([str(i) for i in range(43)])})          # named classes: allowed
    assert d.n_classes == 43


def test_checkpoint_of_the_wrong_structure(tmp_path):
    import torch
    from mla_cmg.core import save_checkpoint
    from mla_cmg.engine import Method, TrainConfig, fit
    from mla_cmg.core import ConfigError
    class M(Method):
        def __init__(self): super().__init__(); self.l = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "epoch": 0})
    ds = torch.utils.data.TensorDataset(torch.zeros(4, 2))
    with pytest.raises(ConfigError) as e: fit(M(), ds, cfg=TrainConfig(epochs=1, progress=False), run_dir=tmp_path)
    assert str(tmp_path / "last.pt") in str(e.value) and "'cfg'" in str(e.value) and "Delete" in str(e.value)


# --- runs that start kernels or torchrun (slow) ---------------------------------------------------------------------
# id: (argv, params.yaml patch, exit code, words in the message, what must (not) be in the run folder)
RUNS = {
    "MLA SGD lr=1e6: divergence stops the run": (
        MLA + _sets(MLA_SMALL + ["optimizer=sgd", "lr=1e6"]), None, 1,
        ["training diverged at step", "non-finite", "loss", "Lower the learning rate"], {"metrics.json": False}),
    "MLA SGD lr=1e6 with the probe on": (
        MLA + _sets(["synthetic={n: 300}", "epochs=2", "optimizer=sgd", "lr=1e6"]), None, 1,
        ["training diverged at step", "loss"], {"metrics.json": False}),
    "CMG lr=1e6: each loss term named": (
        CMG + _sets(CMG_SMALL + ["lr=1e6"]), None, 1,
        ["training diverged at step", "recon=", "commit=", "cpc=", "club="], {"metrics.json": False}),
    "MLA select_metric=bogus": (
        MLA + _sets(MLA_SMALL + ["select_metric=bogus"]), None, 1,
        ["select_metric='bogus'", "allowed", "'acc'"], {"ckpt/last.pt": False}),
    "CMG select_metric=bogus": (
        CMG + _sets(CMG_SMALL + ["select_metric=bogus"]), None, 1,
        ["select_metric='bogus'", "allowed", "'train_steps'"], {"train/last.pt": False, "metrics.json": False}),
    "world_size 2: a rank's error reaches the user": (
        MLA + _sets(["epochs=2", "probe=false", "world_size=2", "dataset=nothing_here.npz"]), None, 1,
        ["ranks 0, 1: FileNotFoundError", "nothing_here.npz: dataset file not found"], {}),
    "world_size 2: divergence stops every rank": (
        MLA + _sets(MLA_SMALL + ["optimizer=sgd", "lr=1e6", "world_size=2"]), None, 1,
        ["ranks 0, 1: TrainingDiverged: training diverged at step", "loss="], {"metrics.json": False}),
    "world_size 2: the run records how it was run": (
        MLA + _sets(MLA_SMALL + ["world_size=2"]), None, 0, [], {"run.json": True, "metrics.json": True}),
}


@SLOW
@pytest.mark.parametrize("case", list(RUNS))
def test_runs(base, tmp_path, case):
    argv, patch, rc, words, files = RUNS[case]
    if argv[0] == "cmg": argv = argv + ["--set", f"data_root={base / 'prepared'}"]
    root = tmp_path / "runs"
    code, err = cli_subprocess([*argv, "--params", _params(base, tmp_path, patch), "--root", root])
    assert code == rc, err[-3000:]
    if rc: assert "\nerror: " in "\n" + err and "Traceback (most recent call last)" not in err, err[-3000:]   # no runner traceback
    for w in words: assert w in err, (w, err[-3000:])
    run = root / argv[0] / argv[1] / argv[2] / "seed0"
    for f, present in files.items(): assert (run / f).exists() == present, (f, err[-2000:])
    if case.startswith("world_size 2: the run records"):
        rec = json.loads((run / "run.json").read_text())
        assert rec["world_size"] == 2 and rec["device"] == "cpu" and rec["torch"] and rec["runner"] == "torchrun"
    if rc and "world_size" not in case:      # the failed run's executed notebook, outside the run folder
        assert (root / ".failed" / argv[0] / argv[1] / argv[2] / "seed0" / "run.ipynb").exists()
        assert not (run / "run.ipynb").exists()


@SLOW
def test_a_refused_or_failed_rerun_leaves_the_finished_run_as_it_was(base, tmp_path):
    "Item 5: a finished run, then a rerun with another lr (refused by the folder) and one that diverges (fresh folder)."
    params, root = base / "params.yaml", tmp_path / "runs"
    code, err = cli_subprocess([*MLA, *_sets(MLA_SMALL), "--params", params, "--root", root])
    assert code == 0, err[-3000:]
    run = root / "mla" / "synthetic" / "joint" / "seed0"
    assert (run / "run.ipynb").exists() and json.loads((run / "run.json").read_text())["world_size"] == 1
    before = _files(run)
    time.sleep(0.05)
    code, err = cli_subprocess([*MLA, *_sets(MLA_SMALL + ["lr=0.002"]), "--params", params, "--root", root])
    assert code == 1 and "another configuration" in err and "lr: 0.001 -> 0.002" in err, err[-3000:]
    assert _files(run) == before, "a refused rerun changed the finished run"
    failed = root / ".failed" / "mla" / "synthetic" / "joint" / "seed0" / "run.ipynb"
    assert "0.002" in failed.read_text() and "0.002" not in (run / "run.ipynb").read_text()


@SLOW
def test_notebook_mode_failure_keeps_the_old_record(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("params = {}", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("assert params.get('ok'), 'not ok'")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    out, root = tmp_path / "out" / "rec.ipynb", tmp_path / "runs"
    args = ["--notebook", tmp_path / "nb.ipynb", "--out", out, "--root", root]
    assert cli_subprocess([*args, "--set", "ok=true"])[0] == 0
    old = out.read_bytes()
    code, err = cli_subprocess([*args, "--set", "ok=false"])
    assert code == 1 and "not ok" in err and str(root / ".failed" / "rec.ipynb") in err, err[-2000:]
    assert out.read_bytes() == old and (root / ".failed" / "rec.ipynb").exists()
