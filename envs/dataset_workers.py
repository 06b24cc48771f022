"""Generating shards, in this process or in a pool of worker processes, each with its own scene.

A worker makes its scene (and renderer) and policy once and reuses them for every shard it writes;
it reports frames made through a queue, so the parent's progress bar moves while shards are built.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as _queue
import time
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.core.outputs import file_sha256
from worldsim.envs.episodes import GenerateSpec, episode_seeds, run_episode
from worldsim.envs.manifest import shard_name
from worldsim.envs.policies import make_policy
from worldsim.envs.registry import make_scene
from worldsim.envs.shards import remove_partial, write_manifest, write_shard

_WORKER: dict[str, Any] = {}


def _worker_init(spec: GenerateSpec, progress: Any) -> None:
    _WORKER["progress"] = progress
    try:
        # One renderer per process, made once and reused for every shard this worker writes.
        _WORKER["scene"] = make_scene(spec.scene, spec.width, spec.height, **dict(spec.scene_options))
        _WORKER["policy"] = make_policy(spec.policy)
    except Exception as exc:  # noqa: BLE001
        # A pool whose initializer raises respawns its workers forever; the first shard reports it instead.
        _WORKER["error"] = exc


def _close_worker() -> None:
    if _WORKER.get("scene") is not None:
        _WORKER["scene"].close()
    _WORKER.clear()


def _generate_shard(spec: GenerateSpec, index: int, first: int, count: int, max_steps: int) -> dict[str, Any]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    scene, policy, progress = _WORKER["scene"], _WORKER["policy"], _WORKER["progress"]
    t0 = time.perf_counter()
    episodes = []
    steps = 0
    for ep in range(first, first + count):
        arrays = run_episode(scene, policy, spec.seed, ep, max_steps, render=spec.frames)
        episodes.append((ep, episode_seeds(spec.seed, ep)[0], arrays))
        steps += len(arrays["actions"])
        if progress is not None:
            progress.put(len(arrays["states"]))
    path = Path(spec.out) / shard_name(index)
    write_shard(path, index, first, episodes)
    states = np.concatenate([a["states"] for _, _, a in episodes])
    return {
        "index": index,
        "file": path.name,
        "first_episode": first,
        "num_episodes": count,
        "steps": steps,
        "frames": int(sum(len(a["states"]) for _, _, a in episodes)),  # time steps (rows), rendered or not
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "state_sum": states.sum(0).tolist(),
        "state_sqsum": np.square(states).sum(0).tolist(),
        "seconds": time.perf_counter() - t0,  # this worker's time on the shard, writing included
    }


class Progress:
    """Counts generated frames (the bar may be disabled) and shows them on the bar."""

    def __init__(self, bar: Any):
        self.bar, self.n = bar, 0

    def put(self, n: int) -> None:
        self.n += n
        self.bar.update(n)


def _drain(queue: Any, progress: Progress) -> None:
    while True:
        try:
            progress.put(queue.get_nowait())
        except _queue.Empty:
            return


def run_here(spec: GenerateSpec, plan: list, max_steps: int, root: Path, manifest: dict[str, Any],
              progress: Progress) -> None:
    _worker_init(spec, progress)
    try:
        for index, first, count in plan:
            rec = _generate_shard(spec, index, first, count, max_steps)
            manifest["shards"][rec["file"]] = rec
            write_manifest(root, manifest)
    finally:
        _close_worker()


def run_pool(spec: GenerateSpec, plan: list, max_steps: int, root: Path, manifest: dict[str, Any],
              progress: Progress) -> None:
    ctx = mp.get_context("spawn")  # GL contexts do not survive a fork
    queue = ctx.Queue()  # no Manager process: nothing outlives a killed run
    with ctx.Pool(min(spec.workers, len(plan)), _worker_init, (spec, queue)) as pool:
        try:
            pending = [pool.apply_async(_generate_shard, (spec, i, f, c, max_steps)) for i, f, c in plan]
            while pending:
                _drain(queue, progress)
                for job in [j for j in pending if j.ready()]:
                    rec = job.get()  # a worker's error (e.g. a full disk) is raised here, once
                    manifest["shards"][rec["file"]] = rec
                    write_manifest(root, manifest)
                    pending.remove(job)
                time.sleep(0.05)
            _drain(queue, progress)
        except BaseException:
            # Stop the other workers now, and remove the temporary files of the shards they were writing.
            pool.terminate()
            pool.join()
            remove_partial(root)
            raise
