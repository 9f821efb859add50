#!/usr/bin/python3
"""test_daemon.py — woollyd end to end: real daemons on ipc endpoints in a temp dir, driven by
the woolly CLI and by the pyzmq client written from protocol/SPEC.md.

usage: test_daemon.py WOOLLYD WOOLLY SOURCE_DIR SHARED_DIR
"""
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import zmq

WOOLLYD, WOOLLY, SOURCE, SHARED = sys.argv[1:5]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client  # noqa: E402
from woolly_harness import TMP, Woollyd, run_tests  # noqa: E402

BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")


def Daemon(config_text="", keys=None, **options):
    """A woollyd for these tests (tests/clients/woolly_harness.py), its client's timeout 20 s."""
    return Woollyd(WOOLLYD, config_text, keys=keys, client_timeout=20, **options)


def woolly(*args, stdin=None, timeout=60):
    """The CLI; `timeout` only guards against a hang (synth writes 600 MB, slowly under ASan)."""
    return subprocess.run([WOOLLY, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def golden_prompts():
    path = os.path.join(SHARED, "golden", "stories260K-greedy.jsonl")
    if not os.path.exists(path):
        print(f"note: {path} not found (../shared is absent); using the bundled prompt only")
        return ["Once upon a time"]
    return [json.loads(line)["prompt"] for line in open(path) if line.strip()]


def collect(sub, stream_ids, until_done=True, timeout=30):
    """Raw messages per stream id from one SUB socket, in arrival order, until each is done."""
    got = {i: [] for i in stream_ids}
    deadline = time.monotonic() + timeout
    while any(not (m and m[-1].get("done")) for m in got.values()):
        if time.monotonic() > deadline:
            raise AssertionError(f"streams did not finish: { {k: len(v) for k, v in got.items()} }")
        if sub.poll(100):
            topic, payload = sub.recv_multipart()
            m = json.loads(payload)
            assert topic.decode() == "tok." + m["id"], (topic, m)
            if m["id"] in got:
                got[m["id"]].append(m)
    return got


def check_gap_free(messages):
    assert [m["seq"] for m in messages] == list(range(len(messages))), [m["seq"] for m in messages]
    assert messages[-1].get("done") and not any(m.get("done") for m in messages[:-1])


def text_of(messages):
    return "".join(m.get("text", "") for m in messages)


# ---- the tests -------------------------------------------------------------------------------

def test_generate_matches_run(d):
    """woolly generate gives exactly woolly run's greedy tokens for the golden prompts."""
    for prompt in golden_prompts():
        run = woolly("run", "-m", BUNDLED, "-p", prompt, "-n", "48", "--temp", "0", "--json")
        gen = woolly("generate", "--requests", d.requests, "--tokens", d.tokens, "-p", prompt,
                     "-n", "48", "--temp", "0", "--json")
        assert run.returncode == 0 and gen.returncode == 0, (run.stderr, gen.stderr)
        run_tokens = [json.loads(l)["token"] for l in run.stdout.splitlines() if '"token"' in l]
        gen_lines = [json.loads(l) for l in gen.stdout.splitlines()]
        gen_tokens = [m["token"] for m in gen_lines if "token" in m]
        assert run_tokens == gen_tokens and len(run_tokens) == 48, (prompt, run_tokens, gen_tokens)
        check_gap_free(gen_lines)
    # Plain text from stdin, as the README shows.
    gen = woolly("generate", "--requests", d.requests, "--tokens", d.tokens, "-n", "48", "--temp", "0",
                 stdin="Once upon a time\n")
    assert gen.stdout.startswith(", there was a little girl named Lily."), gen.stdout


def test_three_subscribers_and_a_late_one(d):
    ctx = zmq.Context.instance()
    subs = []
    for _ in range(3):
        s = ctx.socket(zmq.SUB)
        s.connect(d.tokens)
        s.setsockopt(zmq.SUBSCRIBE, b"tok.three")
        subs.append(s)
    time.sleep(0.3)  # let the subscriptions reach the daemon (ZeroMQ's slow joiner)
    reply = d.client.call({"op": "generate", "id": "three", "prompt": "Lily and Tom went to the park",
                           "max_tokens": 200, "temperature": 0})
    assert reply == {"ok": True, "id": "three", "topic": "tok.three"}, reply
    streams = [collect(s, ["three"])["three"] for s in subs]
    for s in streams:
        check_gap_free(s)
    assert streams[0] == streams[1] == streams[2]
    assert len(streams[0]) == 201
    # A subscriber that joins after the end recovers everything with replay.
    replay = d.client.call({"op": "replay", "id": "three", "from_seq": 0})
    assert replay["ok"] and replay["finished"] and replay["messages"] == streams[0], replay
    tail = d.client.call({"op": "replay", "id": "three", "from_seq": 195})
    assert [m["seq"] for m in tail["messages"]] == list(range(195, 201))
    for s in subs:
        s.close()


def test_eight_concurrent_and_a_ninth_is_busy(d):
    prompts = golden_prompts()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.connect(d.tokens)
    sub.setsockopt(zmq.SUBSCRIBE, b"tok.c")
    time.sleep(0.3)
    reqs = []
    for i in range(9):
        r = ctx.socket(zmq.REQ)
        r.setsockopt(zmq.LINGER, 0)
        r.connect(d.requests)
        reqs.append(r)
    ids = [f"c{i}" for i in range(8)]
    for i, r in enumerate(reqs[:8]):
        r.send_json({"op": "generate", "id": ids[i], "prompt": prompts[i % len(prompts)],
                     "max_tokens": 400, "temperature": 0})
    replies = [r.recv_json() for r in reqs[:8]]
    assert all(rep["ok"] for rep in replies), replies
    reqs[8].send_json({"op": "generate", "id": "c8", "prompt": "x", "max_tokens": 4})
    ninth = reqs[8].recv_json()
    assert not ninth["ok"] and ninth["error"]["code"] == "busy", ninth
    got = collect(sub, ids, timeout=60)
    for i, stream_id in enumerate(ids):
        check_gap_free(got[stream_id])
        prompt = prompts[i % len(prompts)]
        run = woolly("run", "-m", BUNDLED, "-p", prompt, "-n", "400", "--temp", "0", "--json")
        run_tokens = [json.loads(l)["token"] for l in run.stdout.splitlines() if '"token"' in l]
        assert [m["token"] for m in got[stream_id] if "token" in m] == run_tokens, stream_id
    for r in reqs:
        r.close()
    sub.close()
    # And once they are done there is room again.
    assert d.client.call({"op": "generate", "prompt": "x", "max_tokens": 2})["ok"]


def test_cancel_mid_stream(d):
    sub = d.client.subscribe("cx")
    time.sleep(0.3)
    assert d.client.call({"op": "generate", "id": "cx", "prompt": "Once upon a time", "max_tokens": 500,
                          "temperature": 0})["ok"]
    messages = []
    cancelled = False
    deadline = time.monotonic() + 20
    while not (messages and messages[-1].get("done")):
        assert time.monotonic() < deadline, "no end after cancel"
        if sub.poll(100):
            messages.append(json.loads(sub.recv_multipart()[1]))
            if not cancelled:
                reply = d.client.call({"op": "cancel", "id": "cx"})
                assert reply == {"ok": True, "id": "cx"}, reply
                cancelled = True
    check_gap_free(messages)
    assert messages[-1]["finish_reason"] == "cancelled", messages[-1]
    assert messages[-1]["usage"]["completion_tokens"] < 500
    sub.close()
    # Cancelling again, or an unknown id: not_found. The daemon keeps serving.
    assert d.client.call({"op": "cancel", "id": "cx"})["error"]["code"] == "not_found"
    out = [m for m in d.client.generate("Once upon a time", max_tokens=8, temperature=0)]
    assert out[-1]["finish_reason"] == "length" and len(out) == 9


def test_bad_requests_get_their_codes(d):
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.connect(d.requests)

    def send_raw(frame):
        req.send(frame)
        return json.loads(req.recv())

    def code(reply):
        return "ok" if reply["ok"] else reply["error"]["code"]

    valid = {"op": "generate", "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0}
    cases = [
        (b"this is not json", "bad_request"),
        (b'{"op":"generate","prompt":"\xff\xfe"}', "bad_request"),
        (json.dumps({"op": "generate", "prompt": 12}).encode(), "bad_request"),
        (json.dumps({"op": "generate", "prompt": "hi", "temperature": "hot"}).encode(), "bad_request"),
        (json.dumps({"op": "generate"}).encode(), "bad_request"),
        (json.dumps({"op": "explode"}).encode(), "bad_request"),
        (json.dumps({"op": "generate", "prompt": "hi", "max_tokens": -5}).encode(), "bad_request"),
        (json.dumps({"op": "generate", "prompt": "hi", "max_tokens": 10**12}).encode(), "too_large"),
        (json.dumps({"op": "generate", "prompt": "x" * (8 << 20)}).encode(), "too_large"),
        (json.dumps({"op": "generate", "prompt": "Once upon a time " * 200}).encode(), "too_large"),
        (json.dumps({"op": "cancel", "id": "never-was"}).encode(), "not_found"),
        (json.dumps({"op": "replay", "id": "never-was"}).encode(), "not_found"),
    ]
    for frame, expected in cases:
        reply = send_raw(frame)
        assert code(reply) == expected, (frame[:80], reply)
        assert reply["error"]["message"], reply
        nxt = send_raw(json.dumps(valid).encode())  # the next valid request is served
        assert code(nxt) == "ok", nxt
        wait_idle(d)  # so that slow builds (sanitizers) never fill the queue
    # Only a running (or queued) stream's id is in use; once it finished, the id starts anew.
    first = send_raw(json.dumps({**valid, "id": "dup", "max_tokens": 500}).encode())
    assert code(first) == "ok"
    second = send_raw(json.dumps({**valid, "id": "dup"}).encode())
    assert code(second) == "duplicate_id", second
    assert "still running" in second["error"]["message"] or "still queued" in second["error"]["message"], second
    assert code(send_raw(json.dumps({"op": "cancel", "id": "dup"}).encode())) == "ok"
    wait_idle(d)
    # A multi-frame request over DEALER gets bad_request; a correct DEALER request is served.
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(d.requests)
    dealer.send_multipart([b"", b"{}", b"{}"])
    assert json.loads(dealer.recv_multipart()[1])["error"]["code"] == "bad_request"
    dealer.send_multipart([b"", json.dumps({"op": "status"}).encode()])
    empty, reply = dealer.recv_multipart()
    assert empty == b"" and json.loads(reply)["ok"]
    dealer.close()
    req.close()


def wait_idle(d, timeout=30):
    """Waits until no session runs or waits; returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        s = d.client.call({"op": "status"})
        if s["sessions"] == {"running": 0, "queued": 0} or time.monotonic() > deadline:
            return s
        time.sleep(0.02)


def test_status(d):
    s = wait_idle(d)  # earlier tests may have left short generations running
    assert s["ok"] and s["protocol"] == "woolly/1"
    assert s["model"]["n_vocab"] == 512 and s["model"]["n_layer"] == 5
    assert s["tokens_generated"] > 0 and s["sessions"] == {"running": 0, "queued": 0}
    assert s["cache"]["kv_slots"] == 4 and s["cache"]["kv_slots_in_use"] == 0, s
    # The bundled model is F32: nothing to repack, and nothing held.
    wc = s["weight_cache"]
    assert wc["budget_bytes"] > 0 and wc["bytes"] == 0 and wc["entries"] == 0
    # Memory by part: the KV slots as the cache actor reports them, the planned total bounds
    # the parts, and the process's resident set (from the OS) covers the file's pages.
    m = s["memory"]
    assert m["kv_bytes"] == s["cache"]["kv_bytes"] > 0 and m["weight_cache_bytes"] == 0, m
    pages = (os.path.getsize(BUNDLED) + 4095) // 4096 * 4096
    assert m["scratch_bytes"] > 0 and 0 < m["file_resident_bytes"] <= pages, m
    assert m["kv_bytes"] + m["scratch_bytes"] + m["file_resident_bytes"] <= m["planned_bytes"], m
    assert m["rss_bytes"] >= m["file_resident_bytes"] and m["peak_rss_bytes"] >= m["rss_bytes"] // 2, m
    out = woolly("status", "--requests", d.requests)
    assert out.returncode == 0 and json.loads(out.stdout)["ok"]


def test_python_client_from_spec(d):
    out = subprocess.run([sys.executable, os.path.join(SOURCE, "tests", "clients", "woolly_client.py"),
                          "--requests", d.requests, "--tokens", d.tokens, "-n", "48", "Once upon a time"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(", there was a little girl named Lily. She loved to play outside"), out.stdout


def test_readme_client(d):
    """The client printed in the README is this file, and it streams a generation."""
    path = os.path.join(SOURCE, "tests", "clients", "minimal_client.py")
    readme = open(os.path.join(SOURCE, "README.md")).read()
    assert open(path).read() in readme, "README.md's Python client differs from tests/clients/minimal_client.py"
    # Twice in a row: its fixed id 'readme' is free again once the first stream has finished.
    for attempt in (1, 2):
        out = subprocess.run([sys.executable, path, d.requests, d.tokens, "Once upon a time"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (attempt, out.stderr)
        assert out.stdout.startswith(", there was a little girl named Lily. She loved to play outside"), out.stdout


def test_subscribe_command(d):
    sub = subprocess.Popen([WOOLLY, "subscribe", "subcmd", "--timeout", "20", "--tokens", d.tokens,
                            "--requests", d.requests],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    assert d.client.call({"op": "generate", "id": "subcmd", "prompt": "Once upon a time", "max_tokens": 48,
                          "temperature": 0})["ok"]
    out, _ = sub.communicate(timeout=30)
    assert sub.returncode == 0 and out.startswith(", there was a little girl named Lily."), out


def test_stop_strings_and_unknown_daemon(d):
    msgs = list(d.client.generate("Once upon a time", max_tokens=48, temperature=0, stop=["Lily"]))
    assert msgs[-1]["finish_reason"] == "stop" and text_of(msgs) == ", there was a little girl named "
    out = woolly("status", "--requests", f"ipc://{TMP}/nobody-here")
    assert out.returncode != 0 and "no reply" in out.stderr


def test_subscribe_replays_a_finished_stream_and_knows_unknown_ids(d):
    """subscribe ID: a finished stream from seq 0 (replay), an unknown id not_found at once,
    SIGTERM/SIGINT quiet with 143/130, and --all's lines, one per stream."""
    msgs = list(d.client.generate("Once upon a time", stream_id="over", max_tokens=20, temperature=0))
    out = woolly("subscribe", "over", "--requests", d.requests, "--tokens", d.tokens)
    assert out.returncode == 0 and out.stdout == text_of(msgs) + "\n", (out.stdout, out.stderr)
    js = woolly("subscribe", "over", "--json", "--requests", d.requests, "--tokens", d.tokens)
    assert [json.loads(l) for l in js.stdout.splitlines()] == msgs
    started = time.monotonic()
    out = woolly("subscribe", "nosuch", "--requests", d.requests, "--tokens", d.tokens)
    assert out.returncode == 1 and "not_found" in out.stderr and time.monotonic() - started < 5, out.stderr
    # Waiting for an id not admitted yet, then a signal: a quiet exit with 128 + the signal.
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        p = subprocess.Popen([WOOLLY, "subscribe", "later", "--timeout", "30", "--requests", d.requests,
                              "--tokens", d.tokens], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
        assert p.returncode == code and err == "", (sig, p.returncode, err)
    # --all runs until interrupted (exit 0); a stream's text is one line after its id.
    p = subprocess.Popen([WOOLLY, "subscribe", "--all", "--requests", d.requests, "--tokens", d.tokens],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    msgs = list(d.client.generate("Once upon a time", stream_id="allline", max_tokens=12, temperature=0))
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0 and err == "", (p.returncode, err)
    assert f"[allline] {text_of(msgs)} <length>\n" in out, out


def test_a_finished_streams_id_starts_a_new_stream(d):
    """Only a running or queued stream holds its id: a finished one's id starts anew, and its
    replay then holds the new stream only."""
    first = list(d.client.generate("Once upon a time", stream_id="again", max_tokens=10, temperature=0))
    second = list(d.client.generate("Lily and Tom", stream_id="again", max_tokens=6, temperature=0))
    check_gap_free(second)
    assert len(second) == 7 and text_of(second) != text_of(first)
    replay = d.client.call({"op": "replay", "id": "again", "from_seq": 0})
    assert replay["ok"] and replay["messages"] == second, replay


def test_clients_name_their_endpoints_and_fail_fast(d):
    env = {**os.environ, "WOOLLY_REQUESTS": d.requests, "WOOLLY_TOKENS": d.tokens}
    out = subprocess.run([WOOLLY, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["protocol"] == "woolly/1", out.stderr
    out = subprocess.run([WOOLLY, "generate", "-p", "Once upon a time", "-n", "8", "--temp", "0"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith(", there was a little girl"), out.stderr
    # Nobody there: one line naming the endpoint within a few seconds, exit 1.
    nobody = f"ipc://{TMP}/nobody-here"
    for command, limit in (("generate", 8), ("status", 4), ("cancel", 8)):
        args = {"generate": ["-p", "hi"], "status": [], "cancel": ["x"]}[command]
        started = time.monotonic()
        out = woolly(command, *args, "--requests", nobody, "--tokens", nobody + "-tok")
        took = time.monotonic() - started
        assert out.returncode == 1 and out.stderr.count("\n") == 1, (command, out.stderr)
        assert f"no reply from {nobody} within" in out.stderr and "is woollyd running there?" in out.stderr
        assert took < limit, (command, took)


def test_generate_and_chat_take_conversations(d):
    """generate --messages and chat give woolly run --messages's replies (the bundled model has
    no template of its own: --chat-template names one)."""
    turns = [{"role": "user", "content": "Tell me a story"}]
    path = os.path.join(TMP, "chat1.json")
    with open(path, "w") as f:
        json.dump(turns, f)
    run = woolly("run", "--messages", path, "--chat-template", "zephyr", "-n", "16", "--temp", "0")
    gen = woolly("generate", "--messages", path, "--chat-template", "zephyr", "-n", "16", "--temp", "0",
                 "--requests", d.requests, "--tokens", d.tokens)
    assert run.returncode == 0 and gen.returncode == 0, (run.stderr, gen.stderr)
    assert gen.stdout == run.stdout, (gen.stdout, run.stdout)
    bad = woolly("generate", "-p", "x", "--chat-template", "zephyr", "--requests", d.requests, "--tokens", d.tokens)
    assert bad.returncode == 1 and "--chat-template goes with --messages" in bad.stderr, bad.stderr
    # Two turns of chat: the second reply is run's for the whole conversation so far.
    chat = subprocess.run([WOOLLY, "chat", "--chat-template", "zephyr", "-n", "16", "--temp", "0",
                           "--requests", d.requests, "--tokens", d.tokens],
                          input="Tell me a story\nAnd then?\n", capture_output=True, text=True, timeout=60)
    assert chat.returncode == 0, chat.stderr
    first_reply = run.stdout[:-1]
    turns += [{"role": "assistant", "content": first_reply}, {"role": "user", "content": "And then?"}]
    with open(path, "w") as f:
        json.dump(turns, f)
    run2 = woolly("run", "--messages", path, "--chat-template", "zephyr", "-n", "16", "--temp", "0")
    assert chat.stdout == run.stdout + run2.stdout, (chat.stdout, run.stdout, run2.stdout)
    # Ctrl-C at the prompt ends it quietly with 130, as at any other moment.
    p = subprocess.Popen([WOOLLY, "chat", "--requests", d.requests, "--tokens", d.tokens],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr.read(2) == "> "  # waiting for a line
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130 and err == "", (p.returncode, err)


def run_tokens(prompt, n):
    run = woolly("run", "-m", BUNDLED, "-p", prompt, "-n", str(n), "--temp", "0", "--json")
    assert run.returncode == 0, run.stderr
    return [json.loads(l)["token"] for l in run.stdout.splitlines() if '"token"' in l]


def serve_staggered(d, name, jobs):
    """Starts each (prompt, max_tokens) once the stream before it has published 3 tokens (so
    that streams join a running batch at different times) and returns each stream's messages."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.connect(d.tokens)
    sub.setsockopt(zmq.SUBSCRIBE, f"tok.{name}".encode())
    time.sleep(0.3)
    ids = [f"{name}{i}" for i in range(len(jobs))]
    got = {i: [] for i in ids}
    deadline = time.monotonic() + 60
    started = 0
    while any(not (m and m[-1].get("done")) for m in got.values()):
        assert time.monotonic() < deadline, {k: len(v) for k, v in got.items()}
        if started < len(jobs) and (started == 0 or len(got[ids[started - 1]]) >= 3):
            prompt, n = jobs[started]
            reply = d.client.call({"op": "generate", "id": ids[started], "prompt": prompt,
                                   "max_tokens": n, "temperature": 0})
            assert reply["ok"], reply
            started += 1
        if sub.poll(20):
            _, payload = sub.recv_multipart()
            m = json.loads(payload)
            if m["id"] in got:
                got[m["id"]].append(m)
    sub.close()
    return [got[i] for i in ids]


def test_batched_streams_match_run():
    """1, 3 and 8 streams at once, of different lengths and joining at different times, each
    get woolly run's greedy tokens for their prompt alone; prompts are read in chunks of 5
    tokens between the running streams' steps. Then the prefix cache: a request that begins
    with a finished one's prompt reuses its keys and values and still gets the same tokens."""
    prompts = golden_prompts() + ["Lily and Tom went to the park. They saw a big dog and",
                                  "The little bird sang", "A boy named Max had a red kite. One windy day"]
    d = Daemon("limits:\n  queue_depth: 16\nengine:\n  max_sessions: 8\n  prompt_chunk: 5\n")
    try:
        expected = {}
        for count in (1, 3, 8):
            jobs = [(prompts[(i * 3 + count) % len(prompts)], 20 + 13 * i) for i in range(count)]
            streams = serve_staggered(d, f"b{count}x", jobs)
            for (prompt, n), messages in zip(jobs, streams):
                check_gap_free(messages)
                key = (prompt, n)
                if key not in expected:
                    expected[key] = run_tokens(prompt, n)
                assert [m["token"] for m in messages if "token" in m] == expected[key], (count, prompt, n)
        # The prefix cache: the same long beginning again, with more after it.
        base = "Lily and Tom went to the park. They saw a big dog and"
        before = d.client.call({"op": "status"})["prefix_cache"]
        assert before["enabled"] and before["held_tokens"] > 0, before
        longer = base + " a cat. The dog ran after the cat"
        [messages] = serve_staggered(d, "pfx", [(longer, 30)])
        assert [m["token"] for m in messages if "token" in m] == run_tokens(longer, 30)
        after = d.client.call({"op": "status"})["prefix_cache"]
        assert after["hits"] == before["hits"] + 1, (before, after)
        assert after["reused_tokens"] > before["reused_tokens"] + 10, (before, after)
    finally:
        d.stop()
    # Two layer executors: up to two steps in flight, each with its own sessions.
    d = Daemon("engine:\n  layer_executors: 2\n  max_sessions: 4\n  prompt_chunk: 5\n")
    try:
        jobs = [(prompts[i % len(prompts)], 30 + 11 * i) for i in range(4)]
        for (prompt, n), messages in zip(jobs, serve_staggered(d, "lx", jobs)):
            check_gap_free(messages)
            assert [m["token"] for m in messages if "token" in m] == run_tokens(prompt, n), (prompt, n)
    finally:
        d.stop()
    # Without the prefix cache: nothing is reused or held, and the tokens are the same.
    d = Daemon("engine:\n  prefix_cache: false\n")
    try:
        [a, b] = [serve_staggered(d, f"np{i}", [(base, 30)])[0] for i in range(2)]
        assert [m["token"] for m in a if "token" in m] == [m["token"] for m in b if "token" in m] \
            == run_tokens(base, 30)
        status = d.client.call({"op": "status"})["prefix_cache"]
        assert not status["enabled"] and status["hits"] == 0 and status["held_bytes"] == 0, status
    finally:
        d.stop()


def standalone_tests():
    """Tests that need their own daemon."""
    # Bad configs exit 2 naming key and line; --print-config prints the effective config.
    bad = os.path.join(TMP, "bad.yaml")
    with open(bad, "w") as f:
        f.write("engine:\n  max_sessions: lots\n")
    out = subprocess.run([WOOLLYD, "--config", bad], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "bad.yaml:2: key 'engine.max_sessions'" in out.stderr, out.stderr
    out = subprocess.run([WOOLLYD, "--requests", "carrier-pigeon://x"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "bad endpoint" in out.stderr, out.stderr
    out = subprocess.run([WOOLLYD, "--tokens", "tcp://0.0.0.0:5556"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "security.allow_plaintext" in out.stderr, out.stderr
    out = subprocess.run([WOOLLYD, "--threads", "3", "--print-config"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and "threads: 3" in out.stdout and "queue_depth: 8" in out.stdout, out.stdout
    out = subprocess.run([WOOLLYD, "--model", "/nonexistent.gguf", "--requests", f"ipc://{TMP}/m-req",
                          "--tokens", f"ipc://{TMP}/m-tok"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 1 and "/nonexistent.gguf: cannot open" in out.stderr, out.stderr
    # A model that does not fit the memory available (here a simulated cgroup limit) is refused
    # before loading, in one line that says what would fit; a bad engine.mlock value exits 2.
    out = subprocess.run([WOOLLYD, "--requests", f"ipc://{TMP}/f-req", "--tokens", f"ipc://{TMP}/f-tok"],
                         capture_output=True, text=True, timeout=20, env={**os.environ, "WOOLLY_MEMORY_LIMIT": "2600K"})
    assert out.returncode == 1 and "is available (WOOLLY_MEMORY_LIMIT)" in out.stderr, out.stderr
    refusal = [line for line in out.stderr.splitlines() if "cannot load the model" in line]
    assert len(refusal) == 1 and "would fit: engine.context" in refusal[0], out.stderr
    with open(bad, "w") as f:
        f.write("engine:\n  mlock: yes please\n")
    out = subprocess.run([WOOLLYD, "--config", bad], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "bad.yaml:2: key 'engine.mlock': expected true or false" in out.stderr, out.stderr

    # SIGTERM mid-stream: the stream ends with "shutdown" and the daemon exits 0.
    d = Daemon()
    sub = d.client.subscribe("sd")
    time.sleep(0.3)
    assert d.client.call({"op": "generate", "id": "sd", "prompt": "Once upon a time", "max_tokens": 500})["ok"]
    first = json.loads(sub.recv_multipart()[1])
    code, err = d.stop()
    messages = [first]
    while sub.poll(500):
        messages.append(json.loads(sub.recv_multipart()[1]))
    assert code == 0, err
    assert messages[-1].get("done") and messages[-1]["finish_reason"] in ("shutdown", "length"), messages[-1]
    sub.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint_tests():
    """Endpoints bind like any server's, before the model loads."""
    # localhost and [::1] are loopback, bound by address (ZeroMQ alone reads a name as an interface).
    req, tok = free_port(), free_port()
    flags = ["--requests", f"tcp://localhost:{req}"]
    has_ipv6 = socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")
    flags += ["--tokens", f"tcp://[::1]:{tok}" if has_ipv6 else f"tcp://localhost:{tok}"]
    if not has_ipv6:
        print("note: no IPv6 on this machine; [::1] not tried")
    d = Daemon(flags=flags)
    try:
        out = woolly("generate", "-p", "Once upon a time", "-n", "8", "--temp", "0", *flags)
        assert out.returncode == 0 and out.stdout.startswith(", there was a little girl"), out.stderr
    finally:
        d.stop()
    # A busy port fails at once, before the model is loaded.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        out = subprocess.run([WOOLLYD, "--requests", f"tcp://127.0.0.1:{port}", "--tokens", f"ipc://{TMP}/busy-tok"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and f"cannot bind requests endpoint tcp://127.0.0.1:{port}" in out.stderr, out.stderr
        assert "loaded " not in out.stderr and time.monotonic() - started < 5, out.stderr


def slow_model_tests():
    """On a model slow enough to watch (tinyllama's shape, random weights): `loading` replies
    while it loads, its progress on a terminal, a queued stream followed by subscribe, and a
    generate whose Ctrl-C cancels its stream."""
    model = os.path.join(TMP, "tinyllama-q4_0.gguf")
    out = woolly("synth", "--shape", "tinyllama-1.1b", "--type", "q4_0", "-o", model, timeout=600)
    assert out.returncode == 0, out.stderr
    # Requests during the load are answered at once with `loading` and the progress.
    d = Daemon("engine:\n  context: 256\n", model=model, ready=False)
    try:
        probe = d.new_client(timeout=5)
        replies = []
        while True:
            reply = probe.call({"op": "status"})  # a TimeoutError here fails the test
            replies.append(reply)
            if reply["ok"]:
                break
            assert reply["error"]["code"] == "loading", reply
            assert 0 <= reply["error"]["progress"] <= 1 and "tinyllama-q4_0.gguf" in reply["error"]["message"]
        assert any(not r["ok"] for r in replies), "the model loaded before a request could see it loading"
        d.wait_ready()
        g = d.client.call({"op": "generate", "prompt": "x", "max_tokens": 1})
        assert g["ok"], g
    finally:
        d.stop()
    # On a terminal, woollyd shows the load's progress.
    master, slave = pty.openpty()
    shown = []
    reader = threading.Thread(target=lambda: shown.append(read_all(master)), daemon=True)
    reader.start()
    d = Woollyd(WOOLLYD, "engine:\n  context: 256\n", model=model, stderr=slave)
    os.close(slave)
    code, _ = d.stop()
    assert code == 0
    reader.join(timeout=10)
    text = shown[0] if shown else ""
    assert re.search(r"\rwoollyd: loading tinyllama-q4_0\.gguf: \d+ %", text), text[:400]
    # One session at a time: a second stream waits in the queue; subscribe waits for it too.
    d = Daemon("engine:\n  context: 256\n  max_sessions: 1\n  weight_cache_mib: 0\n", model=model)
    try:
        done = list(d.client.generate("Once", stream_id="reused", max_tokens=2))
        assert done[-1]["done"]
        # busy1 outlives the checks below by far (8 tokens: 0.15 s built for users, 6 s under
        # the sanitizers), and holds the one session meanwhile.
        assert d.client.call({"op": "generate", "id": "busy1", "prompt": "Once", "max_tokens": 8})["ok"]
        assert d.client.call({"op": "generate", "id": "queued1", "prompt": "Once", "max_tokens": 2})["ok"]
        replay = d.client.call({"op": "replay", "id": "queued1"})
        assert replay["ok"] and replay["messages"] == [] and not replay["finished"], replay
        # A finished stream's id, taken again by a stream still queued: replay knows only the
        # new one (nothing yet), never the finished stream's messages.
        assert d.client.call({"op": "generate", "id": "reused", "prompt": "Once", "max_tokens": 3})["ok"]
        replay = d.client.call({"op": "replay", "id": "reused"})
        assert replay["ok"] and replay["messages"] == [] and not replay["finished"], replay
        out = woolly("subscribe", "queued1", "--json", "--requests", d.requests, "--tokens", d.tokens)
        lines = [json.loads(l) for l in out.stdout.splitlines()]
        assert out.returncode == 0 and len(lines) == 3 and lines[-1]["done"], (out.stdout, out.stderr)
        # Ctrl-C on generate: exit 130, nothing on stderr, and the daemon stops the stream.
        p = subprocess.Popen([WOOLLY, "generate", "--id", "stopme", "-p", "Once", "-n", "200",
                              "--requests", d.requests, "--tokens", d.tokens],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = p.stdout.read(1)  # a token has arrived
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=30)
        assert first and p.returncode == 130 and err == b"", (p.returncode, err)
        end = list(d.client.follow(d.client.subscribe("stopme"), "stopme"))[-1]
        assert end["finish_reason"] == "cancelled" and end["usage"]["completion_tokens"] < 200, end
    finally:
        d.stop()


def read_all(fd):
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_messages_go_through_the_models_chat_template(d):
    # The bundled model has no chat template: a conversation is refused, saying what to do.
    turn = [{"role": "user", "content": "hi"}]
    r = d.client.call({"op": "generate", "messages": turn})
    assert not r["ok"] and r["error"]["code"] == "bad_request" and "engine.chat_template" in r["error"]["message"], r
    r = d.client.call({"op": "generate", "prompt": "x", "messages": turn})
    assert not r["ok"] and "exactly one of 'prompt'" in r["error"]["message"], r
    r = d.client.call({"op": "generate", "messages": [{"role": "robot", "content": "x"}]})
    assert not r["ok"] and "messages[0].role is 'robot'" in r["error"]["message"], r
    r = d.client.call({"op": "generate", "messages": []})
    assert not r["ok"] and r["error"]["code"] == "bad_request", r
    # Named in the config, a family serves the same model.
    z = Daemon("engine:\n  chat_template: zephyr\n")
    try:
        out = list(z.client.generate(None, messages=turn, max_tokens=4, temperature=0))
        assert out[-1]["done"], out[-1]
    finally:
        z.stop()
    # A Qwen2 model's own template: the stream's tokens are `woolly run --messages`'s.
    model = os.path.join(SHARED, "golden", "synth-qwen2-F16.gguf")
    if not os.path.exists(model):
        print(f"skipped the Qwen2 part: {model} not found (../shared is absent)")
        return
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Tell me a story"}]
    path = os.path.join(TMP, "conversation.json")
    with open(path, "w") as f:
        json.dump(conversation, f)
    run = woolly("run", "-m", model, "--messages", path, "-n", "12", "--temp", "0", "--json")
    assert run.returncode == 0, run.stderr
    run_tokens = [json.loads(l)["token"] for l in run.stdout.splitlines() if '"token"' in l]
    q = Daemon(f"model: {model}\n")
    try:
        msgs = list(q.client.generate(None, messages=conversation, max_tokens=12, temperature=0))
    finally:
        q.stop()
    assert [m["token"] for m in msgs if "token" in m] == run_tokens, (msgs, run_tokens)
    assert msgs[-1]["usage"]["prompt_tokens"] == json.loads(run.stdout.splitlines()[-1])["n_prompt"]


def test_replay_buffers_are_bounded_in_bytes(d):
    # 64 KiB for every stream's kept messages together: the finished streams go first, oldest
    # first, and the newest stream stays whole.
    r = Daemon("replay:\n  max_bytes: 65536\n")
    try:
        ids = []
        for i in range(4):
            msgs = list(r.client.generate("Once upon a time", stream_id=f"rb{i}", max_tokens=400, temperature=0))
            assert msgs[-1]["done"], msgs[-1]
            ids.append((f"rb{i}", len(msgs), sum(len(json.dumps(m)) for m in msgs)))
        assert ids[-1][2] < 65536, ids  # one stream fits
        assert sum(size for _, _, size in ids) > 65536, ids  # all of them do not
        first = r.client.call({"op": "replay", "id": ids[0][0]})
        assert not first["ok"] and first["error"]["code"] == "not_found", first
        last = r.client.call({"op": "replay", "id": ids[-1][0]})
        assert last["ok"] and len(last["messages"]) == ids[-1][1] and last["first_available_seq"] == 0, \
            (len(last.get("messages", [])), ids[-1])
    finally:
        r.stop()


def test_curve_lets_in_only_listed_clients(d):
    keys = os.path.join(TMP, "keys")
    os.makedirs(keys, exist_ok=True)
    for name in ("server", "client", "stranger"):
        out = woolly("keygen", "-o", os.path.join(keys, name))
        assert out.returncode == 0, out.stderr
    assert oct(os.stat(os.path.join(keys, "server.key")).st_mode & 0o777) == "0o600"
    public = {n: open(os.path.join(keys, n + ".pub")).read().splitlines()[-1] for n in ("client", "stranger")}
    authorized = os.path.join(keys, "authorized_keys")
    with open(authorized, "w") as f:
        f.write(f"# who may connect\n{public['client']} my laptop\n\n")
    config = (f"security:\n  curve_secret_key_file: {keys}/server.key\n"
              f"  authorized_keys_file: {authorized}\n")
    c = Daemon(config, keys={"server_key": os.path.join(keys, "server.pub"),
                             "client_key": os.path.join(keys, "client.key")})
    try:
        listed = Client(c.requests, c.tokens, timeout=20, server_key=os.path.join(keys, "server.pub"),
                        client_key=os.path.join(keys, "client.key"))
        stranger = Client(c.requests, c.tokens, timeout=2, server_key=os.path.join(keys, "server.pub"),
                          client_key=os.path.join(keys, "stranger.key"))
        plain = Client(c.requests, c.tokens, timeout=2)
        # The stranger's and a plain-text subscriber see nothing of a stream a listed client runs.
        spies = [stranger.subscribe(""), plain.subscribe("")]
        msgs = list(listed.generate("Once upon a time", max_tokens=16, temperature=0))
        assert msgs[-1]["done"] and len(msgs) == 17, msgs[-1]
        assert all(not spy.poll(500) for spy in spies), "an unlisted subscriber got a token"
        for client in (stranger, plain):
            try:
                client.call({"op": "status"})
                raise AssertionError("an unlisted client got a reply")
            except TimeoutError:
                pass
        out = woolly("status", "--requests", c.requests, "--server-key", os.path.join(keys, "server.pub"),
                     "--client-key", os.path.join(keys, "client.key"))
        assert out.returncode == 0 and json.loads(out.stdout)["ok"], out.stderr
        # authorized_keys is read again on reload: the stranger is let in.
        with open(authorized, "a") as f:
            f.write(public["stranger"] + "\n")
        seen = len(c.notes.messages)
        c.signal(signal.SIGHUP)
        c.wait_ready(start=seen)  # READY=1 again once the reload is applied
        welcome = Client(c.requests, c.tokens, timeout=5, server_key=os.path.join(keys, "server.pub"),
                         client_key=os.path.join(keys, "stranger.key"))
        assert welcome.call({"op": "status"})["ok"], "the stranger was not let in after the reload"
        for s in spies:
            s.close()
    finally:
        code, err = c.stop()
    assert "refused a client" in err and public["stranger"][:8] in err, err
    # A secret key others may read, and a bad authorized_keys line, stop the start-up.
    os.chmod(os.path.join(keys, "server.key"), 0o644)
    bad = os.path.join(TMP, "curve-bad.yaml")
    with open(bad, "w") as f:
        f.write(config)
    out = subprocess.run([WOOLLYD, "--config", bad, "--requests", f"ipc://{TMP}/cb-req", "--tokens",
                          f"ipc://{TMP}/cb-tok"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "mode 0644 lets others read it" in out.stderr, out.stderr
    os.chmod(os.path.join(keys, "server.key"), 0o600)
    with open(authorized, "a") as f:
        f.write("not-a-key\n")
    out = subprocess.run([WOOLLYD, "--config", bad, "--requests", f"ipc://{TMP}/cb-req", "--tokens",
                          f"ipc://{TMP}/cb-tok"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "authorized_keys:5: expected a client public key" in out.stderr, out.stderr


def mixture_and_window_tests():
    """A mixture whose experts do not fit the weight cache streams the rest and counts hits and
    misses per layer in status, with woolly run's tokens; Gemma 3's sliding-window layers keep
    rings (a smaller KV cache than full) and a kept prefix is extended with the same tokens."""
    moe = os.path.join(TMP, "moe-paged-q4_0.gguf")
    out = woolly("synth", "--shape", "test-moe-paged", "--type", "q4_0", "-o", moe)
    assert out.returncode == 0, out.stderr
    d = Daemon("engine:\n  context: 128\n  weight_cache_mib: 6\n", model=moe)
    try:
        run = woolly("run", "-m", moe, "-p", "Once upon a time", "-n", "12", "--temp", "0",
                     "--weight-cache", "6", "--json")
        gen = woolly("generate", "--requests", d.requests, "--tokens", d.tokens, "-p",
                     "Once upon a time", "-n", "12", "--temp", "0", "--json")
        assert run.returncode == 0 and gen.returncode == 0, (run.stderr, gen.stderr)
        run_tokens = [json.loads(l)["token"] for l in run.stdout.splitlines() if '"token"' in l]
        gen_tokens = [json.loads(l)["token"] for l in gen.stdout.splitlines() if '"token"' in l]
        assert run_tokens == gen_tokens and len(gen_tokens) == 12, (run_tokens, gen_tokens)
        wc = d.client.call({"op": "status"})["weight_cache"]
        layers = wc["expert_layers"]
        assert wc["experts_streamed"] and len(layers) == 4, wc
        assert all(l["hits"] + l["misses"] > 0 for l in layers), layers
        assert sum(l["misses"] for l in layers) > 0 and wc["bytes"] <= wc["budget_bytes"], wc
    finally:
        d.stop()
    gemma = os.path.join(TMP, "gemma3-tiny-f16.gguf")
    out = woolly("synth", "--shape", "test-tiny-gemma3", "--type", "f16", "-o", gemma)
    assert out.returncode == 0, out.stderr
    d = Daemon("engine:\n  context: 128\n  max_sessions: 1\n  prompt_chunk: 4\n", model=gemma)
    try:
        s = d.client.call({"op": "status"})
        # 7 layers of 128 positions, one 32-wide KV head in F16, keys and values: the full size.
        assert 0 < s["cache"]["kv_bytes"] < 7 * 128 * 32 * 2 * 2 // 4, s["cache"]
        def same_as_run(prompt, n):
            run = woolly("run", "-m", gemma, "-p", prompt, "-n", str(n), "--temp", "0", "--json")
            gen = woolly("generate", "--requests", d.requests, "--tokens", d.tokens, "-p", prompt,
                         "-n", str(n), "--temp", "0", "--json")
            assert run.returncode == 0 and gen.returncode == 0, (run.stderr, gen.stderr)
            run_lines = [json.loads(l) for l in run.stdout.splitlines() if '"token"' in l]
            gen_lines = [json.loads(l) for l in gen.stdout.splitlines() if '"token"' in l]
            assert [m["token"] for m in run_lines] == [m["token"] for m in gen_lines], prompt
        # A prompt longer than the window of 8 (one token generated: the slot keeps the prompt),
        # then it with more words: the kept sequence extended (a prefix-cache hit, its rings
        # holding the window), then a prompt that cuts it back past the rings (computed anew).
        first = "hello " * 5
        same_as_run(first, 1)
        before = d.client.call({"op": "status"})["prefix_cache"]
        same_as_run(first + "and more words", 10)
        after = d.client.call({"op": "status"})["prefix_cache"]
        assert after["hits"] == before["hits"] + 1 and after["reused_tokens"] > before["reused_tokens"] + 8, after
        same_as_run("hello " * 3, 10)
        assert d.client.call({"op": "status"})["prefix_cache"]["hits"] == after["hits"]
    finally:
        d.stop()


def main():
    d = Daemon("limits:\n  queue_depth: 8\nengine:\n  max_sessions: 4\n")
    tests = [v for k, v in globals().items()
             if k.startswith("test_") and k != "test_batched_streams_match_run"]
    passed, failed = run_tests(tests, d)
    code, err = d.stop()
    if code != 0:
        print(f"FAIL woollyd exited {code}: {err}")
        failed += 1
    more = run_tests([standalone_tests, endpoint_tests, slow_model_tests, mixture_and_window_tests,
                      test_batched_streams_match_run])
    passed, failed = passed + more[0], failed + more[1]
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
