#!/usr/bin/python3
"""service_bench.py — woollyd's life under systemd, timed: the notify messages it sends (on a
NOTIFY_SOCKET of this script's, with WATCHDOG_USEC set), how long a SIGHUP reload takes
(signal -> READY=1; with the same model, and with a new model loaded beside the old one), and
how long SIGTERM takes with a stream running (signal -> exit, the stream finishing in its grace
period). A benchmark, not a test: it prints what it saw and never fails on figures.

usage: service_bench.py [--build DIR] [--model FILE] [--other-model FILE] [-r REPEATS]
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client  # noqa: E402


class Daemon:
    def __init__(self, woollyd, tmp, model):
        self.tmp, self.config = tmp, os.path.join(tmp, "w.yaml")
        self.requests, self.tokens = f"ipc://{tmp}/req", f"ipc://{tmp}/tok"
        self.write(model)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(tmp, "notify"))
        self.events, self.cond = [], threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify"), WATCHDOG_USEC="2000000")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([woollyd, "--config", self.config], env=env,
                                     stderr=subprocess.DEVNULL)
        self.wait_for("READY=1")
        self.client = Client(self.requests, self.tokens, timeout=60)

    def write(self, model, context=0, queue_depth=8):
        with open(self.config, "w") as f:
            f.write(f"model: {model}\nrequests: {self.requests}\ntokens: {self.tokens}\n"
                    f"shutdown_grace_seconds: 30\nengine:\n  context: {context}\n"
                    f"limits:\n  queue_depth: {queue_depth}\n")

    def read(self):
        while True:
            data = self.sock.recv(65536).decode()
            with self.cond:
                self.events.append((time.monotonic(), data.replace("\n", " | ")))
                self.cond.notify_all()

    def wait_for(self, text, start=0):
        with self.cond:
            while True:
                for i in range(start, len(self.events)):
                    if text in self.events[i][1]:
                        return i
                self.cond.wait(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--model", default=os.path.join(SOURCE, "models", "stories260K.gguf"))
    ap.add_argument("--other-model", help="loaded by the second reload (default: --model again, "
                    "with another context, so that a new runtime is built)")
    ap.add_argument("-r", "--repeats", type=int, default=5)
    args = ap.parse_args()
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    tmp = tempfile.mkdtemp(prefix="woolly-service-bench-")
    d = Daemon(woollyd, tmp, args.model)
    print(f"start -> READY=1: {(d.events[d.wait_for('READY=1')][0] - d.started) * 1000:.0f} ms")

    same, new_model = [], []
    model, context = args.model, 0
    for r in range(args.repeats):
        for kind, out in (("same", same), ("model", new_model)):
            if kind == "same":  # limits only: the runtime stays
                d.write(model, context, queue_depth=8 + r + 1)
            else:  # a runtime of its own: the other model, or the same with another context
                model = args.other_model if args.other_model and model == args.model else args.model
                context = 256 + 64 * (r % 2)
                d.write(model, context)
            mark = len(d.events)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGHUP)
            i = d.wait_for("READY=1", d.wait_for("RELOADING=1", mark))
            out.append((d.events[i][0] - t0) * 1000)
    print(f"SIGHUP -> READY=1, same runtime (limits and settings): "
          f"median {statistics.median(same):.1f} ms (min {min(same):.1f}, max {max(same):.1f}), {len(same)} runs")
    print(f"SIGHUP -> READY=1, a new runtime loaded beside the old: "
          f"median {statistics.median(new_model):.1f} ms (min {min(new_model):.1f}, max {max(new_model):.1f})")

    # SIGTERM with a stream running: it finishes within the grace period, then the exit.
    sub = d.client.subscribe("long")
    time.sleep(0.3)
    assert d.client.call({"op": "generate", "id": "long", "prompt": "Once upon a time",
                          "max_tokens": 400, "temperature": 0})["ok"]
    sub.recv_multipart()  # it is running
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(timeout=120)
    stop_ms = (time.monotonic() - t0) * 1000
    last = None
    while sub.poll(500):
        last = sub.recv_multipart()[1].decode()
    print(f"SIGTERM with a stream running -> exit {code}: {stop_ms:.0f} ms; the stream's last "
          f"message: {last}")
    print("notify messages, in order (first 12 and last 8):")
    t_start = d.started
    shown = d.events[:12] + [(0, "...")] + d.events[-8:] if len(d.events) > 20 else d.events
    for t, text in shown:
        print(f"  {'' if t == 0 else f'{(t - t_start) * 1000:8.0f} ms'}  {text}")


if __name__ == "__main__":
    main()
