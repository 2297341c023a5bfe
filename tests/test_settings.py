"""The one table of pipeline settings: validation, CLI flags, the watchdog rule for max_fps."""
from __future__ import annotations

import argparse

import pytest

from edge_holistic.pipeline import settings
from edge_holistic.pipeline.engine import EngineOptions


def test_every_engine_setting_is_an_engine_option_with_the_table_default():
    fields = EngineOptions.__dataclass_fields__
    for name in settings.ENGINE_SETTINGS:
        assert name in fields, name
        assert fields[name].default == settings.SETTINGS[name].default, name
    assert "max_fps" not in settings.ENGINE_SETTINGS and "max_fps" in settings.SETTINGS


@pytest.mark.parametrize("name, value, expected", [
    ("task", "Holistic", "holistic"),
    ("pose_model", "lite", "lite"),
    ("precision", "auto", "auto"),
    ("threads", "auto", "auto"),
    ("threads", "3", 3),
    ("threads", 4.0, 4),
    ("smooth", "false", False),
    ("smooth", True, True),
    ("min_detection_confidence", "0.25", 0.25),
    ("max_fps", 0, 0.0),
])
def test_valid_values_are_normalised(name, value, expected):
    got = settings.validate(name, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name, value, message", [
    ("task", "dance", "unknown task 'dance'; valid: pose, holistic"),
    ("hand_model", 3, "unknown hand_model 3; valid: lite, full"),
    ("threads", 0, "threads must be an integer in [1, 16] or 'auto', got 0"),
    ("threads", 2.5, "threads must be an integer in [1, 16] or 'auto', got 2.5"),
    ("threads", True, "threads must be an integer in [1, 16] or 'auto', got True"),
    ("smooth", "maybe", "smooth must be true or false, got 'maybe'"),
    ("min_tracking_confidence", 1.5, "min_tracking_confidence must be a number in [0, 1], got 1.5"),
    ("min_tracking_confidence", float("nan"), "min_tracking_confidence must be a number in [0, 1]"),
    ("max_fps", -1, "max_fps must be a number in [0, 240], got -1"),
    ("colour", "red", "unknown pipeline setting 'colour'"),
])
def test_bad_values_name_the_key(name, value, message):
    with pytest.raises(ValueError) as err:
        settings.validate(name, value)
    assert str(err.value).startswith(message), str(err.value)


def test_validate_all_is_all_or_nothing():
    assert settings.validate_all({"task": "pose", "threads": "2"}) == {"task": "pose", "threads": 2}
    with pytest.raises(ValueError, match="^threads"):
        settings.validate_all({"task": "pose", "threads": "-1"})


def test_max_fps_against_the_watchdog():
    assert settings.check_max_fps(0, 60) == 0.0  # no cap
    assert settings.check_max_fps(1 / 30, 60) == pytest.approx(1 / 30)  # two frames per 60 s: fine
    with pytest.raises(ValueError, match=r"max_fps must be 0 or at least 0.2 \(2 / health.unhealthy_after = 2 / 10\)"):
        settings.check_max_fps(0.1, 10)
    with pytest.raises(ValueError, match="max_fps must be a number"):
        settings.check_max_fps("fast", 60)


def test_cli_flags_come_from_the_table():
    p = argparse.ArgumentParser()
    settings.add_arguments(p, ("task", "pose_model", "threads", "smooth", "min_detection_confidence"))
    ns = p.parse_args([])
    assert (ns.task, ns.pose_model, ns.threads, ns.smooth, ns.min_detection_confidence) == ("pose", "full", 2, True, 0.5)
    ns = p.parse_args(["--task", "holistic", "--pose-model", "lite", "--threads", "auto", "--smooth", "off",
                       "--min-detection-confidence", "0.7"])
    assert (ns.task, ns.pose_model, ns.threads, ns.smooth, ns.min_detection_confidence) == \
        ("holistic", "lite", "auto", False, 0.7)
    for bad in (["--threads", "0"], ["--task", "dance"], ["--min-detection-confidence", "2"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
    kw = settings.argparse_kwargs("threads", default="auto")
    assert kw["default"] == "auto" and "interpreter threads" in kw["help"]
