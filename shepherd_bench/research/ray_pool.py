"""Calls of one function run as Ray tasks: Ray places them on the cluster's resources (``num_cpus`` /
``num_gpus`` per task), each in a fresh worker process (``max_calls=1``: a task's models are freed when it
ends), and reruns a task whose worker died (``max_retries``). ``ray`` is imported inside the functions
only: ``pip install 'shepherd-bench[ray]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import ConfigError
from ..errors import UserError

R = TypeVar("R")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # a cluster to join (``auto``, ``ray://head:10001``); None: RAY_ADDRESS or a new local one
    num_cpus: float = 1.0  # reserved per task
    num_gpus: float = 0.0  # reserved per task (Ray sets CUDA_VISIBLE_DEVICES to them)
    max_retries: int = 3  # reruns of a task whose worker process died

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0 or self.max_retries < 0:
            raise ConfigError("--ray-cpus and --ray-gpus must be >= 0")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'shepherd-bench[ray]'") from None
    return ray


def run_on_ray(fn: Callable[..., R], calls: list[tuple[Any, ...]], opts: RayOptions,
               on_done: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(*c) for c in calls]``, each call a Ray task; ``on_done(i, result)`` as each one finishes.
    Joins the running Ray session if there is one, else ``opts.address`` or a new local cluster (shut
    down again at the end). A task's own error comes back as raised (a configuration mistake as itself)."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=opts.address)
    try:
        task = ray.remote(max_calls=1)(fn).options(num_cpus=opts.num_cpus, num_gpus=opts.num_gpus,
                                                   max_retries=opts.max_retries)
        refs = [task.remote(*c) for c in calls]
        index = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, R] = {}
        waiting = list(refs)
        try:
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                i = index[ready[0]]
                results[i] = _get(ray, ready[0])
                if on_done is not None:
                    on_done(i, results[i])
        except BaseException:
            for ref in waiting:  # one failed or Ctrl-C: stop the others (each keeps what it finished)
                ray.cancel(ref, force=True)
            raise
        return [results[i] for i in range(len(calls))]
    finally:
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError):
            raise cause from None
        raise
