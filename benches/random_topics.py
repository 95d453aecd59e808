#!/usr/bin/env python3
"""Publishes to random topic names as fast as it can, over keep-alive
HTTP/1.1 connections to 127.0.0.1 (loopback only), and prints publishes/s.

    python3 benches/random_topics.py --port 8080 --seconds 10 --conns 8 --names 1000000

Every publish names a topic drawn at random from `--names` names, so with
`--max-topics` far below that, nearly every publish creates a topic and (once
the hub is full) retires one.
"""
import argparse
import asyncio
import random
import time


async def worker(port, names, deadline, counts, idx, rng):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.monotonic() < deadline:
        topic = "t%d" % rng.randrange(names)
        writer.write(
            (
                "POST /events/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx" % topic
            ).encode()
        )
        # Read the response head and body (Content-Length).
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if status != 201:
            raise SystemExit("status %d for %s" % (status, topic))
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        n += 1
    counts[idx] = n
    writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--names", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    counts = [0] * a.conns
    start = time.monotonic()
    deadline = start + a.seconds
    await asyncio.gather(
        *(
            worker(a.port, a.names, deadline, counts, i, random.Random(a.seed * 1000 + i))
            for i in range(a.conns)
        )
    )
    elapsed = time.monotonic() - start
    total = sum(counts)
    print("%d publishes in %.1f s: %.0f/s" % (total, elapsed, total / elapsed))


asyncio.run(main())
