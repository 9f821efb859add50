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
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_harness import Woollyd  # noqa: E402


def config(model, context=0, queue_depth=8):
    return (f"model: {model}\nshutdown_grace_seconds: 30\nengine:\n  context: {context}\n"
            f"limits:\n  queue_depth: {queue_depth}\n")


def event(notes, i):
    """Notification i as (arrival time, its text on one line)."""
    return notes.times[i], " | ".join(f"{k}={v}" for k, v in notes.messages[i].items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--model", default=os.path.join(SOURCE, "models", "stories260K.gguf"))
    ap.add_argument("--other-model", help="loaded by the second reload (default: --model again, "
                    "with another context, so that a new runtime is built)")
    ap.add_argument("-r", "--repeats", type=int, default=5)
    args = ap.parse_args()
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    d = Woollyd(woollyd, config(args.model), watchdog_usec=2000000)
    notes = d.notes
    ready = notes.wait_for(lambda m: m.get("READY") == "1")
    print(f"start -> READY=1: {(notes.times[ready] - d.started) * 1000:.0f} ms")

    same, new_model = [], []
    model, context = args.model, 0
    for r in range(args.repeats):
        for kind, out in (("same", same), ("model", new_model)):
            if kind == "same":  # limits only: the runtime stays
                d.write(config(model, context, queue_depth=8 + r + 1))
            else:  # a runtime of its own: the other model, or the same with another context
                model = args.other_model if args.other_model and model == args.model else args.model
                context = 256 + 64 * (r % 2)
                d.write(config(model, context))
            mark = len(notes.messages)
            t0 = time.monotonic()
            d.signal(signal.SIGHUP)
            i = d.wait_ready(notes.wait_for(lambda m: m.get("RELOADING") == "1", mark))
            out.append((notes.times[i] - t0) * 1000)
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
    code, _ = d.stop(timeout=120)
    stop_ms = (time.monotonic() - t0) * 1000
    last = None
    while sub.poll(500):
        last = sub.recv_multipart()[1].decode()
    print(f"SIGTERM with a stream running -> exit {code}: {stop_ms:.0f} ms; the stream's last "
          f"message: {last}")
    print("notify messages, in order (first 12 and last 8):")
    t_start = d.started
    events = [event(notes, i) for i in range(len(notes.messages))]
    shown = events[:12] + [(0, "...")] + events[-8:] if len(events) > 20 else events
    for t, text in shown:
        print(f"  {'' if t == 0 else f'{(t - t_start) * 1000:8.0f} ms'}  {text}")


if __name__ == "__main__":
    main()
