"""Properties of mla_cmg.core that must hold outside the notebook too."""
import os, signal, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mla_cmg import core


def test_same_seed_same_tensors():
    core.seed_everything(123)
    a = torch.nn.Linear(8, 4).weight.detach().clone(), torch.randn(5), np.random.rand(5)
    core.seed_everything(123)
    b = torch.nn.Linear(8, 4).weight.detach().clone(), torch.randn(5), np.random.rand(5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    core.seed_everything(124)
    assert not torch.equal(torch.randn(5), a[1])


def test_bad_seed_rejected():
    with pytest.raises(ValueError, match="seed"):
        core.seed_everything(-1)


def test_bad_config_names_key_and_file(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Cfg:
        lr: float
        epochs: int = 1

    f = tmp_path / "params.yaml"
    f.write_text("train:\n  lr: 0.1\n  lrr: 0.2\n")
    with pytest.raises(core.ConfigError) as e:
        core.load_params(f, "train", Cfg)
    assert "lrr" in str(e.value) and str(f) in str(e.value)
    f.write_text("train:\n  epochs: 2\n")
    with pytest.raises(core.ConfigError, match="missing required key.*lr"):
        core.load_params(f, "train", Cfg)
    f.write_text("train:\n  lr: fast\n")
    with pytest.raises(core.ConfigError, match="'lr' expects float"):
        core.load_params(f, "train", Cfg)
    with pytest.raises(core.ConfigError, match="section 'eval' not found"):
        core.load_params(f, "eval", Cfg)
    f.write_text("train: [1, 2\n")
    with pytest.raises(core.ConfigError, match="not valid YAML"):
        core.load_params(f, "train", Cfg)


def test_killed_atomic_write_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    core.save_json(target, {"acc": 0.9})
    # A child process starts overwriting the file with a large payload and is SIGKILLed mid-write.
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from mla_cmg.core import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, 'w') as f:
                f.write('{{"acc": 0.1, "junk": "' + 'x' * 100000)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == -signal.SIGKILL
    assert core.load_json(target) == {"acc": 0.9}


def test_failed_writes_leave_no_partial_files(tmp_path):
    target = tmp_path / "a.npz"
    core.save_npz(target, x=np.arange(3))
    with pytest.raises(TypeError, match="dtype object"):
        core.save_npz(target, x=np.array([{"a": 1}], dtype=object))
    assert np.array_equal(core.load_npz_arrays(target)["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(Exception):
        core.load_checkpoint(p)
