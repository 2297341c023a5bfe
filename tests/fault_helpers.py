"""Helpers for the fault-injection suite (tests/test_faults_*.py): real processes only.

- ``ThrottleProxy``: a loopback TCP proxy between the daemon and mosquitto whose
  daemon->broker direction can be throttled to a byte rate (a slow uplink);
- ``proc_status``: RSS, threads and fds of a process from /proc;
- ``NotifyListener``: a NOTIFY_SOCKET the daemon's systemd notifications go to;
- ``latest_stats`` / ``status_of``: the newest ``stats`` / ``status`` document seen;
- ``run_cases_concurrently``: independent fault cases side by side, each in its own folder.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from mqtt_fixtures import Subscriber, free_port
from soak import proc_sample  # scripts/ is on sys.path through mqtt_fixtures; stdlib-only at import


def proc_status(pid: int) -> dict:
    """RSS (MB), threads and fds of ``pid``: the soak script's reader, one piece of code for both."""
    return proc_sample(pid)


def run_cases_concurrently(cases: Dict[str, Callable], tmp_path: Path, broker, results: dict,
                           timeout: float) -> None:
    """Run ``fn(folder, broker, results)`` for each named case in its own thread and folder
    (tmp_path/name), sharing one broker: the cases are independent and mostly wait, so side by
    side they cost the slowest one. The first error a case raised is raised here."""
    errors: list = []

    def run(name: str, fn: Callable) -> None:
        folder = tmp_path / name
        folder.mkdir()
        try:
            fn(folder, broker, results)
        except BaseException as e:  # re-raised in the test thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=item) for item in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]


def latest_stats(sub: Subscriber, since: float = 0.0) -> Optional[dict]:
    msgs = sub.of("stats", since)
    return msgs[-1].json() if msgs else None


def wait_stats(sub: Subscriber, pred, timeout: float, since: float = 0.0) -> Optional[dict]:
    """The first stats document (after ``since``) for which ``pred`` holds."""
    m = sub.wait_for("stats", lambda m: pred(m.json()), timeout=timeout, since=since)
    return m.json() if m else None


class ThrottleProxy:
    """127.0.0.1:port -> 127.0.0.1:target. ``rate`` (bytes/s) limits the client->server direction.

    Throttling is done by reading the client's socket slowly (a token bucket) with a
    small receive buffer, so the backlog builds up where a slow uplink builds it: in
    the sender's process, not in this proxy.
    """

    def __init__(self, target_port: int, rcvbuf: int = 16384) -> None:
        self.target = target_port
        self.port = free_port()
        self.rate: Optional[float] = None  # None = unlimited
        self.forwarded = 0
        self._rcvbuf = rcvbuf
        self._stop = threading.Event()
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by accepted sockets
        self._lsock.bind(("127.0.0.1", self.port))
        self._lsock.listen(8)
        self._lsock.settimeout(0.2)
        self._socks: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        src.settimeout(0.2)
        tokens, last = 0.0, time.monotonic()
        try:
            while not self._stop.is_set():
                rate = self.rate if upstream else None
                chunk = 65536
                if rate:
                    now = time.monotonic()
                    tokens = min(rate * 0.1, tokens + (now - last) * rate)
                    last = now
                    if tokens < 1024:
                        time.sleep(0.01)
                        continue
                    chunk = int(min(chunk, tokens))
                try:
                    data = src.recv(chunk)
                except socket.timeout:
                    continue
                if not data:
                    break
                if rate:
                    tokens -= len(data)
                else:
                    last = time.monotonic()
                dst.sendall(data)
                if upstream:
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._lsock.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


class NotifyListener:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records (t, text)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.received: List[Tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.received.append((time.monotonic(), self.sock.recv(4096).decode(errors="replace")))
            except socket.timeout:
                continue
            except OSError:
                return

    def pings(self, since: float = 0.0) -> List[float]:
        return [t for t, m in list(self.received) if "WATCHDOG=1" in m.split("\n") and t >= since]

    def close(self) -> None:
        self._stop.set()
        self._t.join(1)
        self.sock.close()


def status_text(sub: Subscriber, since: float = 0.0) -> str:
    msgs = sub.of("status", since)
    return msgs[-1].text if msgs else ""


def json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


# -- the CI soak, started in the background at collection so it overlaps the other tests ----
SOAK_ARGS = ["--minutes", "2", "--restart-every", "40", "--warmup", "30", "--sample", "2"]
_soak = {}


def start_background_soak(workdir) -> None:
    import subprocess
    from pathlib import Path

    if _soak:
        return
    repo = Path(__file__).resolve().parents[1]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = open(workdir / "soak.out", "wb")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    proc = subprocess.Popen([sys.executable, str(repo / "scripts" / "soak.py"), *SOAK_ARGS,
                             "--workdir", str(workdir / "run"), "--json", str(workdir / "soak.json")],
                            cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    _soak.update(proc=proc, dir=workdir, out=out, started=time.monotonic())


def background_soak():
    return _soak or None


def stop_background_soak() -> None:
    proc = _soak.get("proc")
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except Exception:  # noqa: BLE001
            proc.kill()
    if _soak.get("out"):
        _soak["out"].close()
