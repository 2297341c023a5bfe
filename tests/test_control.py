"""Control logic with fakes: one apply path for commands, reload and load shedding.

Pure logic: the real-process tests (test_daemon.py) run the same code in the daemon.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace

import pytest
import yaml

from edge_holistic.config import ConfigError, ConfigIssue, HealthConfig, load_config
from edge_holistic.daemon.control import EXTERNAL_LIMIT, Builder, Control, Parts, check_max_fps
from edge_holistic.health import MemoryGuard

INSTALLED = {"pose_model": ("lite", "full", "heavy"), "hand_model": ("lite", "full")}


@dataclass(frozen=True)
class Opts:
    task: str = "pose"
    pose_model: str = "full"
    hand_model: str = "full"
    precision: str = "float"
    threads: int = 1
    smooth: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


class FakeEngine:
    def __init__(self, **wanted):
        self.effective_options = replace(Opts(), **{k: v for k, v in wanted.items() if k in Opts.__dataclass_fields__})
        self.updates = []
        self.closed = False
        self.flushed = False
        self.fail_update = None

    @property
    def models(self):
        return {"pose": f"pose_landmark_{self.effective_options.pose_model}@float32"}

    def update(self, **changes):
        if self.fail_update:
            raise self.fail_update
        for key in ("pose_model", "hand_model"):
            if key in changes and changes[key] not in INSTALLED[key]:
                raise ValueError(f"{key}: unknown model {changes[key]!r}")
        self.updates.append(changes)
        self.effective_options = replace(self.effective_options, **changes)
        return self.effective_options

    def flush(self, timeout=None):
        self.flushed = True
        return True

    def close(self):
        self.closed = True


class FakePart:
    """A grabber or MQTT session: built, started, stopped."""

    def __init__(self, name):
        self.name = name
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self, *args):
        self.stopped = True


class FakeBuilder(Builder):
    def __init__(self):
        self.configs = []  # what load_config returns / raises next
        self.fail = {}  # part name -> exception
        self.built = []

    def load_config(self, path, overrides):
        item = self.configs.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def _make(self, name, factory):
        if name in self.fail:
            raise self.fail[name]
        part = factory()
        self.built.append(part)
        return part

    def make_engine(self, cfg, wanted=None):
        raise AssertionError("a reload changes the running engine through update(), never builds one")

    def make_grabber(self, cfg):
        return self._make("grabber", lambda: FakePart("grabber"))

    def make_session(self, cfg):
        return self._make("session", lambda: FakePart("session"))

    def check_models(self, changes):
        for key in ("pose_model", "hand_model"):
            if key in changes and changes[key] not in INSTALLED[key]:
                raise ValueError(f"{key}: unknown model {changes[key]!r}")


def cfg(**sections):
    doc = {"source": {"type": "v4l2"},
           "pipeline": {"pose_model": "full", "threads": 1, "precision": "float", "max_fps": 10}}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    c = load_config(text=yaml.safe_dump(doc), models=False)
    c.path = "/etc/edge-holistic/config.yaml"
    return c


@pytest.fixture
def setup():
    results = []
    memory_updates = []
    builder = FakeBuilder()
    parts = Parts(cfg=cfg(), engine=FakeEngine(threads=1), grabber=FakePart("grabber"), session=FakePart("session"))
    control = Control(parts, builder, on_result=results.append, on_memory=memory_updates.append)
    return control, builder, results, memory_updates


def send(control, doc, origin="mqtt"):
    control.submit_payload(json.dumps(doc).encode() if isinstance(doc, dict) else doc, origin)
    control.apply_pending()


# -- commands ---------------------------------------------------------------------------------
def test_set_switches_model_and_reports(setup):
    control, _, results, _ = setup
    send(control, {"id": "a", "cmd": "set", "pose_model": "lite", "max_fps": 5})
    assert results[-1]["ok"] is True and results[-1]["applied"] == {"pose_model": "lite", "max_fps": 5.0}
    assert results[-1]["origin"] == "mqtt" and results[-1]["id"] == "a"
    assert control.parts.engine.effective_options.pose_model == "lite"
    assert control.max_fps == 5.0


def test_set_is_all_or_nothing(setup):
    control, _, results, _ = setup
    send(control, {"id": "b", "cmd": "set", "pose_model": "gigantic", "max_fps": 5})
    assert results[-1]["ok"] is False and "gigantic" in results[-1]["error"]
    assert control.max_fps == 10.0 and control.parts.engine.updates == []
    assert control.counters["commands_rejected"] == 1


@pytest.mark.parametrize("value", [0.01, 0.0333])
def test_max_fps_below_two_frames_per_unhealthy_window_is_refused(setup, value):
    control, _, results, _ = setup  # unhealthy_after defaults to 60 s: floor 2/60 = 0.0333...
    send(control, {"cmd": "set", "max_fps": value})
    # Refused with the key named: by the command parser's range (0 or >= 0.1) or, for values
    # the range lets through, by the watchdog floor (2 frames per health.unhealthy_after).
    assert results[-1]["ok"] is False and "max_fps" in results[-1]["error"]
    assert control.max_fps == 10.0
    send(control, {"cmd": "set", "max_fps": 0})  # 0 = no cap stays valid
    assert results[-1]["ok"] is True and control.max_fps == 0.0


def test_check_max_fps_names_the_key():
    with pytest.raises(ValueError, match="^pipeline.max_fps must be 0 or at least"):
        check_max_fps(0.01, 60, "pipeline.max_fps")
    assert check_max_fps(1, 60) == 1.0


@pytest.mark.parametrize("cmd, needle", [
    ({"cmd": "set", "model_path": "/etc/passwd"}, "model_path"),
    ({"cmd": "set", "max_fps": float("nan")}, "not valid JSON"),
    ({"cmd": "explode"}, "unknown cmd"),
    (["not", "a", "dict"], "JSON object"),
])
def test_web_commands_take_the_mqtt_validation(setup, cmd, needle):
    control, _, results, _ = setup
    done = threading.Event()

    def frame_loop():
        while not done.is_set():
            control.apply_pending()
            done.wait(0.01)

    applier = threading.Thread(target=frame_loop)
    applier.start()
    try:
        res = control.command(cmd, origin="web", timeout=5)
    finally:
        done.set()
        applier.join()
    assert res["ok"] is False and needle in res["error"], res
    assert res["origin"] == "web" and results[-1] == res  # also published on cmd/result


def test_web_command_waits_for_the_frame_loop(setup):
    control, _, results, _ = setup
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", control.command({"id": "w", "cmd": "pause"}, "web", 5)))
    t.start()
    while not control.pending:
        pass
    assert "r" not in out  # nothing is applied outside the frame loop
    control.apply_pending()
    t.join(5)
    assert out["r"] == {"id": "w", "cmd": "pause", "ok": True, "state": "paused", "origin": "web"}
    assert control.paused


def test_web_command_times_out_with_an_error_when_no_loop_runs(setup):
    control, _, _, _ = setup
    res = control.command({"cmd": "resume"}, "homeassistant", timeout=0.05)
    assert res["ok"] is False and "no result within" in res["error"]


def test_command_queue_is_bounded_and_drops_are_answered(setup):
    control, _, results, _ = setup
    for i in range(EXTERNAL_LIMIT + 3):
        control.submit_payload(json.dumps({"id": str(i), "cmd": "status"}).encode())
    assert control.counters["commands_dropped"] == 3
    assert [r["ok"] for r in results] == [False] * 3 and "queue full" in results[0]["error"]
    control.post_shed("soft", "RSS 900 MB > soft limit 800 MB")  # internal changes are never refused
    control.apply_pending()
    assert len(results) == 3 + EXTERNAL_LIMIT and control.shed["active"]


def test_pause_resume_and_resume_restarts_the_progress_clock(setup):
    control, _, results, _ = setup
    resumed = []
    control.on_resume = lambda: resumed.append(1)
    send(control, {"cmd": "pause"})
    assert control.paused and results[-1]["state"] == "paused"
    send(control, {"cmd": "resume"})
    assert not control.paused and results[-1]["state"] == "running" and resumed == [1]


def test_an_internal_error_becomes_a_result_not_an_exception(setup):
    control, _, results, _ = setup
    control.parts.engine.fail_update = RuntimeError("boom")
    send(control, {"cmd": "set", "pose_model": "lite"})
    assert results[-1]["ok"] is False and "boom" in results[-1]["error"]


# -- reload ------------------------------------------------------------------------------------
def _issue():
    return ConfigError([ConfigIssue("pipeline.pose_model", "unknown model 'enormous'", 3, "config.yaml")])


@pytest.mark.parametrize("failure, needle", [
    ("config", "pipeline.pose_model"),
    ("permission", "PermissionError"),
    ("grabber", "no such camera"),
    ("session", "bad TLS key"),
    ("update", "unknown model 'heavy2'"),
    ("max_fps", "pipeline.max_fps must be 0 or at least"),
])
def test_reload_keeps_the_old_config_on_any_failure(setup, failure, needle):
    control, builder, _, memory_updates = setup
    old = control.parts
    # A new config that changes everything, so every part would be rebuilt.
    new = cfg(source={"device": "/dev/video1"}, mqtt={"port": 1884})
    new.pipeline = replace(new.pipeline, threads=2)
    if failure == "config":
        builder.configs.append(_issue())
    elif failure == "permission":
        builder.configs.append(PermissionError(13, "Permission denied", "/etc/edge-holistic"))
    else:
        builder.configs.append(new)
    if failure in ("grabber", "session"):
        builder.fail[failure] = {"grabber": OSError("no such camera"), "session": ValueError("bad TLS key")}[failure]
    if failure == "update":
        new.pipeline = replace(new.pipeline, threads=1, pose_model="heavy2")
    if failure == "max_fps":
        new.pipeline = replace(new.pipeline, max_fps=0.01)
    control.hup_pending = True
    assert control.apply_pending() is True  # status changed: it carries the error
    assert control.parts is old and control.parts.cfg.pipeline.max_fps == 10.0
    assert control.config_error and needle in control.config_error, control.config_error
    assert "keeping the running config" in control.config_error
    assert not old.grabber.stopped and not old.session.stopped and not old.engine.closed
    assert old.engine.effective_options.threads == 1  # the engine got nothing of the new config
    for part in builder.built:  # whatever was built for the new config is released again
        assert getattr(part, "closed", False) or getattr(part, "stopped", False)
        assert not getattr(part, "started", False)
    assert memory_updates == [] and control.counters["reloads_rejected"] == 1


def test_reload_builds_then_swaps_everything(setup):
    control, builder, _, memory_updates = setup
    old = control.parts
    new = cfg(source={"device": "/dev/video1"}, mqtt={"port": 1884}, health={"memory_soft_mb": 300})
    new.pipeline = replace(new.pipeline, threads=2, max_fps=4)
    builder.configs.append(new)
    control.config_error = "an earlier rejection"
    swaps = []
    control.on_swap.append(lambda before, after: swaps.append((before, after)))
    control.hup_pending = True
    control.apply_pending()
    p = control.parts
    assert p is not old and p.cfg is new and control.config_error is None
    assert old.grabber.stopped and old.session.stopped and not old.engine.closed
    assert p.grabber.started and p.session.started and p.engine is old.engine
    assert old.engine.updates == [{"threads": 2}]  # validated and loaded now, in force from the next frame
    assert control.max_fps == 4.0 and memory_updates == [new.health] and swaps == [(old, p)]


def test_reload_with_only_a_model_change_updates_the_running_engine(setup):
    control, builder, _, _ = setup
    old = control.parts
    new = cfg()
    new.pipeline = replace(new.pipeline, pose_model="lite")
    builder.configs.append(new)
    control.request_reload()
    control.apply_pending()
    assert control.parts.engine is old.engine and old.engine.updates == [{"pose_model": "lite"}]
    assert control.parts.grabber is old.grabber and not old.grabber.stopped and builder.built == []


# -- load shedding -------------------------------------------------------------------------------
def test_shedding_on_and_off(setup):
    control, _, _, _ = setup
    control.post_shed("soft", "RSS 900 MB > soft limit 800 MB")
    assert control.apply_pending() is True
    assert control.shed["active"] and "soft limit" in control.shed["reason"]
    assert control.parts.engine.effective_options.pose_model == "lite" and control.max_fps == 5.0
    control.post_shed("ok", "")
    control.apply_pending()
    assert not control.shed["active"] and control.parts.engine.effective_options.pose_model == "full"
    assert control.max_fps == 10.0


def test_shed_requests_coalesce_to_the_newest(setup):
    control, _, _, _ = setup
    control.post_shed("soft", "high")
    control.post_shed("ok", "")
    control.apply_pending()
    assert not control.shed["active"] and control.parts.engine.updates == []


def test_a_set_while_shedding_waits_for_the_end_of_shedding(setup):
    control, _, results, _ = setup
    control.post_shed("soft", "high")
    control.apply_pending()
    send(control, {"cmd": "set", "pose_model": "heavy"})
    assert results[-1]["ok"] and "after load shedding" in results[-1]["effective"]
    assert control.parts.engine.effective_options.pose_model == "lite"
    send(control, {"cmd": "set", "pose_model": "enormous"})  # still validated while shedding
    assert results[-1]["ok"] is False
    control.post_shed("ok", "")
    control.apply_pending()
    assert control.parts.engine.effective_options.pose_model == "heavy"


def test_shedding_ends_after_a_reload(setup):
    """Issue 10 #5: a SIGHUP during shedding used to reset the guard to 'ok' and shedding never ended."""
    control, builder, _, _ = setup
    mb = 1024 * 1024
    guard = MemoryGuard(HealthConfig(memory_soft_mb=100, memory_hard_mb=200), cgroup_max=None, cgroup_high=None)
    v = guard.check(150 * mb)
    control.post_shed(v.level, v.reason)
    control.apply_pending()
    new = cfg(health={"memory_soft_mb": 120, "memory_hard_mb": 250})
    new.pipeline = replace(new.pipeline, pose_model="heavy")
    builder.configs.append(new)
    control.on_memory = lambda health: setattr(control, "_guard", guard.reconfigured(health))
    control.request_reload()
    control.apply_pending()
    assert control.config_error is None and control.shed["active"]
    assert control.parts.engine.effective_options.pose_model == "lite"  # still shedding after the reload
    guard2 = control._guard
    assert guard2.level == "soft" and guard2.soft_mb == 120
    v = guard2.check(50 * mb)  # RSS fell: the kept level makes this a *change*, so shedding ends
    assert v.level == "ok" and v.changed
    control.post_shed(v.level, v.reason)
    control.apply_pending()
    assert not control.shed["active"] and control.parts.engine.effective_options.pose_model == "heavy"


# -- the same rules in the config file -------------------------------------------------------------
@pytest.mark.parametrize("key, section, value", [("pipeline.max_fps", "pipeline", {"max_fps": 0.01}),
                                                  ("health.shed_max_fps", "health", {"shed_max_fps": 0.02})])
def test_config_refuses_a_max_fps_that_starves_the_watchdog(key, section, value):
    doc = {"source": {"type": "v4l2"}, section: value}
    with pytest.raises(ConfigError) as exc:
        load_config(text=yaml.safe_dump(doc), models=False)
    assert any(i.path == key and "unhealthy_after" in i.message for i in exc.value.issues), exc.value


def test_config_reports_an_unsearchable_directory_instead_of_a_traceback(monkeypatch, tmp_path):
    """Path.is_file() raises PermissionError under e.g. ProtectHome=; root cannot provoke it for real."""
    import pathlib

    real = pathlib.Path.is_file

    def is_file(self):
        if str(self).startswith("/home/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    doc = {"source": {"type": "file", "path": "/home/pi/clip.mp4"}}
    with pytest.raises(ConfigError) as exc:
        load_config(text=yaml.safe_dump(doc), models=False)
    assert [i.path for i in exc.value.issues] == ["source.path"]
    assert "cannot access /home/pi/clip.mp4: Permission denied" in str(exc.value)
