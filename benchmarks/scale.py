"""Scale: ImageNet-sized scoring in bounded memory, and the executors' overhead.

    .venv/bin/python benchmarks/scale.py              # (a), (b), (c): 30 min the first time, then 12; 33 GB of disk
    .venv/bin/python benchmarks/scale.py --parts b    # one part; (c) reads the others' results
    .venv/bin/python benchmarks/scale.py --quick      # a smoke run: N = 64,000, small members

(a) Member predictions at the paper's scale: N = 1,281,167 samples, C = 1,000 classes, stored as
    float16 ``.npy`` files (2.56 GB a member, written chunk by chunk to benchmarks/.data/scale),
    scored end to end by ``subsetsearch score --state DIR`` (statistics memory-mapped on disk,
    12.8 GB) in a child process, for M = 4 and M = 8 members. Reported: wall seconds, the child's
    peak resident memory (its VmHWM: every page it held, memory-mapped file pages included) and
    its peak anonymous memory (RssAnon, sampled every 20 ms), against the I/O floor measured
    in the same run (reading the members' bytes, writing the statistics' bytes, each with the
    page cache emptied of those files first). Time is linear in M (t = a + b·M through the two
    runs); M = 100 is that line at 100.
(b) Real checkpoints: 8 checkpoints of a cnn_small (width 16) trained on Fashion-MNIST, scoring the
    60,000 training images (8 x 8 (member, shard) tasks). The local executor against Ray with one
    worker (2 CPUs, 2 torch threads) and with two (1 CPU, 1 thread each): cold (start Ray, start
    the workers, load the data) and warm (the same workers again); ratios against local, and
    whether the statistics are bit-identical to local's.
(c) On paper, from (a) and (b): the paper's ImageNet scoring (100 members, 1.28 M images) on a
    cluster of 8 GPUs. The one figure not measured here is a GPU's ResNet-18 inference rate,
    taken as a parameter (``--gpu-images-per-s``) and stated in the result.

Results: ``benchmarks/results/scale.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data" / "scale"
RESULTS = ROOT / "results"
PAPER = {"num_samples": 1_281_167, "num_classes": 1000, "num_members": 100}
CHUNK_ROWS = 16384


# ------------------------------------------------------------------------------------- helpers


def drop_cache(paths: list[Path]) -> None:
    """Empty the page cache of these files (clean pages; no root needed)."""
    for path in paths:
        for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd) if os.access(file, os.W_OK) else None
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_seconds(paths: list[Path]) -> tuple[float, int]:
    """Seconds to read every byte of ``paths`` from disk, 64 MB at a time."""
    drop_cache(paths)
    buffer = bytearray(64 << 20)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while (got := handle.readinto(view)) > 0:
                total += got
    return time.perf_counter() - started, total


def write_seconds(nbytes: int, folder: Path) -> float:
    """Seconds to write ``nbytes`` to a new file and fsync it (then the file is removed)."""
    path = folder / "write_probe.bin"
    block = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    started = time.perf_counter()
    with open(path, "wb", buffering=0) as handle:
        written = 0
        while written < nbytes:
            written += handle.write(block[: min(len(block), nbytes - written)])
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def write_members(folder: Path, m: int, n: int, c: int) -> list[Path]:
    """Member files [n, c] float16, softmax of random logits, written chunk by chunk (kept for reruns)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(m):
        path = folder / f"member_{j:03d}.npy"
        paths.append(path)
        if path.is_file() and np.load(path, mmap_mode="r").shape == (n, c):
            continue
        rng = np.random.default_rng(1000 + j)
        tmp = path.with_suffix(".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, c))
        base = np.random.default_rng(7)  # shared class structure: members agree more than chance
        for start in range(0, n, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, n - start)
            logits = base.standard_normal((rows, c), dtype=np.float32) * 3.0
            logits += rng.random((rows, c), dtype=np.float32) * 2.0
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            logits /= logits.sum(axis=1, keepdims=True)
            out[start : start + rows] = logits
        out.flush()
        del out
        os.replace(tmp, path)
        print(f"  wrote {path.name}", file=sys.stderr, flush=True)
    return paths


#: The child reports its own peak resident memory (VmHWM) as it exits: a child's ru_maxrss would
#: also count its parent's (a vfork'ed child's counter starts from the parent's peak).
CHILD = (
    "import sys, pathlib\n"
    "from subsetsearch.cli import main\n"
    "code = main(sys.argv[2:])\n"
    "status = pathlib.Path('/proc/self/status').read_text().splitlines()\n"
    "pathlib.Path(sys.argv[1]).write_text(next(l for l in status if l.startswith('VmHWM:')).split()[1])\n"
    "sys.exit(code)\n"
)


def run_child(args: list[str]) -> dict:
    """Run ``subsetsearch`` with ``args``: wall seconds, peak resident memory (VmHWM: every page the
    process held, memory-mapped file pages included) and peak anonymous memory (RssAnon, sampled)."""
    report = Path(tempfile.mkstemp(suffix=".hwm")[1])
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(report), *args], stdout=subprocess.PIPE)
    peak_anon = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        status = Path(f"/proc/{process.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak_anon = max(peak_anon, int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    started = time.perf_counter()
    sampler.start()
    output = process.communicate()[0].decode()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"subsetsearch {' '.join(args)} failed")
    peak = int(report.read_text()) * 1024
    report.unlink()
    return {"seconds": seconds, "peak_rss_bytes": peak, "peak_anon_bytes": peak_anon, "out": output}


# ------------------------------------------------------------------------------------- part a


def part_a(quick: bool) -> dict:
    n, c = (64_000, 100) if quick else (PAPER["num_samples"], PAPER["num_classes"])
    folder = DATA / ("members_quick" if quick else "members")
    print(f"(a) writing 8 members of {n} x {c} float16", file=sys.stderr, flush=True)
    paths = write_members(folder, 8, n, c)
    member_bytes = paths[0].stat().st_size
    stats_bytes = n * c * 10 + n * 16
    runs = {}
    for m in (4, 8):
        state = DATA / f"state_{'quick_' if quick else ''}{m}"
        shutil.rmtree(state, ignore_errors=True)
        read_s, read_bytes = read_seconds(paths[:m])
        write_s = write_seconds(stats_bytes, DATA)
        drop_cache(paths[:m])
        print(f"(a) scoring M = {m}", file=sys.stderr, flush=True)
        out = DATA / f"subset_{m}.parquet"
        members = [str(path) for path in paths[:m]]
        child = run_child(
            ["score", *members, "-f", "mutual_information", "-b", "0.5", "--state", str(state), "-o", str(out)]
        )
        floor = read_s + write_s
        runs[str(m)] = {
            "members": m,
            "seconds": child["seconds"],
            "peak_rss_gib": child["peak_rss_bytes"] / 2**30,
            "peak_anon_gib": child["peak_anon_bytes"] / 2**30,
            "read_floor_seconds": read_s,
            "read_gb_per_s": read_bytes / read_s / 1e9,
            "write_floor_seconds": write_s,
            "write_gb_per_s": stats_bytes / write_s / 1e9,
            "io_floor_seconds": floor,
            "ratio_to_read_floor": child["seconds"] / read_s,
            "ratio_to_io_floor": child["seconds"] / floor,
            "summary": child["out"].strip().splitlines()[0],
        }
        shutil.rmtree(state, ignore_errors=True)
        out.unlink(missing_ok=True)
    return {
        "num_samples": n,
        "num_classes": c,
        "member_bytes": member_bytes,
        "statistics_bytes": stats_bytes,
        "runs": runs,
    }


def extrapolate_a(a: dict) -> dict:
    """M = 100 from the two runs: a line t = a + b·M, and the disk's floor for reading 100 members.

    A member cannot be read faster than the disk reads it, so the estimate takes the larger of the
    line's per-member seconds and the measured read floor's."""
    runs = a["runs"]
    per_member = (runs["8"]["seconds"] - runs["4"]["seconds"]) / 4
    fixed = runs["4"]["seconds"] - 4 * per_member
    read_bw = min(runs[m]["read_gb_per_s"] for m in runs) * 1e9
    per_member_read = a["member_bytes"] / read_bw
    measured = {k: a[k] for k in ("num_samples", "num_classes", "member_bytes", "statistics_bytes", "runs", "command")}
    return {
        **measured,
        "seconds_per_member": per_member,
        "read_floor_seconds_per_member": per_member_read,
        "fixed_seconds": fixed,
        "linear_m100_seconds": fixed + 100 * per_member,
        "m100_read_floor_seconds": 100 * per_member_read,
        "extrapolated_m100_seconds": fixed + 100 * max(per_member, per_member_read),
    }


# ------------------------------------------------------------------------------------- part b


def part_b(quick: bool) -> dict:
    from subsetsearch.internal.malloc import tune_malloc

    tune_malloc()
    import ray

    from subsetsearch.executors import LocalExecutor, ScoreTask, make_executor, score_shards
    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.search import Search
    from subsetsearch.pipeline.task import TaskWorkload
    from subsetsearch.stats import EnsembleStats

    pool = 12_000 if quick else None
    config = parse_config(
        {
            "name": "scale",
            "data": {"dataset": "fashion_mnist", "limit": pool},
            "model": {"name": "cnn_small", "width": 16},
            "train": {"epochs": 8},
            "ensemble": {"kind": "checkpoints", "start": 1, "stop": 8},
            "search": {"scheme": "compress", "budgets": [0.5]},
        }
    )
    run_dir = DATA / ("checkpoints_quick" if quick else "checkpoints")
    driver = Search(config, run_dir)
    search = driver.task
    search.prepare()
    driver.claim_run_dir()
    n = len(search.pool)
    rows = np.arange(n)
    train_rows = np.random.default_rng(0).permutation(n)[: n // 10]  # the checkpoints: a tenth of the pool
    from subsetsearch.executors import TrainTask

    print(f"(b) training 8 checkpoints on {len(train_rows)} images", file=sys.stderr, flush=True)
    with LocalExecutor() as local:
        local.train(TaskWorkload(search), [TrainTask(0, 0, train_rows)])
    members = search.member_files(0)
    shards = score_shards(n)
    tasks = [ScoreTask(0, member.name, s, rows[shard]) for member in members for s, shard in enumerate(shards)]
    c = search.splits.num_classes

    def timed(executor, workload) -> tuple[float, EnsembleStats]:
        """Every task on ``executor``, each result merged as the run's driver merges it."""
        started = time.perf_counter()
        stats = EnsembleStats(n, c)
        executor.score(workload, tasks, lambda task, result: stats.merge(result.stats, index=task.rows))
        return time.perf_counter() - started, stats

    results: dict = {"pool": n, "members": len(members), "tasks": len(tasks)}
    local = LocalExecutor()
    workload = TaskWorkload(search)
    timed(local, workload)  # warm-up: torch's first calls
    seconds, reference = timed(local, workload)
    results["local"] = {"seconds": seconds, "threads": search.config.train.threads or os.cpu_count()}

    def same(stats: EnsembleStats) -> bool:
        return stats.equals(reference)

    for name, workers, cpus in (("ray_1_worker", 1, 2.0), ("ray_2_workers", 2, 1.0)):
        print(f"(b) {name}", file=sys.stderr, flush=True)
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR", _temp_dir=temp)
        init_seconds = time.perf_counter() - started
        executor = make_executor("ray", workers=workers, cpus_per_worker=cpus)
        remote = TaskWorkload(search)
        cold, stats_cold = timed(executor, remote)
        warm, stats_warm = timed(executor, remote)
        executor.close()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        results[name] = {
            "workers": workers,
            "cpus_per_worker": cpus,
            "ray_init_seconds": init_seconds,
            "cold_seconds": cold + init_seconds,
            "warm_seconds": warm,
            "cold_ratio_to_local": (cold + init_seconds) / seconds,
            "warm_ratio_to_local": warm / seconds,
            "bit_identical_to_local": same(stats_cold) and same(stats_warm),
        }
    results["images_per_s_local"] = n * len(members) / seconds
    return results


# ------------------------------------------------------------------------------------- part c


def part_c(a: dict, b: dict, gpu_images_per_s: float, gpus: int) -> dict:
    """The paper's ImageNet scoring on ``gpus`` GPUs, from the measured figures and one stated rate."""
    m, n = PAPER["num_members"], PAPER["num_samples"]
    inference = m * n / (gpus * gpu_images_per_s)
    # statistics: (a)'s per-member cost at this N, split across the nodes' CPUs (one shard of rows a node)
    statistics = max(a["seconds_per_member"], a["read_floor_seconds_per_member"]) * m / gpus * (n / a["num_samples"])
    one = b["ray_1_worker"]  # the same resources as the local executor: Ray's own cost
    # at least 1: a worker cannot make a GPU infer faster than a local process (a warm worker measured
    # faster than the local pass on the CPU says more about the driver process than about Ray)
    overhead = max(1.0, one["warm_ratio_to_local"])
    start = one["cold_seconds"] - one["warm_seconds"]
    return {
        "members": m,
        "num_samples": n,
        "gpus": gpus,
        "assumed_gpu_images_per_s": gpu_images_per_s,
        "inference_seconds": inference,
        "statistics_seconds_on_the_nodes_cpus": statistics,
        "ray_overhead_ratio_measured": one["warm_ratio_to_local"],
        "ray_overhead_ratio_applied": overhead,
        "ray_start_seconds_measured": start,
        "driver_seconds_measured": a["fixed_seconds"],
        "total_seconds": max(inference, statistics) * overhead + start + a["fixed_seconds"],
        "how": (
            "inference = M*N / (GPUs * rate, not measured here); statistics = (a)'s seconds per member "
            "(or its read floor, the larger) * M / GPUs (each node accumulates its shard of rows while its GPU "
            "infers, so the slower of the two counts); times (b)'s warm Ray-with-one-worker / local ratio (Ray's "
            "cost on the same resources), at least 1; plus (b)'s cold start (Ray, workers, data) and (a)'s fixed "
            "cost (scores, top-k, tables) once."
        ),
    }


# --------------------------------------------------------------------------------------- main


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "a" in results:
        a = results["a"]
        ms = np.array([4, 8, 100])
        measured = [a["runs"]["4"]["seconds"], a["runs"]["8"]["seconds"]]
        axes[0].plot([4, 8], measured, "o", color="C0", label="measured (score --state DIR)")
        line = a["fixed_seconds"] + a["seconds_per_member"] * ms
        axes[0].plot(ms, line, "-", color="C0", alpha=0.5, label="t = a + b·M")
        axes[0].plot(
            [100],
            [a["extrapolated_m100_seconds"]],
            "x",
            color="C3",
            ms=9,
            label="M = 100: the line, or the read floor if slower",
        )
        floor = [a["runs"]["4"]["io_floor_seconds"], a["runs"]["8"]["io_floor_seconds"]]
        axes[0].plot([4, 8], floor, "s", color="C2", label="I/O floor (read members + write stats)")
        axes[0].set_xscale("log")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("members M")
        axes[0].set_ylabel("seconds")
        peak = max(r["peak_rss_gib"] for r in a["runs"].values())
        axes[0].set_title(f"(a) N={a['num_samples']:,}, C={a['num_classes']}: peak RSS {peak:.2f} GiB")
        axes[0].legend(fontsize=8)
    if "b" in results:
        b = results["b"]
        names = ["local", "ray_1_worker", "ray_2_workers"]
        warm = [b["local"]["seconds"], b["ray_1_worker"]["warm_seconds"], b["ray_2_workers"]["warm_seconds"]]
        cold = [b["local"]["seconds"], b["ray_1_worker"]["cold_seconds"], b["ray_2_workers"]["cold_seconds"]]
        x = np.arange(3)
        axes[1].bar(x - 0.2, cold, 0.4, label="cold (incl. Ray start, workers, data)")
        axes[1].bar(x + 0.2, warm, 0.4, label="warm")
        axes[1].set_xticks(x, ["local", "Ray, 1 worker", "Ray, 2 workers"])
        axes[1].set_ylabel("seconds")
        axes[1].set_title(f"(b) {b['members']} checkpoints x {b['pool']:,} images")
        axes[1].legend(fontsize=8)
        del names
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="abc", help="which parts: any of a, b, c")
    parser.add_argument("--quick", action="store_true", help="a smoke run at small sizes")
    parser.add_argument("--gpu-images-per-s", type=float, default=3000.0, help="(c): one GPU's ResNet-18 rate")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    out = RESULTS / ("scale_quick.json" if args.quick else "scale.json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    command = ".venv/bin/python benchmarks/scale.py" + (" --quick" if args.quick else "") + f" --parts {args.parts}"
    results.pop("command", None)
    if "a" in args.parts:
        results["a"] = {**part_a(args.quick), "command": command}
    if "b" in args.parts:
        results["b"] = {**part_b(args.quick), "command": command}
    if "a" in results:
        results["a"] = extrapolate_a(results["a"])
    if "c" in args.parts and "a" in results and "b" in results:
        results["c"] = {**part_c(results["a"], results["b"], args.gpu_images_per_s, args.gpus), "command": command}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in results.items() if k in ("a", "b", "c")}, indent=1))


if __name__ == "__main__":
    main()
