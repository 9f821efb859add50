#!/usr/bin/python3
"""reliability.py — woollyd under load and faults, measured (issue 11's reliability checks).
A benchmark script, not a test: it prints what it saw, with counts, and exits 1 only when a
check it makes fails outright (a stream incomplete, a duplicate, a crash, a hang).

  load        32 clients x 10 requests (32 tokens each), 4 subscribers on the whole `tok.`
              prefix: every stream complete and gap-free at every subscriber (gaps filled from
              replay, as a client does), no duplicate seq; every request answered ok or busy,
              a busy one retried until served.
  slow        a SUB socket that connects and never reads, beside a normal stream: the stream's
              speed with and without it, and how much the daemon's memory grew.
  soak        1000 sequential requests: resident memory, open descriptors and threads after
              warm-up (100 requests) and at the end.
  crash       kill -9 mid-stream, restart on the same endpoints: new requests are served, and
              the client that was waiting ends with a timeout message and a non-zero exit.
  badmodel    a missing, a truncated and a corrupt model: one clear line each, exit non-zero.
  curve       a listed CurveZMQ client's stream speed against the same daemon without CURVE.

usage: reliability.py [--build DIR] [--only NAME[,NAME]]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client, WoollyError  # noqa: E402
from woolly_harness import TMP, Woollyd  # noqa: E402

BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")
FAILURES = []


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"  CHECK FAILED: {what}")


def proc_figures(pid):
    """Resident memory (KiB), open descriptors and threads of a process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def Daemon(woollyd, config="", model=BUNDLED, name=None, keys=None):
    """A woollyd of this script's (tests/clients/woolly_harness.py); the same name again is a
    restart on the same endpoints."""
    return Woollyd(woollyd, config, model=model, name=name, keys=keys, wait=120)


def load_test(woollyd):
    print("load: 32 clients x 10 requests of 32 tokens, 4 subscribers on 'tok.'")
    d = Daemon(woollyd, "engine:\n  max_sessions: 4\nlimits:\n  queue_depth: 8\n", name="load")
    ctx = zmq.Context.instance()
    subscribers, received = [], []
    stop = threading.Event()
    for _ in range(4):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)  # this side keeps everything; the daemon's HWM still drops
        sub.connect(d.tokens)
        sub.setsockopt(zmq.SUBSCRIBE, b"tok.")
        subscribers.append(sub)
        received.append({})
    time.sleep(0.5)  # the subscriptions reach the publisher

    def listen(i):
        sub = subscribers[i]
        while not stop.is_set():
            if sub.poll(100):
                msg = json.loads(sub.recv_multipart()[1])
                received[i].setdefault(msg["id"], []).append(msg)

    listeners = [threading.Thread(target=listen, args=(i,)) for i in range(4)]
    for t in listeners:
        t.start()
    counts = {"ok": 0, "busy": 0, "other": 0}
    lock = threading.Lock()
    ids = []

    def client_work(c):
        client = d.new_client(timeout=60)
        for r in range(10):
            sid = f"c{c}r{r}"
            while True:
                reply = client.call({"op": "generate", "id": sid, "prompt": "Once upon a time",
                                     "max_tokens": 32, "temperature": 0})
                with lock:
                    if reply["ok"]:
                        counts["ok"] += 1
                        ids.append(sid)
                    elif reply["error"]["code"] == "busy":
                        counts["busy"] += 1
                    else:
                        counts["other"] += 1
                if reply["ok"] or reply["error"]["code"] != "busy":
                    break
                time.sleep(0.02)  # a client's pause before retrying a busy daemon

    start = time.monotonic()
    workers = [threading.Thread(target=client_work, args=(c,)) for c in range(32)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # Until every stream has ended at the daemon (status: nothing running or queued).
    client = d.new_client(timeout=30)
    while True:
        st = client.call({"op": "status"})
        if st["sessions"]["running"] == 0 and st["sessions"]["queued"] == 0:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # the last messages reach the subscribers
    stop.set()
    for t in listeners:
        t.join()
    elapsed = time.monotonic() - start
    complete = duplicates = filled = 0
    for i in range(4):
        for sid in ids:
            msgs = received[i].get(sid, [])
            seqs = [m["seq"] for m in msgs]
            duplicates += len(seqs) - len(set(seqs))
            have = {m["seq"]: m for m in msgs}
            last = max(seqs) if seqs else -1
            if not msgs or not have[last].get("done") or len(have) != last + 1:
                reply = client.call({"op": "replay", "id": sid})
                if reply["ok"]:
                    for m in reply["messages"]:
                        if m["seq"] not in have:
                            have[m["seq"]] = m
                            filled += 1
            n = len(have)
            if n and all(s in have for s in range(n)) and have[n - 1].get("done"):
                complete += 1
    total = len(ids) * 4
    print(f"  {counts['ok']} requests ok, {counts['busy']} busy replies (each retried until served), "
          f"{counts['other']} other; {elapsed:.1f} s")
    print(f"  streams complete and gap-free at the subscribers: {complete} of {total} "
          f"({filled} messages filled from replay); duplicate seq: {duplicates}")
    check(counts["ok"] == 320 and counts["other"] == 0, "every request served")
    check(complete == total, "every stream complete at every subscriber")
    check(duplicates == 0, "no duplicate seq")
    for s in subscribers:
        s.close()
    d.stop()


def slow_consumer_test(woollyd, model):
    print("slow: a SUB that never reads, beside a normal stream")
    d = Daemon(woollyd, "", model=model, name="slow")
    client = d.new_client(timeout=60)

    def speed():
        msgs = list(client.generate("Once upon a time", max_tokens=200, temperature=0))
        return msgs[-1]["usage"]["tokens_per_second"]

    speed()  # warm-up
    # Pairs, alone then beside a slow SUB whose queue was filled first, so that drift on this
    # machine falls on both sides alike.
    ctx = zmq.Context.instance()
    alone, beside = [], []
    rss_before = proc_figures(d.proc.pid)[0]
    for _ in range(5):
        alone.append(speed())
        slow = ctx.socket(zmq.SUB)
        slow.setsockopt(zmq.RCVHWM, 1)
        slow.setsockopt(zmq.LINGER, 0)
        slow.connect(d.tokens)
        slow.setsockopt(zmq.SUBSCRIBE, b"")
        time.sleep(0.3)
        for _ in range(6):  # more messages than its high-water mark holds
            speed()
        beside.append(speed())
        rss_after = proc_figures(d.proc.pid)[0]
        slow.close()
    ratio = statistics.median(beside) / statistics.median(alone)
    print(f"  stream speed alone: median {statistics.median(alone):.0f} t/s (min {min(alone):.0f}, max {max(alone):.0f}); "
          f"beside a SUB that never reads: median {statistics.median(beside):.0f} t/s "
          f"(min {min(beside):.0f}, max {max(beside):.0f}): ratio {ratio:.2f}")
    print(f"  daemon RSS {rss_before / 1024:.1f} MiB before the slow SUBs, {rss_after / 1024:.1f} MiB with "
          f"the last one full ({(rss_after - rss_before) / 1024:+.1f} MiB)")
    d.stop()
    return ratio


def soak_test(woollyd):
    print("soak: 1000 sequential requests")
    d = Daemon(woollyd, "", name="soak")
    client = d.new_client(timeout=30)
    before = None
    start = time.monotonic()
    for i in range(1000):
        msgs = list(client.generate("Once upon a time", max_tokens=16, temperature=0))
        check(msgs[-1].get("done"), f"request {i} finished")
        if i == 99:
            time.sleep(0.2)
            before = proc_figures(d.proc.pid)
    time.sleep(0.2)
    after = proc_figures(d.proc.pid)
    print(f"  after 100 requests: RSS {before[0] / 1024:.1f} MiB, {before[1]} descriptors, {before[2]} threads")
    print(f"  after 1000 requests: RSS {after[0] / 1024:.1f} MiB, {after[1]} descriptors, {after[2]} threads "
          f"({(after[0] - before[0]) / 1024:+.2f} MiB); {time.monotonic() - start:.1f} s")
    check(after[0] - before[0] < 5 * 1024, "RSS grew less than 5 MB after warm-up")
    check(after[1:] == before[1:], "the same descriptors and threads")
    d.stop()


def crash_test(woollyd, woolly, model):
    print("crash: kill -9 mid-stream, then a restart on the same endpoints")
    d = Daemon(woollyd, "", model=model, name="crash")
    waiting = subprocess.Popen([woolly, "generate", "-p", "Once upon a time", "-n", "400", "--temp", "0",
                                "--requests", d.requests, "--tokens", d.tokens, "--timeout", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting.stdout.read(1)  # the first text is out: the stream runs
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    killed_at = time.monotonic()
    try:
        out, err = waiting.communicate(timeout=30)
        ended = time.monotonic() - killed_at
        print(f"  the waiting client: exit {waiting.returncode} after {ended:.1f} s: {err.decode().strip()}")
        check(waiting.returncode != 0 and "no reply" in err.decode(), "a clear timeout message, non-zero exit")
    except subprocess.TimeoutExpired:
        waiting.kill()
        check(False, "the waiting client ended (it hung)")
    again = Daemon(woollyd, "", model=model, name="crash")
    msgs = list(again.new_client(timeout=30).generate("Once upon a time", max_tokens=8, temperature=0))
    print(f"  restarted on the same endpoints: a new request finished ({msgs[-1]['finish_reason']})")
    check(msgs[-1].get("done"), "a new request is served after the restart")
    again.stop()


def bad_model_test(woollyd):
    print("badmodel: missing, truncated and corrupt models")
    with open(BUNDLED, "rb") as f:
        good = f.read()
    truncated = os.path.join(TMP, "truncated.gguf")
    with open(truncated, "wb") as f:
        f.write(good[:len(good) // 3])
    corrupt = os.path.join(TMP, "corrupt.gguf")
    bad = bytearray(good)
    bad[24:32] = (2 ** 40).to_bytes(8, "little")  # the first key's length: far past the file
    with open(corrupt, "wb") as f:
        f.write(bad)
    for name, path in (("missing", os.path.join(TMP, "none.gguf")), ("truncated", truncated), ("corrupt", corrupt)):
        out = subprocess.run([woollyd, "--model", path, "--requests", f"ipc://{TMP}/b-req",
                              "--tokens", f"ipc://{TMP}/b-tok"], capture_output=True, text=True, timeout=30)
        lines = [l for l in out.stderr.splitlines() if "cannot load the model" in l]
        print(f"  {name}: exit {out.returncode}: {lines[0] if lines else out.stderr.strip()}")
        check(out.returncode != 0 and len(lines) == 1, f"{name} model: one line, non-zero exit")


def curve_test(woollyd, woolly, model):
    print("curve: a listed client's stream speed, with CurveZMQ and without")
    keys = os.path.join(TMP, "keys")
    os.makedirs(keys, exist_ok=True)
    for name in ("server", "client"):
        subprocess.run([woolly, "keygen", "-o", os.path.join(keys, name)], check=True, capture_output=True)
    authorized = os.path.join(keys, "authorized_keys")
    with open(os.path.join(keys, "client.pub")) as f, open(authorized, "w") as out:
        out.write(f.read())
    security = (f"security:\n  curve_secret_key_file: {keys}/server.key\n"
                f"  authorized_keys_file: {authorized}\n")
    client_keys = {"server_key": os.path.join(keys, "server.pub"), "client_key": os.path.join(keys, "client.key")}
    plain = Daemon(woollyd, "", model=model, name="plain")
    curve = Daemon(woollyd, security, model=model, name="curve", keys=client_keys)

    def speed(d):
        msgs = list(d.new_client(timeout=60).generate("Once upon a time", max_tokens=200, temperature=0))
        return msgs[-1]["usage"]["tokens_per_second"]

    speed(plain), speed(curve)
    pairs = [(speed(plain), speed(curve)) for _ in range(5)]  # in turn: drift falls on both
    ratio = statistics.median(c / p for p, c in pairs)
    print(f"  plain: median {statistics.median(p for p, _ in pairs):.0f} t/s; CURVE: median "
          f"{statistics.median(c for _, c in pairs):.0f} t/s; ratio per pair, median {ratio:.2f} "
          f"(min {min(c / p for p, c in pairs):.2f}, max {max(c / p for p, c in pairs):.2f})")
    plain.stop()
    curve.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(SOURCE, "build"))
    parser.add_argument("--only", default="load,slow,soak,crash,badmodel,curve")
    args = parser.parse_args()
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    woolly = os.path.join(args.build, "tools", "woolly")
    parts = args.only.split(",")
    model = BUNDLED
    if "slow" in parts or "crash" in parts or "curve" in parts:
        # A model slow enough for a stream to be caught mid-way: stories-15m's shape.
        model = os.path.join(TMP, "stories-15m.gguf")
        subprocess.run([woolly, "synth", "--shape", "stories-15m", "--type", "q8_0", "-o", model],
                       check=True, capture_output=True)
    if "load" in parts:
        load_test(woollyd)
    if "slow" in parts:
        slow_consumer_test(woollyd, model)
    if "soak" in parts:
        soak_test(woollyd)
    if "crash" in parts:
        crash_test(woollyd, woolly, model)
    if "badmodel" in parts:
        bad_model_test(woollyd)
    if "curve" in parts:
        curve_test(woollyd, woolly, model)
    shutil.rmtree(TMP, ignore_errors=True)
    print("all checks held" if not FAILURES else f"{len(FAILURES)} checks failed: {FAILURES}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
