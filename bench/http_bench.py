#!/usr/bin/python3
"""http_bench.py — woollyd's HTTP API measured against its ZeroMQ ingress in the same run, each
figure from clients on this machine (tests/clients/woolly_harness.py starts the daemons):

  1. one greedy stream at a time, HTTP (curl -N) and ZeroMQ (woolly generate) in turn (A B A B):
     tokens/s at the client, and the CPU time per token of the threads each ingress adds
     (/proc: the HTTP actor and its I/O thread, against libzmq's I/O thread): what HTTP adds;
  2. the same with 64 concurrent streams of each;
  3. 1000 idle keep-alive connections and 256 SSE streams held: the daemon's RSS, threads and
     file descriptors before, during and after;
  4. a client that disconnects every 50 ms mid-stream while others stream, for 60 s: the same
     figures before and after, and what the daemon counted.

usage: http_bench.py BUILD_DIR [--rounds N] [--churn-seconds S]
"""
import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_harness import TMP, Woollyd  # noqa: E402

BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")


def spread(values, unit="", digits=1):
    v = sorted(values)
    f = f"{{:.{digits}f}}"
    return f"{f.format(statistics.median(v))}{unit} (min {f.format(v[0])}, max {f.format(v[-1])}, n={len(v)})"


def proc_figures(pid):
    """RSS (MiB), threads and open file descriptors of a process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return {"rss_mib": round(rss, 1), "threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def sse(port, body, path="/v1/completions"):
    """One SSE request over asyncio: (tokens seen as text chunks, seconds)."""
    t = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    await writer.drain()
    # Read in large pieces and counted at the end: the client's own work kept small (it shares
    # the machine with the daemon). Tokens: chunks with text, as the ZeroMQ side counts them.
    got = bytearray()
    while not got.endswith(b"data: [DONE]\n\n\r\n") and not got.endswith(b"0\r\n\r\n"):
        piece = await reader.read(65536)
        if not piece:
            break
        got += piece
    chunks = got.count(b"data: {") - got.count(b'"text":""')
    writer.close()
    return chunks, time.perf_counter() - t


def thread_cpu(pid, names):
    """CPU seconds of the process's threads with these names (the HTTP ingress's two, or
    libzmq's I/O thread)."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                on_cpu_ns = int(f.read().split()[0])  # nanoseconds, unlike stat's ticks
        except FileNotFoundError:
            continue
        if name in names:
            total += on_cpu_ns / 1e9
    return total


IO_THREADS = {True: ("woolly-http", "woolly-http-io"), False: ("ZMQbg/IO/0",)}


def native_streams(d, woolly, n, max_tokens, http):
    """n streams at once from native clients, n `curl -sN` or n `woolly generate`: (tokens,
    wall seconds, CPU seconds of the ingress's threads: HTTP's two, or libzmq's I/O thread)."""
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0,
                       "stream": True})
    url = f"http://127.0.0.1:{d.http_port}/v1/completions"
    cpu = thread_cpu(d.proc.pid, IO_THREADS[http])
    t = time.perf_counter()
    if http:
        procs = [subprocess.Popen(["curl", "-sN", url, "-d", body], stdout=subprocess.PIPE)
                 for _ in range(n)]
    else:
        procs = [subprocess.Popen([woolly, "generate", "--requests", d.requests, "--tokens", d.tokens,
                                   "-p", "Once upon a time", "-n", str(max_tokens), "--temp", "0",
                                   "--json"], stdout=subprocess.PIPE) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - t
    cpu = thread_cpu(d.proc.pid, IO_THREADS[http]) - cpu
    tokens = 0
    for out in outs:
        if http:
            tokens += out.count(b"data: {") - out.count(b'"text":""')
        else:
            tokens += sum(1 for line in out.splitlines() if b'"token"' in line and b'"text":""' not in line)
    return tokens, elapsed, cpu


def compare(d, woolly, n, rounds, max_tokens):
    """HTTP and ZeroMQ in turn (A B A B): tokens/s, and the ingress threads' CPU µs per token."""
    rows = {"http": ([], []), "zmq": ([], [])}
    ratio, added = [], []
    for _ in range(rounds):
        h_tok, h_s, h_cpu = native_streams(d, woolly, n, max_tokens, True)
        z_tok, z_s, z_cpu = native_streams(d, woolly, n, max_tokens, False)
        rows["http"][0].append(h_tok / h_s)
        rows["http"][1].append(h_cpu / h_tok * 1e6)
        rows["zmq"][0].append(z_tok / z_s)
        rows["zmq"][1].append(z_cpu / z_tok * 1e6)
        ratio.append((h_tok / h_s) / (z_tok / z_s))
        added.append(h_cpu / h_tok * 1e6 - z_cpu / z_tok * 1e6)
    return rows, ratio, added


def report(title, rows, ratio, added):
    print(title)
    print(f"HTTP/SSE (curl -N)        {spread(rows['http'][0], ' t/s', 0)}; "
          f"HTTP threads' CPU {spread(rows['http'][1], ' µs/token')}")
    print(f"ZeroMQ (woolly generate)  {spread(rows['zmq'][0], ' t/s', 0)}; "
          f"libzmq I/O thread's CPU {spread(rows['zmq'][1], ' µs/token')}")
    print(f"HTTP / ZeroMQ tokens/s, pair by pair: {spread(ratio, '', 3)}")
    print(f"CPU per token, HTTP's threads minus ZeroMQ's, pair by pair: {spread(added, ' µs')}")


def held(d, idle, streams):
    """3: idle keep-alive connections and SSE streams held open at once."""
    pid = d.proc.pid
    before = proc_figures(pid)

    async def hold():
        conns = []
        for _ in range(idle):
            r, w = await asyncio.open_connection("127.0.0.1", d.http_port)
            w.write(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
            await w.drain()
            await r.readuntil(b'{"status":"ok"}')
            conns.append((r, w))
        # Streams that last: followers of queued streams that start only when released.
        body = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "stream": True}
        tasks = [asyncio.create_task(sse(d.http_port, body)) for _ in range(streams)]
        await asyncio.sleep(1.0)
        during = proc_figures(pid)
        done = await asyncio.gather(*tasks)
        for _, w in conns:
            w.close()
        return during, sum(t for t, _ in done)
    during, tokens = asyncio.run(hold())
    time.sleep(1.5)
    after = proc_figures(pid)
    return before, during, after, tokens


def churn(d, seconds, port):
    """4: curl disconnecting every 50 ms from a long stream, while two clients stream."""
    pid = d.proc.pid
    before = proc_figures(pid)
    stop = time.monotonic() + seconds
    long = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0,
                       "stream": True})

    async def others():
        count = 0
        while time.monotonic() < stop:
            t, _ = await sse(port, {"prompt": "Once upon a time", "max_tokens": 60, "stream": True})
            count += t
        return count
    import threading
    streamed = []
    threads = [threading.Thread(target=lambda: streamed.append(asyncio.run(others()))) for _ in range(2)]
    for t in threads:
        t.start()
    cuts = 0
    while time.monotonic() < stop:
        subprocess.run(["curl", "-sN", "--max-time", "0.05", f"http://127.0.0.1:{port}/v1/completions",
                        "-d", long], capture_output=True)
        cuts += 1
    for t in threads:
        t.join()
    time.sleep(2)
    after = proc_figures(pid)
    status = d.status()
    return before, after, cuts, sum(streamed), status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--churn-seconds", type=float, default=60)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    woolly = os.path.join(args.build, "tools", "woolly")
    print(f"# woollyd HTTP against ZeroMQ, {os.cpu_count()} cores; bundled model ({BUNDLED})")

    config = "engine:\n  max_sessions: 64\nlimits:\n  queue_depth: 2048\n"
    d = Woollyd(woollyd, config, http=True, name="httpbench")
    try:
        report("\n## 1. One greedy stream of 480 tokens at a time (HTTP, ZeroMQ in turn)",
               *compare(d, woolly, 1, args.rounds, 480))
        report("\n## 2. 64 concurrent streams of 200 tokens (HTTP, ZeroMQ in turn)",
               *compare(d, woolly, 64, max(2, args.rounds // 2), 200))
    finally:
        d.stop()

    d = Woollyd(woollyd, "engine:\n  max_sessions: 4\nlimits:\n  queue_depth: 2048\n",
                http=True, name="httpheld")
    try:
        before, during, after, tokens = held(d, 1000, 256)
        print("\n## 3. 1000 idle keep-alive connections + 256 SSE streams (4 generating, the rest queued)")
        print("| | RSS MiB | threads | fds |\n| --- | --- | --- | --- |")
        for name, f in (("before", before), ("during", during), ("after", after)):
            print(f"| {name} | {f['rss_mib']} | {f['threads']} | {f['fds']} |")
        print(f"({tokens} tokens streamed to the 256)")
    finally:
        d.stop()

    model = os.path.join(TMP, "tinyllama-q4_0.gguf")
    subprocess.run([woolly, "synth", "--shape", "tinyllama-1.1b", "--type", "q4_0", "-o", model],
                   check=True, capture_output=True)
    d = Woollyd(woollyd, "engine:\n  max_sessions: 4\n  context: 512\nlimits:\n  queue_depth: 64\n",
                model=model, http=True, name="httpchurn", wait=300)
    try:
        before, after, cuts, streamed, status = churn(d, args.churn_seconds, d.http_port)
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{d.http_port}/metrics"],
                                 capture_output=True, text=True).stdout
        cancelled = [l for l in metrics.splitlines()
                     if l.startswith('woolly_requests_total{source="http",finish_reason="cancelled"}')]
        print(f"\n## 4. curl disconnecting every 50 ms for {args.churn_seconds:.0f} s while 2 clients "
              "stream (tinyllama-shaped synth, Q4_0)")
        print("| | RSS MiB | threads | fds |\n| --- | --- | --- | --- |")
        for name, f in (("before", before), ("after", after)):
            print(f"| {name} | {f['rss_mib']} | {f['threads']} | {f['fds']} |")
        print(f"{cuts} disconnects; {streamed} tokens to the 2 others; after: "
              f"{status['sessions']['running']} running, {status['sessions']['queued']} queued, "
              f"{status['cache']['kv_slots_in_use']} KV slots in use; {cancelled[0] if cancelled else ''}")
    finally:
        d.stop()


if __name__ == "__main__":
    main()
