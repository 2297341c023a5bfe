"""Health judgement (pure), the health thread's decisions, and thread supervision — with fakes."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from edge_holistic.config import HealthConfig
from edge_holistic.health import MemoryGuard
from edge_holistic.health.watchdog import HealthThread, Readings, ThreadSupervisor, judge, supervised, wedged

OK = Readings(unhealthy_after=60, stall_timeout=10, last_frame_age=0.1, progress_age=0.1, loop_age=0.01)


def test_a_running_daemon_is_healthy():
    assert judge(OK) == (True, "") and wedged(OK) is None


@pytest.mark.parametrize("state", ["running", "reopening", "starting"])
def test_a_source_that_is_down_is_red_but_not_wedged(state):
    r = replace(OK, source_state=state, source_error="cannot open /dev/video0", last_frame_age=95,
                progress_age=95)
    healthy, reason = judge(r)
    assert not healthy and reason.startswith("source down") and "/dev/video0" in reason
    assert wedged(r) is None  # the grabber retries; a restart would not bring the camera back


@pytest.mark.parametrize("readings, needle", [
    (replace(OK, progress_age=61), "no frame processed for 61 s while the source delivers"),
    (replace(OK, loop_age=70), "frame loop stuck"),
    (replace(OK, dead_threads=("publisher",), critical_dead=("publisher",)), "thread died: publisher"),
])
def test_wedged_withholds_the_watchdog(readings, needle):
    assert needle in wedged(readings)
    healthy, reason = judge(readings)
    assert not healthy and needle in reason


def test_paused_is_not_wedged_and_a_dead_helper_thread_is_red_only():
    assert judge(replace(OK, paused=True, progress_age=600)) == (True, "")
    r = replace(OK, dead_threads=("stats",), critical_dead=())
    assert wedged(r) is None and judge(r) == (False, "thread died: stats")


def test_an_ended_file_is_neither_down_nor_wedged():
    r = replace(OK, source_state="ended", last_frame_age=500, progress_age=500)
    assert judge(r) == (True, "")


class FakeNotifier:
    def __init__(self):
        self.sent = []

    def watchdog(self):
        self.sent.append("WATCHDOG=1")

    def status(self, text):
        self.sent.append("STATUS=" + text)


class Harness:
    def __init__(self, readings=OK, watchdog_every=1.0, soft=100, hard=200):
        self.readings = readings
        self.rss = 50
        self.shed, self.hard, self.deaths = [], [], []
        self.notifier = FakeNotifier()
        self.guard = MemoryGuard(HealthConfig(memory_soft_mb=soft, memory_hard_mb=hard), cgroup_max=None,
                                 cgroup_high=None)
        real_check = self.guard.check
        self.guard.check = lambda: real_check(self.rss * 1024 * 1024)
        self.thread = HealthThread(self.notifier, watchdog_every, lambda: self.readings, self.guard, lambda: 1.0,
                                   lambda level, reason: self.shed.append((level, reason)), self.hard.append,
                                   lambda: "line", lambda name, err: self.deaths.append(name))
        self.due = {}
        self.t = 0.0

    def step(self, seconds=1.0):
        self.t += seconds
        return self.thread.step(self.t, self.due)


def test_health_thread_pings_while_not_wedged_even_with_the_source_down():
    h = Harness()
    h.step()
    assert h.notifier.sent.count("WATCHDOG=1") == 1 and h.thread.state == "pinging"
    h.readings = replace(OK, source_state="reopening", last_frame_age=300, progress_age=300)
    h.step()
    assert h.notifier.sent.count("WATCHDOG=1") == 2 and h.thread.last[0] is False
    h.readings = replace(OK, progress_age=100)
    h.step()
    assert h.notifier.sent.count("WATCHDOG=1") == 2 and h.thread.state == "withheld"
    h.readings = OK
    h.step()
    assert h.notifier.sent.count("WATCHDOG=1") == 3 and h.thread.state == "pinging"


def test_health_thread_hands_memory_changes_over_once_and_stops_at_hard():
    h = Harness()
    h.step()
    assert h.shed == []
    h.rss = 150
    h.step()
    h.step()
    assert h.shed == [("soft", "RSS 150 MB > soft limit 100 MB")]  # one hand-over per change
    h.rss = 40
    h.step()
    assert [lvl for lvl, _ in h.shed] == ["soft", "ok"]
    h.rss = 250
    assert h.step() is False and "hard limit 200" in h.hard[0]


def test_supervisor_reports_each_death_once():
    deaths = []
    sup = ThreadSupervisor(lambda name, err: deaths.append(name))
    t = threading.Thread(target=lambda: None)
    live = threading.Event()
    alive = threading.Thread(target=live.wait)
    alive.start()
    sup.watch("sender", lambda: t)
    sup.watch("network", lambda: alive)
    sup.watch("later", lambda: None)
    assert sup.check() == ((), ())  # not started yet: not dead
    t.start()
    t.join()
    assert sup.check() == (("sender",), ("sender",))
    assert sup.check() == (("sender",), ("sender",)) and deaths == ["sender"]
    live.set()
    alive.join()


def test_supervised_body_logs_and_counts_its_death(caplog):
    deaths = []

    def body():
        raise ValueError("NaN in frame 7")

    t = threading.Thread(target=supervised("publisher", body, lambda n, e: deaths.append((n, e))))
    t.start()
    t.join()
    assert deaths == [("publisher", "ValueError: NaN in frame 7")]
    assert "thread publisher died" in caplog.text


def test_memory_guard_keeps_its_level_across_a_reload():
    mb = 1024 * 1024
    g = MemoryGuard(HealthConfig(memory_soft_mb=100), cgroup_max=None, cgroup_high=None)
    assert g.check(150 * mb).level == "soft"
    g2 = g.reconfigured(HealthConfig(memory_soft_mb=110))
    assert g2.level == "soft" and g2.soft_mb == 110
    v = g2.check(30 * mb)
    assert v.level == "ok" and v.changed
