"""The built wheel installs the four code folders under one import name, with the configs, into a fresh
virtual environment, and its console script runs a real filter job there."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DEMO_CORPUS, REPO


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("poisonguard-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("poisonguard-")}
    assert tops == {"poisonguard"}, tops  # nothing generic such as `filters` in site-packages
    for needed in (
        "poisonguard/filters/unicode.py",
        "poisonguard/pipelines/cli.py",
        "poisonguard/crawler/html.py",
        "poisonguard/core/schema.py",
        "poisonguard/core/lm_calibration.txt",
        "poisonguard/configs/default.yaml",
        "poisonguard/configs/triggers.yaml",
        "poisonguard/configs/nightly.yaml",
    ):
        assert needed in names

    # A fresh venv; the heavy dependencies come from this environment through a .pth file (so the
    # test needs no network), poisonguard itself only from the wheel, installed by pip.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (fresh_site / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = "import poisonguard.filters.unicode as u; print(u.__file__)"
    where = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(fresh_site)), where.stdout  # not the editable checkout

    config = tmp_path / "fast.yaml"
    config.write_text("perplexity: {enabled: false}\n")
    out = tmp_path / "out"
    job = subprocess.run(
        [
            str(env_dir / "bin" / "poisonguard"),
            "filter",
            str(DEMO_CORPUS),
            "--out",
            str(out),
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr
    assert (out / "_SUCCESS").exists() and list((out / "clean").glob("part-*.parquet"))
