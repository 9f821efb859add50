#!/usr/bin/python3
"""test_service.py — woollyd as systemd runs it: the notify protocol on a NOTIFY_SOCKET of the
test's own (readiness, status, watchdog pings that stop when the pipeline is wedged, reloading,
stopping), SIGHUP reloads (good, bad, a new model, new endpoints) and SIGTERM's grace period.
Every wait is bounded; nothing here judges speed.

usage: test_service.py WOOLLYD WOOLLY SOURCE_DIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

WOOLLYD, WOOLLY, SOURCE = sys.argv[1:4]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client  # noqa: E402

TMP = tempfile.mkdtemp(prefix="woolly-service-")
BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")
WAIT = 60  # seconds any one expected event may take to arrive, at most


class Notifications:
    """A NOTIFY_SOCKET: every datagram woollyd sends, in order."""

    def __init__(self, name):
        self.path = os.path.join(TMP, name + ".notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            data = self.sock.recv(65536).decode()
            with self.cond:
                self.messages.append(dict(line.split("=", 1) for line in data.split("\n") if "=" in line))
                self.cond.notify_all()

    def wait_for(self, predicate, start=0, what="a notification"):
        """Index of the first message from `start` on that satisfies predicate."""
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                for i in range(start, len(self.messages)):
                    if predicate(self.messages[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {WAIT} s; got {self.messages[start:]}")
                self.cond.wait(left)


class Service:
    """woollyd started as the unit starts it, with a config file we can rewrite and reload."""
    count = 0
    running = []  # killed at the end, whatever a failed test left behind

    def __init__(self, config_text, watchdog_usec=None, hooks=False, journal=False):
        Service.count += 1
        self.name = f"s{Service.count}"
        self.config = os.path.join(TMP, self.name + ".yaml")
        self.requests = f"ipc://{TMP}/{self.name}-req"
        self.tokens = f"ipc://{TMP}/{self.name}-tok"
        self.write(config_text)
        self.notes = Notifications(self.name)
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = self.notes.path
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if hooks:
            env["WOOLLY_TEST_HOOKS"] = "1"
        self.log = open(os.path.join(TMP, self.name + ".log"), "w+")
        if journal:  # stderr is "the journal": JOURNAL_STREAM names its device and inode
            st = os.fstat(self.log.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        self.proc = subprocess.Popen([WOOLLYD, "--config", self.config], stderr=self.log, env=env)
        Service.running.append(self.proc)
        self.notes.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
        self.client = Client(self.requests, self.tokens, timeout=WAIT)

    def write(self, text, requests=None):
        with open(self.config, "w") as f:
            f.write(f"requests: {requests or self.requests}\ntokens: {self.tokens}\n{text}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self):
        code = self.proc.wait(timeout=WAIT)
        self.log.seek(0)
        return code, self.log.read()

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()


def status(s, client=None):
    return (client or s.client).call({"op": "status"})


def queue_streams(s, n, max_tokens=500, prefix="q"):
    """Admits n greedy streams (one runs at a time with max_sessions 1); returns their subscriptions."""
    subs = {}
    for i in range(n):
        sid = f"{prefix}{i}"
        subs[sid] = s.client.subscribe(sid)
    time.sleep(0.3)  # let the subscriptions reach the publisher (a late one is replayed anyway)
    for sid in subs:
        reply = s.client.call({"op": "generate", "id": sid, "prompt": "Once upon a time",
                               "max_tokens": max_tokens, "temperature": 0})
        assert reply["ok"], reply
    return subs


def finish_reasons(s, subs):
    """Follows every stream to its end (gap-free, replay filling what was missed)."""
    reasons = {}
    for sid, sub in subs.items():
        msgs = list(s.client.follow(sub, sid))
        assert [m["seq"] for m in msgs] == list(range(len(msgs))), sid
        reasons[sid] = msgs[-1]["finish_reason"]
        sub.close()
    return reasons


def test_notify_sequence_and_reloads():
    s = Service("engine:\n  max_sessions: 2\nlimits:\n  queue_depth: 4\n", watchdog_usec=400000)
    n = s.notes
    first_ready = n.wait_for(lambda m: m.get("READY") == "1")
    assert any(m.get("STATUS", "").startswith("loading stories260K.gguf") for m in n.messages[:first_ready]), n.messages
    assert n.messages[first_ready]["STATUS"].startswith("serving: 0 streams"), n.messages[first_ready]
    # Watchdog pings, each with the status line of the moment.
    ping = n.wait_for(lambda m: m.get("WATCHDOG") == "1", first_ready, "WATCHDOG=1")
    assert n.messages[ping]["STATUS"].startswith("serving: "), n.messages[ping]
    msgs = list(s.client.generate("Once upon a time", max_tokens=16, temperature=0))
    assert msgs[-1]["done"]
    n.wait_for(lambda m: m.get("WATCHDOG") == "1" and " 16 tokens" in m.get("STATUS", ""), ping,
               "a ping with the tokens generated")
    assert status(s)["config"]["generation"] == 1

    # A good reload: RELOADING=1 with MONOTONIC_USEC, then READY=1; new limits apply.
    s.write("engine:\n  max_sessions: 2\nlimits:\n  queue_depth: 4\n  max_tokens: 8\n"
            "  default_max_tokens: 8\n")
    mark = len(n.messages)
    s.signal(signal.SIGHUP)
    reloading = n.wait_for(lambda m: m.get("RELOADING") == "1", mark, "RELOADING=1")
    assert int(n.messages[reloading]["MONOTONIC_USEC"]) > 0
    n.wait_for(lambda m: m.get("READY") == "1", reloading, "READY=1 after the reload")
    st = status(s)
    assert st["config"]["generation"] == 2 and st["config"]["loaded_at"].endswith("Z"), st
    reply = s.client.call({"op": "generate", "prompt": "hi", "max_tokens": 9})
    assert not reply["ok"] and reply["error"]["code"] == "too_large", reply

    # A bad one is refused: one line in the log, a STATUS= saying so, the old config serves.
    s.write("engine:\n  max_sessions: lots\n")
    mark = len(n.messages)
    s.signal(signal.SIGHUP)
    n.wait_for(lambda m: m.get("STATUS", "").startswith("reload refused: "), mark, "a refusal")
    assert status(s)["config"]["generation"] == 2
    assert list(s.client.generate("Once upon a time", max_tokens=8, temperature=0))[-1]["done"]
    refusals = [l for l in s.log_text().splitlines() if "reload refused" in l]
    assert len(refusals) == 1 and "key 'engine.max_sessions'" in refusals[0], refusals

    # A new model and new endpoints: loaded beside the old one, a stream admitted before the
    # reload finishes on the old model, and new requests go to the new one on the new endpoint.
    tiny = os.path.join(TMP, "tiny.gguf")
    out = subprocess.run([WOOLLY, "synth", "--shape", "test-tiny", "--type", "q8_0", "-o", tiny],
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    subs = queue_streams(s, 3, max_tokens=8, prefix="before")
    new_requests = f"ipc://{TMP}/{s.name}-req2"
    s.write(f"model: {tiny}\nengine:\n  max_sessions: 1\n", requests=new_requests)
    mark = len(n.messages)
    s.signal(signal.SIGHUP)
    reloading = n.wait_for(lambda m: m.get("RELOADING") == "1", mark, "RELOADING=1")
    n.wait_for(lambda m: m.get("READY") == "1", reloading, "READY=1 after the model reload")
    assert set(finish_reasons(s, subs).values()) <= {"length", "eos"}
    moved = Client(new_requests, s.tokens, timeout=WAIT)
    st = status(s, moved)
    assert st["config"]["generation"] == 3 and st["model"]["path"] == tiny, st
    assert st["model"]["n_vocab"] == 320
    assert list(moved.generate("hi", max_tokens=4, temperature=0))[-1]["done"]
    old = Client(s.requests, s.tokens, timeout=1)
    try:
        old.call({"op": "status"})
        raise AssertionError("the old requests endpoint still answers")
    except TimeoutError:
        pass
    log = s.log_text()
    assert "the model of the previous configuration finished its streams" in log, log

    # SIGTERM: STOPPING=1, then a clean exit; no prompt text in the log at the default level.
    mark = len(n.messages)
    s.signal(signal.SIGTERM)
    n.wait_for(lambda m: m.get("STOPPING") == "1", mark, "STOPPING=1")
    code, log = s.wait()
    assert code == 0, log
    assert "Once upon a time" not in log, log
    for event in ("loaded ", "serving ", "admitted ", "finished ", "refused ", "reloaded", "stopped"):
        assert event in log, (event, log)


def test_reload_with_a_new_high_water_mark():
    # A new publisher.high_water_mark reopens the tokens socket (set on a bound socket, libzmq
    # 4.3.4 can crash). Reloads come while streams run and subscribers come and go; every
    # stream still reaches its subscriber whole, the gap while it reconnects filled by replay.
    config = "engine:\n  max_sessions: 1\nlimits:\n  queue_depth: 8\npublisher:\n  high_water_mark: {}\n"
    s = Service(config.format(1000))
    subs = queue_streams(s, 6, max_tokens=300)
    # The last one waits behind 1500 tokens: queued, it replays as nothing yet, not not_found.
    queued = s.client.call({"op": "replay", "id": "q5"})
    assert queued == {"ok": True, "id": "q5", "messages": [], "first_available_seq": 0,
                      "finished": False}, queued
    for i, hwm in enumerate((200, 1000, 300, 1000)):
        s.write(config.format(hwm))
        mark = len(s.notes.messages)
        s.signal(signal.SIGHUP)
        s.notes.wait_for(lambda m: m.get("READY") == "1", mark, f"READY=1 after reload {i + 1}")
        # a short stream followed to its end: a subscriber that comes and goes
        assert list(s.client.generate("Once", max_tokens=4, temperature=0))[-1]["done"]
    assert set(finish_reasons(s, subs).values()) <= {"length", "eos"}
    assert status(s)["config"]["generation"] == 5
    s.signal(signal.SIGTERM)
    code, log = s.wait()
    assert code == 0, log
    assert log.count("tokens socket reopened") == 4, log


def test_watchdog_stops_when_the_pipeline_is_wedged():
    s = Service("", watchdog_usec=400000, hooks=True)
    n = s.notes
    ready = n.wait_for(lambda m: m.get("READY") == "1")
    n.wait_for(lambda m: m.get("WATCHDOG") == "1", ready, "WATCHDOG=1")
    s.signal(signal.SIGUSR2)  # test hook: the scheduler stops answering
    wedged = n.wait_for(lambda m: m.get("STATUS", "").startswith("not answering"), ready, "not answering")
    # Three more probes come and go unanswered: no ping among them, nor after.
    n.wait_for(lambda m: True, wedged + 3, "three more status lines")
    assert all("WATCHDOG" not in m for m in n.messages[wedged:]), n.messages[wedged:]
    s.proc.kill()
    s.wait()


def test_grace_period_shutdown():
    # Everything admitted before SIGTERM finishes, and nothing new is admitted meanwhile.
    s = Service("shutdown_grace_seconds: 120\nengine:\n  max_sessions: 1\nlimits:\n  queue_depth: 12\n")
    subs = queue_streams(s, 10)
    s.signal(signal.SIGTERM)
    reasons = finish_reasons(s, subs)
    assert "shutdown" not in reasons.values(), reasons
    code, log = s.wait()
    assert code == 0 and "running streams have 120 s to finish" in log, log

    # A second SIGTERM ends the streams still running at once, each with "shutdown".
    s = Service("shutdown_grace_seconds: 120\nengine:\n  max_sessions: 1\nlimits:\n  queue_depth: 12\n")
    subs = queue_streams(s, 10)
    s.signal(signal.SIGTERM)
    s.notes.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
    s.signal(signal.SIGTERM)
    reasons = finish_reasons(s, subs)
    code, log = s.wait()
    assert code == 0 and "a second signal: ending the streams still running" in log, log
    assert set(reasons.values()) <= {"length", "eos", "shutdown"}, reasons

    # A grace period of 0: what is running ends with "shutdown" straight away. Logging to the
    # journal, every line carries its priority (<6> info, <4> warning, <3> error).
    s = Service("shutdown_grace_seconds: 0\n", journal=True)
    subs = queue_streams(s, 1, max_tokens=500)
    s.signal(signal.SIGINT)
    finish_reasons(s, subs)
    code, log = s.wait()
    assert code == 0 and "<6>no grace period: ending the streams" in log, log
    assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in log.splitlines()), log


def test_sigterm_delivers_every_message_before_exit():
    # A stream running at SIGTERM finishes in its grace period, and every one of its messages,
    # the final one included, reaches a subscriber before the daemon is gone (no replay then).
    s = Service("shutdown_grace_seconds: 60\n")
    sub = s.client.subscribe("last")
    time.sleep(0.3)
    assert s.client.call({"op": "generate", "id": "last", "prompt": "Once upon a time",
                          "max_tokens": 400, "temperature": 0})["ok"]
    msgs = [json.loads(sub.recv_multipart()[1])]
    s.signal(signal.SIGTERM)
    code, log = s.wait()
    while sub.poll(2000):
        msgs.append(json.loads(sub.recv_multipart()[1]))
    assert code == 0, log
    assert [m["seq"] for m in msgs] == list(range(len(msgs))), [m["seq"] for m in msgs][-5:]
    assert msgs[-1].get("done") and msgs[-1]["finish_reason"] in ("length", "eos"), msgs[-1]


def main():
    passed = failed = 0
    only = os.environ.get("WOOLLY_TEST_ONLY", "")  # a part of a test's name: run only those
    for name, test in [(k, v) for k, v in globals().items() if k.startswith("test_") and only in k]:
        try:
            test()
            print(f"PASS {name}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
            failed += 1
    for proc in Service.running:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{passed} passed, {failed} failed")
    if failed:
        print(f"logs and configs kept in {TMP}")
    else:
        shutil.rmtree(TMP, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
