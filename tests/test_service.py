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
import subprocess
import sys
import time

WOOLLYD, WOOLLY, SOURCE = sys.argv[1:4]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import Client  # noqa: E402
from woolly_harness import TMP, WAIT, Woollyd, run_tests  # noqa: E402

BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")


def Service(config_text, **options):
    """woollyd started as the unit starts it (tests/clients/woolly_harness.py): READY=1 on our
    NOTIFY_SOCKET, a config file we can rewrite (write) and reload."""
    return Woollyd(WOOLLYD, config_text, **options)


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
    only = os.environ.get("WOOLLY_TEST_ONLY", "")  # a part of a test's name: run only those
    passed, failed = run_tests([v for k, v in globals().items() if k.startswith("test_") and only in k])
    print(f"{passed} passed, {failed} failed")
    if failed:
        print(f"logs and configs kept in {TMP}")
    else:
        shutil.rmtree(TMP, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
