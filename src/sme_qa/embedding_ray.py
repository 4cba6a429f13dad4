"""The Ray executor: passages embedded by a pool of model replicas under Ray Data.

``RayEmbedder`` is an :class:`~sme_qa.embedding.Embedder` whose ``embed_passages``
sends the texts through ``ray.data`` ``map_batches`` with a callable class
(:class:`_Replica`) that loads the same embedder the local path uses, once per
actor.  The driver keeps everything else: chunking, reuse rules, the lexical index
and the index write are the local path's own, so the index on disk is the same.

Ray is an optional extra (``pip install 'sme-qa[ray]'``); this module imports it
only when a run starts.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import bundled
from .errors import ExecutorError, SmeQaError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
INSTALL_HINT = "pip install 'sme-qa[ray]'"
# Ray Data's own tasks (the driver-side input and output of the pipeline) need a
# sliver of CPU: actors that asked for every CPU the cluster has would wait forever
# for them (seen with two 1-CPU actors on a 2-CPU local Ray).
RESERVED_CPUS = 0.25


@dataclass(frozen=True)
class RayOptions:
    """How the Ray executor runs.

    ``address``: None/"" = ``$RAY_ADDRESS`` if set, else a local Ray started with
    ``local_cpus`` CPUs (default: all of this machine's); otherwise ``ray://host:10001``
    or ``auto``.  ``threads``: torch threads in each replica.  ``concurrency``: the
    number of replicas (default: as many as the cluster's CPUs allow at ``threads``
    each).  ``num_cpus``: CPUs each replica reserves (default: its share of the
    cluster's CPUs less a reserve for Ray Data's own tasks, so it may be fractional).
    ``timeout``: seconds for the whole run, start-up included; past it the run is an
    error, not a hang.
    """

    address: str | None = None
    concurrency: int | None = None
    batch_size: int = 64
    threads: int = 1
    num_cpus: float | None = None
    local_cpus: int | None = None
    timeout: float = 3600.0

    def plan(self, cluster_cpus: float) -> tuple[int, float]:
        """(replicas, CPUs per replica) for a cluster reporting ``cluster_cpus`` CPUs."""
        usable = max(cluster_cpus - RESERVED_CPUS, 0.1)
        replicas = self.concurrency or max(1, math.floor(cluster_cpus / max(self.threads, 1)))
        per = self.num_cpus if self.num_cpus is not None else min(float(self.threads), usable / replicas)
        if per * replicas > usable + 1e-9:
            raise ExecutorError(
                f"{replicas} replicas of {per:g} CPUs do not fit in the {cluster_cpus:g} CPUs "
                f"Ray reports (Ray Data needs {RESERVED_CPUS:g} of them): lower the concurrency "
                "or the CPUs per replica"
            )
        return replicas, round(per, 3)


class _Replica:
    """One model replica inside a Ray actor: loads the embedder once, embeds batches."""

    def __init__(self, model: str | None, cache_dir: str | None, threads: int, batch_size: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        from .embedding import load_embedder

        self.batch_size = batch_size
        self.embedder = load_embedder(model, purpose="index", cache_dir=Path(cache_dir) if cache_dir else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.embedder.embed_passages(texts, batch_size=self.batch_size)
        return {
            "row": np.asarray(batch["row"], dtype=np.int64),
            "vector": vectors,
            "fingerprint": np.array([self.embedder.fingerprint] * len(texts)),
            "backend": np.array([self.embedder.backend] * len(texts)),
        }


class RayEmbedder:
    """Embeds passages on a Ray cluster; queries stay local (they are one at a time)."""

    # Indexing hands new passages over this many at a time (and keeps each slice in the
    # vector cache); every call starts a pool and loads the model in each replica, so
    # the slices are larger than the local path's.
    cache_slice = 65536

    def __init__(self, model: str | None = None, *, cache_dir: Path | None = None, options: RayOptions | None = None) -> None:
        from .settings import DEFAULT_MODEL

        self.options = options or RayOptions()
        self.model = model if model is not None else DEFAULT_MODEL
        self._cache_dir = cache_dir
        self._local: Any = None
        if bundled.is_default(model):  # known without loading anything
            self.fingerprint = bundled.weights_fingerprint()
            self.dimension = bundled.DIMENSION
        else:  # another model: the driver loads it once to learn what the replicas will compute
            self._local = _local_embedder(model, "index", cache_dir)
            self.fingerprint, self.dimension = self._local.fingerprint, self._local.dimension
        self.backend = "ray/sentence-transformers"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self._local is None:
            self._local = _local_embedder(None if bundled.is_default(self.model) else self.model, "query", self._cache_dir)
        return self._local.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str], *, batch_size: int | None = None, progress: Progress | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        ray = _import_ray()
        started = time.perf_counter()
        deadline = started + self.options.timeout
        owned = _connect(ray, self.options)
        try:
            out = _run(ray, self, list(texts), batch_size or self.options.batch_size, progress, deadline)
        finally:
            if owned:
                ray.shutdown()
        log.info(
            "ray: %d passages in %.1f s (%.1f passages/s, start-up included)",
            len(texts),
            time.perf_counter() - started,
            len(texts) / (time.perf_counter() - started),
        )
        return out


def _local_embedder(model: str | None, purpose: str, cache_dir: Path | None) -> Any:
    from .embedding import load_embedder

    return load_embedder(model, purpose=purpose, cache_dir=cache_dir)


def require_ray() -> None:
    """Raise ExecutorError saying how to install Ray Data unless it is importable."""
    from importlib.util import find_spec

    missing = [name for name in ("ray", "pyarrow") if find_spec(name) is None]
    if missing:
        raise ExecutorError(f"the Ray executor needs Ray Data ({', '.join(missing)} not installed): {INSTALL_HINT}")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the extra's other half: pyarrow, pandas
    except ImportError as e:
        raise ExecutorError(f"the Ray executor needs Ray Data ({e.name or e} is missing): {INSTALL_HINT}") from None
    return ray


def _connect(ray: Any, options: RayOptions) -> bool:
    """Connect to (or start) Ray; True when this call started it and should shut it down."""
    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": log.isEnabledFor(logging.DEBUG),
    }
    if address is None:
        kwargs["num_cpus"] = options.local_cpus or os.cpu_count() or 1
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ExecutorError(
            f"cannot connect to Ray at {address or 'a new local Ray'}: {e} (start one with `ray start --head`, or check RAY_ADDRESS)"
        ) from e
    return True


def _run(ray: Any, embedder: RayEmbedder, texts: list[str], batch_size: int, progress: Progress | None, deadline: float) -> np.ndarray:
    options = embedder.options
    cpus = float(ray.cluster_resources().get("CPU", 0))
    if cpus <= 0:
        raise ExecutorError("the Ray cluster reports no CPUs: add workers (`ray start --address=…`)")
    replicas, per = options.plan(cpus)
    remote = options.address or os.environ.get("RAY_ADDRESS")
    log.info("ray: %d replicas of %g CPUs (%d torch threads) on %g CPUs, batches of %d", replicas, per, options.threads, cpus, batch_size)

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.wait_for_min_actors_s = max(1, int(deadline - time.perf_counter()))
    # Longest first, so each batch holds passages of similar length (little padding);
    # rows carry their position and the driver puts them back in input order.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    items = [{"row": i, "text": texts[i]} for i in order]
    batch_size = max(1, min(batch_size, math.ceil(len(items) / replicas)))  # every replica gets work
    blocks = math.ceil(len(items) / batch_size)
    dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        _Replica,
        fn_constructor_kwargs={
            "model": None if bundled.is_default(embedder.model) else embedder.model,
            "cache_dir": None if remote or embedder._cache_dir is None else str(embedder._cache_dir),
            "threads": options.threads,
            "batch_size": batch_size,
        },
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=per,
        compute=ray.data.ActorPoolStrategy(size=replicas),
    )
    out = np.zeros((len(texts), embedder.dimension), np.float32)
    seen = np.zeros(len(texts), bool)
    failure: list[BaseException] = []
    done = threading.Event()
    backends: set[str] = set()

    def consume() -> None:
        try:
            count = 0
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                fingerprints = set(batch["fingerprint"].tolist())
                if fingerprints != {embedder.fingerprint}:
                    raise ExecutorError(
                        f"a Ray worker embeds with {', '.join(sorted(fingerprints))}, not "
                        f"{embedder.fingerprint}: install the same sme-qa and model on every node"
                    )
                backends.update(batch["backend"].tolist())
                rows = batch["row"]
                out[rows] = batch["vector"]
                seen[rows] = True
                count += len(rows)
                if progress is not None:
                    progress(count, len(texts))
        except Exception as e:  # noqa: BLE001 (any failure is re-raised by the waiting thread)
            failure.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=consume, name="sme-qa-ray", daemon=True)
    worker.start()

    def stuck() -> ExecutorError:
        return ExecutorError(
            f"the Ray run did not finish within {options.timeout:g} s ({int(seen.sum())} of "
            f"{len(texts)} passages embedded): check `ray status` for free CPUs, or raise the timeout"
        )

    if not done.wait(max(0.0, deadline - time.perf_counter())):
        raise stuck()
    if failure:
        e = failure[0]
        if isinstance(e, SmeQaError):
            raise e
        if isinstance(e, TimeoutError):  # Ray Data's GetTimeoutError: no replica could start in time
            raise stuck() from e
        raise ExecutorError(f"the Ray run failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not seen.all():
        raise ExecutorError(f"the Ray run returned {int(seen.sum())} of {len(texts)} passages")
    if backends:
        embedder.backend = "ray/" + "+".join(sorted(backends))
    return out
