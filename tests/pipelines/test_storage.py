"""Remote inputs and OUT through fsspec, against a real S3 API served on 127.0.0.1 (moto's server)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.config import load_config
from poisonguard.pipelines.runner import run_filter
from tests.conftest import DEMO_CORPUS

FAST = "perplexity:\n  enabled: false\n"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 endpoint on 127.0.0.1 with a bucket `corpus` holding the demo corpus (gzip JSONL) and a
    file that is not an input; yields the environment a client needs to use it."""
    server_mod = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "POISONGUARD_STAGING": str(tmp_path_factory.mktemp("staging")),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("corpus")
        fs.pipe_file("corpus/in/demo.jsonl.gz", gzip.compress(DEMO_CORPUS.read_bytes()))
        fs.pipe_file("corpus/in/_manifest.txt", b"not an input")
        yield env
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def filesystem(env: dict[str, str]):  # noqa: ANN201 - s3fs is optional
    import s3fs

    return s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]}, skip_instance_cache=True
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "poisonguard")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def outcomes(table) -> dict[str, str]:  # noqa: ANN001
    return dict(zip(table.column("id").to_pylist(), table.column("outcome").to_pylist(), strict=True))


def test_remote_inputs_and_remote_out(s3: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text(FAST)
    cfg = ["--config", str(tmp_path / "fast.yaml"), "-q"]
    result = cli(s3, "filter", "s3://corpus/in/", "--out", "s3://corpus/out", *cfg)
    assert result.returncode == 0, result.stderr
    fs = filesystem(s3)
    names = {k.split("corpus/out/", 1)[1] for k in fs.find("corpus/out")}
    assert {"_SUCCESS", "report.json", "report.html", "manifest.json", "README.md"} <= names
    assert any(n.startswith("clean/part-") for n in names) and any(
        n.startswith("quarantine/part-") for n in names
    )
    # the same outcomes as a local run, and `source` names the object the document came from
    local = tmp_path / "local"
    run_filter([str(DEMO_CORPUS)], local, load_config(tmp_path / "fast.yaml"), show_progress=False)
    remote = pq.read_table("corpus/out/quarantine", filesystem=fs)
    assert outcomes(remote) == outcomes(pq.read_table(local / "quarantine"))
    assert set(remote.column("source").to_pylist()) == {"s3://corpus/in/demo.jsonl.gz"}
    manifest = json.loads(fs.cat_file("corpus/out/manifest.json"))
    assert manifest["rows"]["clean"] + manifest["rows"]["quarantine"] == 35
    # staging is gone once published
    assert not any(Path(s3["POISONGUARD_STAGING"]).iterdir())

    again = cli(s3, "filter", "s3://corpus/in/demo.jsonl.gz", "--out", "s3://corpus/out", *cfg)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    replaced = cli(s3, "filter", "s3://corpus/in/*.jsonl.gz", "--out", "s3://corpus/out", *cfg, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert fs.exists("corpus/out/_SUCCESS")


def test_remote_input_to_local_out_and_missing_object(s3: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text(FAST)
    cfg = ["--config", str(tmp_path / "fast.yaml"), "-q"]
    result = cli(s3, "filter", "s3://corpus/in/demo.jsonl.gz", "--out", str(tmp_path / "out"), *cfg)
    assert result.returncode == 0, result.stderr
    assert pq.read_table(tmp_path / "out" / "clean").num_rows > 0
    missing = cli(s3, "filter", "s3://corpus/nothing.jsonl", "--out", str(tmp_path / "o2"), *cfg)
    assert missing.returncode == 2 and "s3://corpus/nothing.jsonl: no such file or folder" in missing.stderr


def test_interrupted_publishing_is_finished_by_the_next_call(s3: dict[str, str], tmp_path: Path) -> None:
    """A finished local build whose upload was cut short: the next call publishes it, _SUCCESS last."""
    from poisonguard.pipelines.storage import RemoteOut

    remote = RemoteOut("s3://corpus/cut")
    remote.fs = filesystem(s3)
    run_filter(
        [str(DEMO_CORPUS)],
        remote.local,
        load_config(overrides={"perplexity": {"enabled": False}}),
        show_progress=False,
    )
    remote.fs.put_file(
        str(sorted((remote.local / "clean").glob("*.parquet"))[0]), "corpus/cut/clean/part-00000.parquet"
    )
    assert not remote.fs.exists("corpus/cut/_SUCCESS")  # what a reader sees while publishing: unfinished
    (tmp_path / "fast.yaml").write_text(FAST)
    result = cli(
        s3,
        "filter",
        "s3://corpus/in/",
        "--out",
        "s3://corpus/cut",
        "--config",
        str(tmp_path / "fast.yaml"),
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert remote.fs.exists("corpus/cut/_SUCCESS") and remote.fs.exists("corpus/cut/report.html")
