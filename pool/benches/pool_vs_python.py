"""CPython's side of pool_vs_python.rs: the same workloads with
multiprocessing.Pool (default start method), printed as `key: value` lines.
`overhead` (the default) runs the per-task and CPU-bound workloads, `data`
the map over 200 inputs of 4 MiB `bytes`."""

import multiprocessing as mp
import statistics
import sys
import time
import zlib

PROCESSES = 2
STARTUP_RUNS = 11
APPLY_TASKS = 30_000
IMAP_TASKS = 50_000
THROUGHPUT_RUNS = 5
CPU_INPUTS = 200
CPU_TASK = 0.005


def noop(x):
    return x


def spin(rounds):
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for _ in range(rounds):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x


def rounds_for(target):
    probe = 20_000
    began = time.perf_counter()
    spin(probe)
    per_round = (time.perf_counter() - began) / probe
    return int(target / per_round)


def ready_pool():
    pool = mp.Pool(PROCESSES)
    # Pool() returns before its workers run: wait until each has answered.
    pool.map(noop, range(PROCESSES), chunksize=1)
    return pool


BUFFERS = 200
BUFFER_BYTES = 4 << 20
DATA_RUNS = 3
INVERT = bytes(255 - i for i in range(256))


def checksum(data):
    # At C speed, touching every byte, as the Rust side's word sum does.
    return zlib.adler32(data)


def invert(data):
    return data.translate(INVERT)


def best_rate(pool, task, buffers):
    best = 0.0
    for _ in range(DATA_RUNS):
        began = time.perf_counter()
        outputs = pool.map(task, buffers)
        elapsed = time.perf_counter() - began
        assert len(outputs) == len(buffers)
        best = max(best, BUFFERS * BUFFER_BYTES / (1 << 20) / elapsed)
    return best


def data():
    buffers = [
        bytes((i * 7 + j) & 0xFF for j in range(256)) * (BUFFER_BYTES // 256)
        for i in range(BUFFERS)
    ]
    with mp.Pool(PROCESSES) as pool:
        pool.map(noop, range(10_000))
        print(f"bytes_checksum_mib_s: {best_rate(pool, checksum, buffers):.1f}")
        print(f"bytes_invert_mib_s: {best_rate(pool, invert, buffers):.1f}")


def overhead():
    startups = []
    for _ in range(STARTUP_RUNS):
        began = time.perf_counter()
        pool = ready_pool()
        startups.append((time.perf_counter() - began) * 1e3)
        pool.terminate()
        pool.join()
    print(f"startup_ms: {statistics.median(startups):.3f}")

    with mp.Pool(PROCESSES) as pool:
        pool.map(noop, range(10_000))
        # The best of a few runs of each, as on the Rust side.
        apply_rates, imap_rates = [], []
        for _ in range(THROUGHPUT_RUNS):
            began = time.perf_counter()
            handles = [pool.apply_async(noop, (x,)) for x in range(APPLY_TASKS)]
            for handle in handles:
                handle.get()
            apply_rates.append(APPLY_TASKS / (time.perf_counter() - began))

            began = time.perf_counter()
            for _ in pool.imap(noop, range(IMAP_TASKS), chunksize=1):
                pass
            imap_rates.append(IMAP_TASKS / (time.perf_counter() - began))
        print(f"apply_per_s: {max(apply_rates):.1f}")
        print(f"imap_per_s: {max(imap_rates):.1f}")

        rounds = rounds_for(CPU_TASK)
        inputs = [rounds] * CPU_INPUTS
        began = time.perf_counter()
        serial = [spin(r) for r in inputs]
        serial_time = time.perf_counter() - began
        began = time.perf_counter()
        parallel = pool.map(spin, inputs)
        parallel_time = time.perf_counter() - began
        assert serial == parallel
        print(f"map_speedup: {serial_time / parallel_time:.3f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["data"]:
        data()
    else:
        overhead()
