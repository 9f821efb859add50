#!/usr/bin/python3
"""daemon_bench.py — what woollyd serves to subscribers, measured at the subscriber, with the
same model, prompt length and token count in one run:

  concurrency  total t/s with 1, 2, 4 and 8 streams started at once (each stream's own t/s
               too), and time to first token, median and worst, against `woolly run` alone;
  long         a running stream's longest gap between two tokens while another session's
               1024-token prompt is read, against one step and one chunk measured in the
               same run;
  prefix       time to first token of a request whose first 512 tokens an earlier request
               had, against a cold one (engine.prefix_cache);
  overhead     microseconds the daemon adds per token: 1/end-to-end - 1/engine (woolly bench
               tgN with N the stream's tokens), one stream (run it on the bundled model).

usage: daemon_bench.py [--build DIR] [--model FILE] [-n 64] [-r 3] [--streams 1,2,4,8]
                       [--parts concurrency,long,prefix,overhead] [--prompt-chunk 128]
A benchmark, not a test: it prints figures and never fails on them.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_harness import Woollyd  # noqa: E402

# Distinct openings of about 16 tokens (llama-batched-bench's -npp 16), one per stream, so
# that no stream starts from another's prefix.
SUBJECTS = ["a little girl", "a brave knight", "an old fisherman", "a tiny robot", "a clever fox",
            "a sleepy bear", "a young painter", "a lost puppy"]


def prompt_for(i):
    return f"Once upon a time there was {SUBJECTS[i % len(SUBJECTS)]} who lived near the sea"


def spread(values):
    if not values:
        return "-"
    s = sorted(values)
    return f"{statistics.median(s):.1f} ({s[0]:.1f}-{s[-1]:.1f})"


class Daemon:
    """A woollyd (tests/clients/woolly_harness.py) with one subscriber on every stream."""

    def __init__(self, woollyd, model, config, name):
        self.woollyd = Woollyd(woollyd, config, model=model, name=name, client_timeout=120, wait=600)
        self.requests, self.tokens = self.woollyd.requests, self.woollyd.tokens
        self.client = self.woollyd.client
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.connect(self.tokens)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"tok.")
        time.sleep(0.3)  # the subscription reaches the daemon
        self.count = 0

    def start(self, prompt, n):
        self.count += 1
        stream_id = f"s{self.count}"
        sent = time.perf_counter()
        reply = self.client.call({"op": "generate", "id": stream_id, "prompt": prompt, "max_tokens": n,
                                  "temperature": 0})
        assert reply["ok"], reply
        return stream_id, sent

    def collect(self, ids, on_token=None):
        """Arrival times of each stream's token messages and its done message."""
        times = {i: [] for i in ids}
        done = {}
        while len(done) < len(ids):
            _, payload = self.sub.recv_multipart()
            now = time.perf_counter()
            m = json.loads(payload)
            if m["id"] not in times:
                continue
            if m.get("done"):
                done[m["id"]] = (now, m)
            else:
                times[m["id"]].append(now)
                if on_token:
                    on_token(m["id"], len(times[m["id"]]))
        return times, done

    def stop(self):
        self.sub.close()
        self.woollyd.stop()


def cli_rate(woolly, model, n):
    out = subprocess.run([woolly, "run", "-m", model, "-p", prompt_for(0), "-n", str(n), "--temp", "0", "--json"],
                         capture_output=True, text=True, check=True)
    done = json.loads(out.stdout.splitlines()[-1])
    return done["n_generated"] / ((done["prompt_ms"] + done["generation_ms"]) / 1000)


def concurrency(d, woolly, model, n, repeats, levels):
    print(f"\n## concurrent streams ({n} tokens each, ~16-token prompts, greedy; {repeats} runs; "
          "median (min-max))")
    cli = [cli_rate(woolly, model, n) for _ in range(repeats)]
    print(f"woolly run alone (prompt + generation): {spread(cli)} t/s")
    print("total: every token over request sent to last token; generation: tokens while all streams "
          "generate (after the last first token, up to the first last token), as llama-batched-bench's S_TG")
    print("| streams | total t/s | x one stream | generation t/s | x one stream | each stream's t/s | "
          "TTFT median ms | TTFT worst ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = gen_base = None
    for k in levels:
        totals, gens, per_stream, ttfts = [], [], [], []
        for _ in range(repeats):
            started = [d.start(prompt_for(i), n) for i in range(k)]
            times, done = d.collect([s for s, _ in started])
            first_sent = started[0][1]
            last_done = max(t for t, _ in done.values())
            totals.append(sum(len(v) for v in times.values()) / (last_done - first_sent))
            # While every stream generates: from the last first token to the first last token.
            begin = max(v[0] for v in times.values())
            end = min(v[-1] for v in times.values())
            if end > begin:
                gens.append(sum(1 for v in times.values() for x in v if begin < x <= end) / (end - begin))
            for stream_id, sent in started:
                t = times[stream_id]
                ttfts.append((t[0] - sent) * 1000)
                if len(t) > 1:
                    per_stream.append((len(t) - 1) / (t[-1] - t[0]))
        total, gen = statistics.median(totals), statistics.median(gens)
        base, gen_base = base or total, gen_base or gen
        print(f"| {k} | {spread(totals)} | {total / base:.2f} | {spread(gens)} | {gen / gen_base:.2f} | "
              f"{spread(per_stream)} | {statistics.median(ttfts):.0f} | {max(ttfts):.0f} |")


def long_prompt(d, chunk):
    context = d.client.call({"op": "status"})["model"]["context"]
    size = min(1024, context - 64)  # the bundled model's context is 512
    print(f"\n## a running stream's gaps while another session's {size}-token prompt is read "
          f"(prompt_chunk {chunk})")
    long_text = "Once" + " the" * (size - 2)  # BOS + size - 1 tokens with a SentencePiece vocabulary
    running, _ = d.start(prompt_for(1), 4000)
    marks = {}

    def on_token(stream_id, count):
        if stream_id == running and count == 24 and "long" not in marks:
            marks["long"] = d.start(long_text, 4)

    # Collect until the long one is done, then cancel the running one.
    times = {running: []}
    done = {}
    while True:
        _, payload = d.sub.recv_multipart()
        now = time.perf_counter()
        m = json.loads(payload)
        if m["id"] == running and not m.get("done"):
            times[running].append(now)
            on_token(running, len(times[running]))
        elif "long" in marks and m["id"] == marks["long"][0]:
            if m.get("done"):
                done["long"] = (now, m)
                break
            times.setdefault("long", []).append(now)
    d.client.call({"op": "cancel", "id": running})
    d.collect([running])
    long_id, long_sent = marks["long"]
    first_long = times["long"][0]
    t = times[running]
    before = [b - a for a, b in zip(t, t[1:]) if b <= long_sent]
    during = [b - a for a, b in zip(t, t[1:]) if a >= long_sent - 0.5 and b <= first_long + 0.001]
    prompt_tokens = done["long"][1]["usage"]["prompt_tokens"]
    chunks = -(-prompt_tokens // chunk)
    step = statistics.median(before)
    chunk_step = (first_long - long_sent) / chunks  # one step with a chunk in it
    longest = max(during)
    # The costliest chunk is the last (it attends to the most positions). Its time alone: the
    # prompt without its last chunk goes into the prefix cache, then the whole prompt computes
    # only the rest.
    def alone(text):
        sid, sent = d.start(text, 1)
        t, _ = d.collect([sid])
        return t[sid][0] - sent
    last_start = (prompt_tokens - 1) // chunk * chunk
    whole = alone("Then" + " the" * (size - 2))  # cold: no slot begins with "Then"
    head = "Once" + " the" * (last_start - 3) + " and"  # last_start tokens with BOS
    alone(head)
    samples = []
    for word in ("a", "it", "he"):  # a last chunk no slot holds yet
        samples.append(alone(head + f" {word}" * (size - last_start)))
    last_chunk = statistics.median(samples)
    print(f"long prompt: {prompt_tokens} tokens, first token after {(first_long - long_sent) * 1000:.0f} ms "
          f"beside the running stream ({chunks} chunks, {chunk_step * 1000:.1f} ms per chunk on average); "
          f"alone {whole * 1000:.0f} ms, its last chunk alone (prefix kept) {last_chunk * 1000:.1f} ms")
    print(f"running stream: one step {step * 1000:.2f} ms (median gap before the prompt); gaps during it (ms): "
          + " ".join(f"{g * 1000:.0f}" for g in during if g > 2 * step))
    print(f"longest gap {longest * 1000:.1f} ms = {longest / (last_chunk + step):.2f} x (the last chunk "
          f"alone + one step = {(last_chunk + step) * 1000:.1f} ms)")


def prefix(d, n_prefix_words, repeats):
    print(f"\n## time to first token with a ~{n_prefix_words}-token prefix kept, against cold "
          "(engine.prefix_cache)")
    hot, cold, reused = [], [], []
    for r in range(repeats):
        # Words that are one token in SentencePiece vocabularies, in an order of this run's own.
        rng = random.Random(r)
        common = ["the", "a", "and", "to", "was", "he", "she", "it", "in", "of"]
        shared = f"Story {r}:" + "".join(" " + rng.choice(common) for _ in range(n_prefix_words))
        other = f"Tale {r}:" + "".join(" " + rng.choice(common) for _ in range(n_prefix_words))
        for text in (shared + " The end.",):  # warm: the prefix goes into a slot
            sid, _ = d.start(text, 2)
            d.collect([sid])
        before = d.client.call({"op": "status"})["prefix_cache"]
        sid, sent = d.start(shared + " And then?", 2)
        times, done = d.collect([sid])
        hot.append((times[sid][0] - sent) * 1000)
        after = d.client.call({"op": "status"})["prefix_cache"]
        reused.append(after["reused_tokens"] - before["reused_tokens"])
        prompt_tokens = done[sid][1]["usage"]["prompt_tokens"]
        sid, sent = d.start(other + " And then?", 2)
        times, _ = d.collect([sid])
        cold.append((times[sid][0] - sent) * 1000)
    ratio = statistics.median(h / c for h, c in zip(hot, cold))
    print(f"prompt {prompt_tokens} tokens, {statistics.median(reused):.0f} reused from the cache")
    print(f"TTFT with the prefix kept {spread(hot)} ms, cold {spread(cold)} ms: ratio {ratio:.3f} (median of pairs)")


def overhead(d, woolly, model, repeats, n=256):
    print("\n## per-token cost of the daemon (one stream, greedy)")
    engine = []
    for threads in ("1", "2"):
        # As many tokens as the stream below: attention's cost grows with the position.
        out = subprocess.run([woolly, "bench", "-m", model, "-p", "0", "-n", str(n), "-r", str(repeats), "-t",
                              threads, "--json"], capture_output=True, text=True, check=True)
        rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
        engine.append((threads, max(r.get("t_s", r.get("tokens_per_second", 0)) for r in rows)))
    threads, rate = max(engine, key=lambda e: e[1])
    e2e = []
    for _ in range(repeats):
        # A subscriber that only timestamps (no JSON parsing until the done message), so that
        # the daemon's cost is measured rather than this script's.
        sid, _ = d.start(prompt_for(0), n)
        topic = f"tok.{sid}".encode()
        t = []
        while True:
            frames = d.sub.recv_multipart()
            now = time.perf_counter()
            if frames[0] != topic:
                continue
            if b'"done"' in frames[1]:
                break
            t.append(now)
        e2e.append((len(t) - 1) / (t[-1] - t[0]))
    best = statistics.median(e2e)
    print(f"engine (woolly bench tg{n}, {threads} threads): {rate:.0f} t/s; end to end at a subscriber: "
          f"{spread(e2e)} t/s")
    print(f"added per token: {1e6 * (1 / best - 1 / rate):.1f} us (median run)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(SOURCE, "build"))
    p.add_argument("--model", default=os.path.join(SOURCE, "models", "stories260K.gguf"))
    p.add_argument("-n", type=int, default=64)
    p.add_argument("-r", type=int, default=3)
    p.add_argument("--streams", default="1,2,4,8")
    p.add_argument("--parts", default="concurrency,long,prefix,overhead")
    p.add_argument("--prompt-chunk", type=int, default=128)
    args = p.parse_args()
    woolly = os.path.join(args.build, "tools", "woolly")
    woollyd = os.path.join(args.build, "daemon", "woollyd")
    levels = [int(k) for k in args.streams.split(",")]
    parts = args.parts.split(",")
    print(f"# woollyd on {os.path.basename(args.model)}")
    config = (f"engine:\n  max_sessions: {max(levels + [2])}\n  prompt_chunk: {args.prompt_chunk}\n"
              f"  prefix_cache: PREFIX\nlimits:\n  queue_depth: 64\n  max_tokens: 8192\n")
    if "concurrency" in parts or "overhead" in parts:
        d = Daemon(woollyd, args.model, config.replace("PREFIX", "false"), "plain")
        try:
            if "concurrency" in parts:
                concurrency(d, woolly, args.model, args.n, args.r, levels)
            if "overhead" in parts:
                overhead(d, woolly, args.model, args.r)
        finally:
            d.stop()
    if "prefix" in parts or "long" in parts:
        d = Daemon(woollyd, args.model, config.replace("PREFIX", "true"), "prefix")
        try:
            if "long" in parts:
                long_prompt(d, args.prompt_chunk)
            if "prefix" not in parts:
                return
            context = d.client.call({"op": "status"})["model"]["context"]
            prefix(d, min(500, context // 2 - 16), args.r)
        finally:
            d.stop()


if __name__ == "__main__":
    main()
