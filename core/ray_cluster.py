"""Joining or starting a Ray cluster: what the Ray filter engine and the Ray crawl fan-out share."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# Ray must not phone home or repeat log lines; set before ray is imported anywhere in this process.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
LOCAL_OBJECT_STORE = 512 * 2**20  # object store of a Ray this module starts itself (bytes)


def ray_module() -> Any:
    """The ``ray`` module, imported with :data:`RAY_ENV` set."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at `address` (or the one already initialised in this process), or start
    a local one with `num_cpus` CPUs. Returns True when this call started it (then the caller shuts
    it down)."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE,
            log_to_driver=False,
        )
    return True


@contextlib.contextmanager
def connected(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """:func:`connect` for the duration of a block; a Ray started here is shut down after it."""
    started_here = connect(address, num_cpus)
    try:
        yield ray_module()
    finally:
        if started_here:
            ray_module().shutdown()


def cluster_cpus() -> int:
    return max(1, int(ray_module().cluster_resources().get("CPU", 1)))


def wait_all(refs: list[Any]) -> list[Any]:
    """Results of `refs` in their order (re-raising a task's error)."""
    return list(ray_module().get(refs))
