"""set shadow / promote through the one control apply path, with fakes (pure logic: all or
nothing, roll back on failure). The real daemon runs the same code in test_shadow_daemon.py."""
from __future__ import annotations

from dataclasses import replace

import pytest

from edge_holistic.daemon.control import Control, Parts
from edge_holistic.pipeline.shadow import ShadowSettings
from test_control import FakeBuilder, FakeEngine, FakePart, cfg, send


class FakeRegistry:
    def variants(self, role):
        return ["full", "lite"]

    def precisions(self, role, variant):
        return ["float16", "int8"]


class FakeShadow:
    """What Control uses of a ShadowRunner: settings, update, set_primary, registry."""

    def __init__(self, settings):
        self.settings = settings
        self.registry = FakeRegistry()
        self.updates = []
        self.primaries = []
        self.fail_on = None  # settings whose update raises (a model that will not load)

    def update(self, settings):
        if settings == self.fail_on:
            raise RuntimeError("cannot load the candidate")
        self.updates.append(settings)
        self.settings = settings

    def set_primary(self, options):
        self.primaries.append(options)


@pytest.fixture
def setup():
    results = []
    engine = FakeEngine(threads=1, pose_model="full", precision="float")
    control = Control(Parts(cfg=cfg(), engine=engine, grabber=FakePart("g"), session=FakePart("s")), FakeBuilder(),
                      on_result=results.append)
    control.shadow = FakeShadow(ShadowSettings(enabled=True, pose_model="lite", hand_model="lite", precision="int8"))
    return control, results


def test_promote_twice_returns_to_the_start(setup):
    control, results = setup
    start_engine = control.parts.engine.effective_options
    start_shadow = control.shadow.settings
    send(control, {"id": "1", "cmd": "promote"})
    r = results[-1]
    assert r["ok"] is True and r["applied"]["primary"] == {"pose_model": "lite", "hand_model": "lite",
                                                          "precision": "int8"}
    assert control.parts.engine.effective_options.pose_model == "lite"
    assert (control.shadow.settings.pose_model, control.shadow.settings.precision) == ("full", "float")
    assert control.shadow.primaries[-1] is control.parts.engine.effective_options  # the shadow follows
    send(control, {"id": "2", "cmd": "promote"})
    assert results[-1]["ok"] is True
    assert control.parts.engine.effective_options == start_engine
    assert control.shadow.settings == start_shadow


def test_promote_rolls_back_the_shadow_when_the_primary_cannot_switch(setup):
    control, results = setup
    before = control.shadow.settings
    control.parts.engine.fail_update = RuntimeError("model file unreadable")
    send(control, {"cmd": "promote"})
    assert results[-1]["ok"] is False and "unreadable" in results[-1]["error"]
    assert control.shadow.settings == before and control.parts.engine.effective_options.pose_model == "full"


def test_promote_needs_an_enabled_shadow(setup):
    control, results = setup
    control.shadow.settings = replace(control.shadow.settings, enabled=False)
    send(control, {"cmd": "promote"})
    assert results[-1]["ok"] is False and "enabled shadow" in results[-1]["error"]
    assert control.parts.engine.updates == [] and control.shadow.updates == []


def test_set_shadow_alone_applies_now(setup):
    control, results = setup
    send(control, {"cmd": "set", "shadow": {"every": 3, "pose_model": "full"}})
    r = results[-1]
    assert r["ok"] is True and r["effective"] == "now"
    assert control.shadow.settings == ShadowSettings(enabled=True, pose_model="full", hand_model="lite",
                                                     precision="int8", every=3)
    assert r["applied"]["shadow"]["every"] == 3 and control.parts.engine.updates == []


@pytest.mark.parametrize("bad,key", [({"every": 0}, "shadow.every"), ({"pose_model": "tiny"}, "shadow.pose_model"),
                                     ({"precision": "int8", "hand_model": "huge"}, "shadow.hand_model"),
                                     ([1, 2], "shadow")])
def test_bad_shadow_set_is_refused_with_the_key(setup, bad, key):
    control, results = setup
    send(control, {"cmd": "set", "pose_model": "lite", "shadow": bad})
    assert results[-1]["ok"] is False and key in results[-1]["error"], results[-1]
    assert control.shadow.updates == [] and control.parts.engine.updates == []  # nothing changed


def test_set_primary_and_shadow_is_all_or_nothing(setup):
    control, results = setup
    before = control.shadow.settings
    send(control, {"cmd": "set", "pose_model": "gigantic", "shadow": {"every": 2}})
    assert results[-1]["ok"] is False and control.shadow.settings == before  # a bad primary key: shadow untouched
    control.parts.engine.fail_update = RuntimeError("cannot load")
    send(control, {"cmd": "set", "pose_model": "lite", "shadow": {"every": 2}})
    assert results[-1]["ok"] is False and control.shadow.settings == before  # rolled back
    control.parts.engine.fail_update = None
    control.shadow.fail_on = replace(before, every=4)
    send(control, {"cmd": "set", "pose_model": "lite", "shadow": {"every": 4}})
    assert results[-1]["ok"] is False and control.parts.engine.effective_options.pose_model == "full"
