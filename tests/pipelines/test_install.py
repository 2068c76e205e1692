"""The built wheel installs the three folders under one import name, with the configs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_wheel_contents_and_import_from_a_fresh_target(tmp_path: Path) -> None:
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
        "poisonguard/configs/default.yaml",
        "poisonguard/configs/triggers.yaml",
    ):
        assert needed in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import poisonguard.pipelines.config as c, poisonguard.filters.unicode as u; "
        "print(u.__file__); print(c.load_config().run.batch_rows)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))
