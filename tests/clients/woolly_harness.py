"""woolly_harness.py — the one way the tests and the benchmarks run woollyd: a process with
its own ipc endpoints and config file in a temporary folder, started, waited for (READY=1 on a
NOTIFY_SOCKET of the harness's, as systemd waits), talked to with woolly_client.Client, and
stopped. Every wait is bounded, and a daemon that exits while it is waited for fails at once
with its log.

    from woolly_harness import Woollyd
    d = Woollyd(WOOLLYD, "engine:\\n  max_sessions: 2\\n")
    for message in d.client.generate("Once upon a time", max_tokens=8, temperature=0): ...
    code, log = d.stop()
"""
import atexit
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback

from woolly_client import Client

WAIT = 60  # seconds any one expected event may take, at most
TMP = tempfile.mkdtemp(prefix="woolly-harness-")


class Notifications:
    """A NOTIFY_SOCKET: every datagram woollyd sends, in order, with its arrival time."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):  # a daemon of the same name before (a restart)
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # dicts of KEY=VALUE
        self.times = []     # time.monotonic() of each
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            data = self.sock.recv(65536).decode()
            with self.cond:
                self.messages.append(dict(line.split("=", 1) for line in data.split("\n") if "=" in line))
                self.times.append(time.monotonic())
                self.cond.notify_all()

    def wait_for(self, predicate, start=0, what="a notification", alive=None, timeout=WAIT):
        """Index of the first message from `start` on that satisfies predicate. `alive()`, when
        given, is asked while waiting: False (the process exited) fails at once."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.messages)):
                    if predicate(self.messages[i]):
                        return i
                if alive is not None and not alive():
                    raise AssertionError(f"woollyd exited while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s; got {self.messages[start:]}")
                self.cond.wait(min(left, 0.2) if alive is not None else left)


def free_port():
    """A TCP port on loopback that nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Woollyd:
    """One woollyd. `config` is YAML text; the harness adds the endpoints (and `model` when
    given) on top. `flags` are more command-line flags; `env` more environment. Its stderr goes
    to a log file (log_text()), or to `stderr` (a file descriptor) when given. HTTP is off
    unless `http` is given: then it listens on a free loopback port (self.http_port), and
    `http` (when a string) is more keys of the http section, each line indented by two."""
    count = 0
    running = []  # killed at exit, whatever a failed test left behind

    def __init__(self, woollyd, config="", model=None, name=None, flags=(), env=None,
                 watchdog_usec=None, hooks=False, journal=False, keys=None, client_timeout=WAIT,
                 ready=True, wait=WAIT, stderr=None, http=None):
        Woollyd.count += 1
        self.http = http
        self.http_port = free_port() if http is not None else None
        self.woollyd = woollyd
        self.name = name or f"w{Woollyd.count}-{os.getpid()}"
        self.requests = f"ipc://{TMP}/{self.name}-req"
        self.tokens = f"ipc://{TMP}/{self.name}-tok"
        self.config = os.path.join(TMP, self.name + ".yaml")
        self.model = model
        self.keys = keys or {}
        self.write(config)
        self.notes = Notifications(os.path.join(TMP, self.name + ".notify"))
        environment = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        environment["NOTIFY_SOCKET"] = self.notes.path
        if watchdog_usec:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        if hooks:
            environment["WOOLLY_TEST_HOOKS"] = "1"
        environment.update(env or {})
        self.log = open(os.path.join(TMP, self.name + ".log"), "w+")
        if journal:  # stderr is "the journal": JOURNAL_STREAM names its device and inode
            st = os.fstat(self.log.fileno())
            environment["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        self.started = time.monotonic()
        self.proc = subprocess.Popen([woollyd, "--config", self.config, *flags],
                                     stderr=self.log if stderr is None else stderr, env=environment)
        Woollyd.running.append(self.proc)
        self.client = Client(self.requests, self.tokens, timeout=client_timeout, **self.keys)
        if ready:
            self.wait_ready(timeout=wait)

    def write(self, text, requests=None):
        """Writes the config file (for a reload): the endpoints, the model, then `text`."""
        head = f"requests: {requests or self.requests}\ntokens: {self.tokens}\n"
        if self.http_port is None:
            head += 'http:\n  listen: ""\n'
        else:
            head += f"http:\n  listen: 127.0.0.1:{self.http_port}\n"
            if isinstance(self.http, str):
                head += self.http
        if self.model:
            head += f"model: {self.model}\n"
        with open(self.config, "w") as f:
            f.write(head + text)

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, start=0, timeout=WAIT):
        """Waits for READY=1 (from notification `start` on); fails with the log if it exits."""
        try:
            return self.notes.wait_for(lambda m: m.get("READY") == "1", start, "READY=1",
                                       alive=self.alive, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; exit {self.proc.poll()}; log:\n{self.log_text()}")

    def new_client(self, timeout=WAIT, **keys):
        return Client(self.requests, self.tokens, timeout=timeout, **(keys or self.keys))

    def status(self):
        return self.client.call({"op": "status"})

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def wait(self, timeout=WAIT):
        """The exit code and the log, once it has exited by itself (or been signalled)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"woollyd did not exit within {timeout} s")
        return code, self.log_text()

    def stop(self, sig=None, timeout=WAIT):
        """SIGTERM (or `sig`), then its exit code and log."""
        if self.alive():
            self.proc.send_signal(sig or signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def run_tests(tests, *args):
    """Runs each test(*args), printing PASS or FAIL (with the traceback) for each; returns
    (passed, failed)."""
    passed = failed = 0
    for test in tests:
        try:
            test(*args)
            print(f"PASS {test.__name__}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {test.__name__}\n{traceback.format_exc()}", flush=True)
            failed += 1
    return passed, failed


def _kill_leftovers():
    for proc in Woollyd.running:
        if proc.poll() is None:
            proc.kill()


atexit.register(_kill_leftovers)
