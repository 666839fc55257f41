#!/usr/bin/env python3
"""Load and fault test of `ridgeline serve` (cpu executor, tiny model), loopback only.

  serve_fault_test.py RIDGELINE_BINARY [--streams 1000] [--abusive 10000]

Starts the server, then:
  1. opens --streams concurrent streaming completions and requires every one to end with
     [DONE] and its usage (this is the warm-up: its RSS after them is the reference);
  2. sends --abusive malformed or abusive requests, several at a time: bad JSON, bad parameters,
     unknown routes and methods, bodies over the limit, headers over the limit, garbage request
     lines, slowloris clients (headers sent a byte at a time, then abandoned), clients that go
     away before the answer or in the middle of a stream;
  3. checks the server still serves the same greedy answer as before, holds zero KV blocks at
     idle (/metrics), and that its RSS is within 16 MiB of its value after warm-up.
Exits 1 with one line per failed check.
"""
import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

HOST = "127.0.0.1"
failures = []


def check(name, ok, detail=""):
    print(("ok: " if ok else "FAIL: ") + name + ("" if ok else " " + detail), flush=True)
    if not ok:
        failures.append(name)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


async def exchange(port, raw, read=True, timeout=60.0):
    """Sends raw bytes; returns (status, headers, body bytes) or (0, '', b'') when cut."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw)
        await writer.drain()
        if not read:
            return 0, "", b""
        data = await asyncio.wait_for(reader.read(-1), timeout)
    except (ConnectionError, asyncio.IncompleteReadError):
        return 0, "", b""
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not m:
        return 0, "", b""
    headers = head.decode("latin-1")
    if "transfer-encoding: chunked" in headers.lower():
        out, p = b"", 0
        while True:
            eol = body.find(b"\r\n", p)
            if eol < 0:
                break
            n = int(body[p:eol], 16)
            if n == 0:
                break
            out += body[eol + 2: eol + 2 + n]
            p = eol + 4 + n
        body = out
    return int(m.group(1)), headers, body


def post(path, body, extra=""):
    data = body if isinstance(body, bytes) else body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n"
            ).encode() + data


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def metric(port, name):
    status, _, body = await exchange(port, get("/metrics"))
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


async def stream_one(port, i):
    body = json.dumps({"prompt": f"stream {i}", "max_tokens": 4, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}})
    status, _, data = await exchange(port, post("/v1/completions", body), timeout=300)
    text = data.decode(errors="replace")
    events = [e[6:] for e in text.split("\n\n") if e.startswith("data: ")]
    usage = [json.loads(e)["usage"] for e in events[:-1] if '"usage"' in e]
    return status == 200 and events and events[-1] == "[DONE]" and usage and \
        usage[0]["completion_tokens"] == 4


async def abusive_one(port, i, rng, read_timeout):
    kind = i % 12
    if kind == 0:  # malformed JSON
        s, _, b = await exchange(port, post("/v1/completions", "{\"prompt\": \"x\", " + "[" * rng.randint(1, 50)))
        return s == 400 and b"invalid_request_error" in b
    if kind == 1:  # bad parameters
        bad = rng.choice([{"prompt": "x", "temperature": -1}, {"prompt": "x", "n": 3},
                          {"prompt": 5}, {"messages": "no"}, {"prompt": "x", "max_tokens": -4},
                          {"prompt": [1, 2, 99999999]}, {"prompt": "x", "stop": [1, 2]}])
        s, _, b = await exchange(port, post("/v1/completions", json.dumps(bad)))
        return s == 400 and b"\"error\"" in b
    if kind == 2:  # unknown route, wrong method
        s1, _, _ = await exchange(port, get(f"/v2/nothing/{i}"))
        s2, _, _ = await exchange(port, get("/v1/chat/completions"))
        return s1 == 404 and s2 == 405
    if kind == 3:  # body over the limit (declared)
        s, _, _ = await exchange(port, post("/v1/completions", b"x" * 10, "")
                                 .replace(b"Content-Length: 10", b"Content-Length: 99999999"))
        return s in (0, 413)
    if kind == 4:  # body over the limit (sent)
        big = json.dumps({"prompt": "y" * (5 << 20)})
        s, _, _ = await exchange(port, post("/v1/completions", big))
        return s in (0, 413)
    if kind == 5:  # headers over the limit
        raw = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * (64 << 10) + b"\r\n\r\n"
        s, _, _ = await exchange(port, raw)
        return s in (0, 400, 413, 431)
    if kind == 6:  # garbage request line
        s, _, _ = await exchange(port, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n")
        return s in (0, 400, 404, 405, 501)
    if kind == 7:  # slowloris: a few bytes of headers, slowly, then abandoned
        reader, writer = await asyncio.open_connection(HOST, port)
        for ch in b"POST /v1/completions HTTP/1.1\r\nHost":
            writer.write(bytes([ch]))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.close()
        return True
    if kind == 8:  # gone before the answer
        await exchange(port, post("/v1/completions", json.dumps({"prompt": "bye", "max_tokens": 50,
                                                                 "ignore_eos": True})), read=False)
        return True
    if kind == 9:  # gone in the middle of a stream
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(post("/v1/completions", json.dumps({"prompt": "mid", "max_tokens": 300,
                                                         "ignore_eos": True, "stream": True})))
        await writer.drain()
        try:
            await asyncio.wait_for(reader.readuntil(b"data: "), 60)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()
        return True
    if kind == 10:  # half a body, then gone
        raw = post("/v1/completions", json.dumps({"prompt": "half"}))
        await exchange(port, raw[: len(raw) - 5], read=False)
        return True
    # kind 11: a valid request with a huge number in it, and a chat with a bad content part
    s1, _, _ = await exchange(port, post("/v1/completions", '{"prompt":"x","max_tokens":1e400}'))
    s2, _, _ = await exchange(port, post("/v1/chat/completions",
                                         json.dumps({"messages": [{"role": "user", "content": [{"type": "image"}]}]})))
    return s1 == 400 and s2 == 400


async def main_async(port, pid, args):
    greedy = json.dumps({"prompt": "the same answer", "max_tokens": 24, "temperature": 0,
                         "ignore_eos": True})
    s, _, before = await exchange(port, post("/v1/completions", greedy))
    check("warm-up answer", s == 200, before[:200])
    t0 = time.monotonic()
    results = await asyncio.gather(*(stream_one(port, i) for i in range(args.streams)))
    check(f"{args.streams} concurrent streams all ended with their usage and [DONE]",
          all(results), f"({results.count(False)} did not) ")
    print(f"  {args.streams} streams in {time.monotonic() - t0:.1f} s")
    # Warmed up: the server has held its peak of connections, requests and batch once.
    await asyncio.sleep(0.5)
    rss_warm = rss_bytes(pid)

    rng = random.Random(7)
    sem = asyncio.Semaphore(64)
    bad = []

    async def one(i):
        async with sem:
            try:
                ok = await abusive_one(port, i, rng, args.read_timeout)
            except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                ok = i % 12 in (3, 4, 5, 6, 7, 8, 9, 10)  # the server may close on these
            if not ok:
                bad.append(i % 12)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.abusive)))
    check(f"{args.abusive} abusive requests answered as documented", not bad,
          f"(wrong answers by kind: {sorted(set(bad))}, {len(bad)} in all)")
    print(f"  {args.abusive} abusive requests in {time.monotonic() - t0:.1f} s")

    # Idle again: abandoned streams were cancelled, slow clients timed out.
    used = -1
    for _ in range(200):
        await asyncio.sleep(0.05)
        used = await metric(port, 'ridgeline_kv_cache_blocks{state="used"}')
        if used == 0:
            break
    check("zero KV blocks used at idle", used == 0, f"(used {used})")
    s, _, after = await exchange(port, post("/v1/completions", greedy))
    check("the same greedy answer after the abuse", s == 200 and
          json.loads(after)["choices"][0]["text"] == json.loads(before)["choices"][0]["text"])
    await asyncio.sleep(args.read_timeout + 1)  # slowloris connections have timed out
    rss_after = rss_bytes(pid)
    growth = (rss_after - rss_warm) / 2**20
    check("RSS within 16 MiB of its value after warm-up", growth <= 16,
          f"({rss_warm / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB)")
    print(f"  RSS after warm-up {rss_warm / 2**20:.1f} MiB, after the test {rss_after / 2**20:.1f} MiB "
          f"({growth:+.1f} MiB)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--abusive", type=int, default=10000)
    ap.add_argument("--read-timeout", type=int, default=2)
    args = ap.parse_args()
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"serve_fault_{os.getpid()}.log"), "w+")
    proc = subprocess.Popen([args.binary, "serve", "--model", "tiny-gpu", "--cpu", "--address",
                             f"{HOST}:0", "--read-timeout", str(args.read_timeout),
                             "--max-waiting", "4096", "--kv-blocks", "4096"], stderr=log)
    port = None
    for _ in range(300):
        log.seek(0)
        m = re.search(r"listening on http://[\d.]+:(\d+)", log.read())
        if m:
            port = int(m.group(1))
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if port is None:
        log.seek(0)
        print("FAIL: the server did not start\n" + log.read())
        sys.exit(1)
    try:
        asyncio.run(main_async(port, proc.pid, args))
        check("the server is still running", proc.poll() is None)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append("stop")
    check("the server stopped cleanly", proc.returncode == 0, f"(exit {proc.returncode})")
    log.seek(0)
    tail = log.read().splitlines()[-5:]
    print("server log (last lines):\n  " + "\n  ".join(tail))
    log.close()
    os.unlink(log.name)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
