#!/usr/bin/env python3
"""A Python client of the Rust `pickle_service` example, standard library only.

It connects with multiprocessing.connection.Client and the shared authkey
(from PICKLE_AUTHKEY), sends work as plain dicts with send(), reads dict
results with recv(), and checks each result against the same computation
done here in Python.

    export PICKLE_AUTHKEY=...            # the key the service was started with
    python3 examples/python/pickle_client.py 127.0.0.1:7100
    python3 examples/python/pickle_client.py unix:/tmp/service.sock
"""

import os
import sys
from multiprocessing.connection import Client


def address(text):
    if text.startswith("unix:"):
        return text[len("unix:"):]
    if text.startswith("tcp:"):
        text = text[len("tcp:"):]
    host, port = text.rsplit(":", 1)
    return (host, int(port))


def primes_below(n):
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: pickle_client.py HOST:PORT | unix:PATH")
    key = os.environ.get("PICKLE_AUTHKEY")
    if not key:
        sys.exit("set PICKLE_AUTHKEY to the service's authkey")
    values = [3, 1.5, -2, 10 ** 6, 0.25]
    jobs = [
        {"op": "stats", "id": 1, "values": values},
        {"op": "primes_below", "id": 2, "n": 100_000},
        {"op": "stats", "id": 3, "values": []},
        {"op": "divide", "id": 4},                  # no such op: an error reply
        {"op": "primes_below", "id": 5, "n": 2 ** 70},  # does not fit a u64
    ]
    expected = {
        1: {"id": 1, "count": len(values), "mean": sum(values) / len(values),
            "min": min(values), "max": max(values)},
        2: {"id": 2, "count": primes_below(100_000)},
        3: {"id": 3, "count": 0, "mean": None, "min": None, "max": None},
    }
    with Client(address(sys.argv[1]), authkey=key.encode()) as conn:
        for job in jobs:
            conn.send(job)
            result = conn.recv()
            print("job", job["id"], job["op"], "->", result)
            if job["id"] in expected:
                assert result == expected[job["id"]], (result, expected[job["id"]])
            else:
                assert set(result) == {"error"}, result
        conn.send(None)
    print("all results checked")


if __name__ == "__main__":
    main()
