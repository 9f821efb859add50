#!/usr/bin/python3
"""daemon_bench.py — tokens/s through woollyd (request sent -> final message seen by a
subscriber) against `woolly run` on the same model, prompt and token count, in the same run.

usage: daemon_bench.py [--build DIR] [--model FILE] [-n TOKENS] [-r REPEATS] [--sessions K]
A benchmark, not a test: it prints figures and never fails on them.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client  # noqa: E402

PROMPT = "Once upon a time"


def run_cli(woolly, model, n):
    out = subprocess.run([woolly, "run", "-m", model, "-p", PROMPT, "-n", str(n), "--temp", "0", "--json"],
                         capture_output=True, text=True, check=True)
    done = json.loads(out.stdout.splitlines()[-1])
    # The same span the daemon figure covers: prompt and generation.
    return done["n_generated"] / ((done["prompt_ms"] + done["generation_ms"]) / 1000)


def run_daemon_once(client, ctx, tokens, n, sessions):
    sub = ctx.socket(zmq.SUB)
    sub.connect(tokens)
    sub.setsockopt(zmq.SUBSCRIBE, b"tok.b")
    time.sleep(0.2)
    ids = [f"b{time.monotonic_ns()}x{k}" for k in range(sessions)]
    start = time.perf_counter()
    for stream_id in ids:
        reply = client.call({"op": "generate", "id": stream_id, "prompt": PROMPT, "max_tokens": n, "temperature": 0})
        assert reply["ok"], reply
    finished, generated = set(), 0
    while len(finished) < len(ids):
        _, payload = sub.recv_multipart()
        m = json.loads(payload)
        if m.get("done") and m["id"] in ids:
            finished.add(m["id"])
            generated += m["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - start
    sub.close()
    return generated / elapsed


def summary(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(SOURCE, "build"))
    p.add_argument("--model", default=os.path.join(SOURCE, "models", "stories260K.gguf"))
    p.add_argument("-n", type=int, default=256)
    p.add_argument("-r", type=int, default=5)
    p.add_argument("--sessions", type=int, default=4)
    args = p.parse_args()
    woolly = os.path.join(args.build, "tools", "woolly")
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    tmp = tempfile.mkdtemp(prefix="woolly-bench-")
    requests, tokens = f"ipc://{tmp}/req", f"ipc://{tmp}/tok"
    daemon = subprocess.Popen([woollyd, "--model", args.model, "--requests", requests, "--tokens", tokens],
                              stderr=subprocess.DEVNULL)
    try:
        client = Client(requests, tokens)
        for _ in range(100):
            try:
                if client.call({"op": "status"})["ok"]:
                    break
            except TimeoutError:
                time.sleep(0.05)
        ctx = zmq.Context.instance()
        run_cli(woolly, args.model, args.n)  # warm-up
        run_daemon_once(client, ctx, tokens, args.n, 1)
        cli, one, many = [], [], []
        for _ in range(args.r):  # interleaved, so that machine noise hits both alike
            cli.append(run_cli(woolly, args.model, args.n))
            one.append(run_daemon_once(client, ctx, tokens, args.n, 1))
            many.append(run_daemon_once(client, ctx, tokens, args.n, args.sessions))
        c, cs = summary(cli)
        o, os_ = summary(one)
        m, ms = summary(many)
        print(f"model {os.path.basename(args.model)}, {args.n} tokens, {args.r} repetitions (mean ± sd)")
        print(f"  woolly run (in-process)          {c:9.1f} ± {cs:6.1f} t/s")
        print(f"  woollyd, 1 stream                {o:9.1f} ± {os_:6.1f} t/s   ratio {o / c:.2f}x")
        print(f"  woollyd, {args.sessions} streams at once (total) {m:9.1f} ± {ms:6.1f} t/s   ratio {m / c:.2f}x")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)


if __name__ == "__main__":
    main()
