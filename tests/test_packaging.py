"""The package as users install it: a wheel built from the tracked files, installed into a fresh
venv outside the repo, running ``analyze``, ``models verify`` and the daemon; and the user models
directory merged with the bundled manifest.

Cost (2-core CI box, warm pip cache): ~20 s wheel build, ~20 s venv + install, ~15 s for the
runs; the module shares one wheel and one venv. Cold pip cache: add the download of numpy,
opencv-python-headless and ai-edge-litert (~100 MB).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from edge_holistic.message import load_schema
from edge_holistic.runtime.registry import (ModelError, Registry, add_user_model, bundled_models_dir,
                                            read_manifest)
from mqtt_fixtures import Broker, Subscriber, daemon_config

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
STILL = DATA / "images" / "COCO_val2014_000000000241.jpg"


def _tracked_copy(dest: Path) -> Path:
    """The files a fresh clone has (git ls-files), or the tree minus local clutter without git."""
    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if r.returncode == 0 and r.stdout:
        for rel in r.stdout.decode().split("\0"):
            if rel and (REPO / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, dest / rel)
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin dir, wheel, build log): wheel from a clean copy, installed non-editable into a new venv."""
    import time

    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("pkg")
    src = _tracked_copy(root / "src")
    t1 = time.monotonic()
    dist = root / "dist"
    # the test extras bring setuptools>=77, so no isolated build env needs installing (~20 s less)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("edge_holistic-*.whl"))
    t2 = time.monotonic()
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    inst = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=900)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    print(f"packaging: copy {t1 - t0:.1f} s, wheel {t2 - t1:.1f} s, venv+install {time.monotonic() - t2:.1f} s")
    shutil.rmtree(src)  # nothing may refer back to the source tree
    return venv / "bin", wheel, build.stdout + build.stderr + inst.stdout + inst.stderr


def _run(bin_dir: Path, *args: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    e.pop("EDGE_HOLISTIC_MODELS", None)
    return subprocess.run([str(bin_dir / "edge-holistic"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=bin_dir.parent.parent, env=e)


def test_wheel_carries_the_models_and_builds_without_warnings(installed):
    _bin, wheel, log = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = yaml.safe_load((REPO / "models" / "manifest.yaml").read_text())
    for entry in manifest["models"]:
        assert f"edge_holistic/models/{entry['file']}" in names, entry["file"]
    assert "edge_holistic/models/manifest.yaml" in names and "edge_holistic/schema/landmarks@1.json" in names
    assert not any(n.startswith(("models/", "tests/", "scripts/")) for n in names)
    # issue 11: the license metadata is PEP 639, no setuptools deprecation noise
    assert "SetuptoolsDeprecationWarning" not in log and "project.license" not in log, log
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "Requires-Dist: ai-edge-litert==" in meta and "Requires-Python: >=3.10" in meta


def test_installed_models_verify_and_load(installed):
    bin_dir, _, _ = installed
    r = _run(bin_dir, "models", "verify", "--load")
    n = len(yaml.safe_load((REPO / "models" / "manifest.yaml").read_text())["models"])
    assert r.returncode == 0 and f"{n} ok, 0 failed" in r.stdout, r.stdout + r.stderr
    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "from edge_holistic.runtime.registry import bundled_models_dir; print(bundled_models_dir())"],
                           capture_output=True, text=True, timeout=60, cwd=bin_dir.parent)
    assert where.stdout.strip().startswith(str(bin_dir.parent / "lib")), where.stdout + where.stderr


def test_installed_analyze_gives_schema_valid_landmarks(installed):
    bin_dir, _, _ = installed
    r = _run(bin_dir, "analyze", "--task", "holistic", str(STILL))
    assert r.returncode == 0, r.stderr
    msg = json.loads(r.stdout.splitlines()[0])
    jsonschema.validate(msg, load_schema())
    assert len(msg["pose"]["landmarks"]) == 33 and len(msg["face"]["landmarks"]) == 468
    # default precision is auto, like the daemon: int8 on ARM, float16 on x86
    expected = "int8" if os.uname().machine.startswith(("aarch64", "arm")) else "float16"
    assert all(name.endswith("@" + expected) for name in msg["models"].values()), msg["models"]


def test_installed_daemon_once_publishes_the_clip(installed, tmp_path):
    bin_dir, _, _ = installed
    broker = Broker(tmp_path / "broker").start()
    try:
        cfg = daemon_config(tmp_path, broker.port, "pkg",
                            source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False},
                            pipeline={"max_fps": 0})
        sub = Subscriber(broker.port, "edge_holistic/pkg/#")
        try:
            r = _run(bin_dir, "run", "--config", str(cfg), "--once", timeout=300)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
            assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=10)
            marks = [m.json() for m in sub.of("landmarks")]
            assert len(marks) == 100, len(marks)  # every frame of the clip, lossless
            schema = load_schema()
            for m in marks[::10]:
                jsonschema.validate(m, schema)
        finally:
            sub.close()
    finally:
        broker.close()


def test_dev_install_finds_the_repo_models():
    # this suite runs from the editable install (scripts/test.sh): package data is the repo's models/
    assert bundled_models_dir().resolve() == (REPO / "models").resolve()


def test_user_models_dir_is_merged_with_the_bundled_manifest(tmp_path):
    user = tmp_path / "user-models"
    base = Registry(use_user_dir=False)
    assert "heavy" not in base.variants("pose_landmark")
    lite = base.path(base.spec("pose_landmark", "lite", "float16"))
    # A stand-in for the heavy model: a real pose landmark model under the variant name 'heavy'
    spec = add_user_model(lite, "pose_landmark", "heavy", user_dir=user, registry=base)
    assert (user / "pose_landmark_heavy.tflite").is_file() and (user / "manifest.yaml").is_file()
    reg = Registry(user_dir=user)
    assert reg.variants("pose_landmark") == ["full", "heavy", "lite"]
    got = reg.spec("pose_landmark", "heavy", "float16")
    assert got == spec and reg.is_user(got) and reg.path(got) == user / "pose_landmark_heavy.tflite"
    assert reg.verify(got) == user / "pose_landmark_heavy.tflite"
    assert not reg.is_user(reg.spec("pose_landmark", "full", "float16"))
    # altered after registration -> refused, naming the file
    with open(user / "pose_landmark_heavy.tflite", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="pose_landmark_heavy.tflite"):
        Registry(user_dir=user).verify(got)


def test_user_models_dir_drives_the_installed_cli(installed, tmp_path):
    bin_dir, _, _ = installed
    user = tmp_path / "models"
    env = {"EDGE_HOLISTIC_MODELS_DIR": str(user)}
    lite = bundled_models_dir() / "pose_landmark_lite.tflite"
    r = _run(bin_dir, "models", "add", str(lite), "--variant", "heavy", env=env)
    assert r.returncode == 0 and "pose_landmark_heavy@float16" in r.stdout, r.stdout + r.stderr
    rows = [json.loads(line) for line in _run(bin_dir, "models", "list", "--json", env=env).stdout.splitlines()]
    heavy = [x for x in rows if x["variant"] == "heavy"]
    assert len(heavy) == 1 and heavy[0]["source"] == "user" and heavy[0]["state"] == "ok", heavy
    runs = {}
    for variant in ("heavy", "lite"):
        r = _run(bin_dir, "analyze", "--pose-model", variant, "--precision", "float", str(STILL), env=env)
        assert r.returncode == 0, r.stderr
        runs[variant] = json.loads(r.stdout.splitlines()[0])
    assert runs["heavy"]["models"]["pose"] == "pose_landmark_heavy@float16"
    # the stand-in is the lite file, so the landmarks agree with the lite run
    a, b = runs["heavy"]["pose"]["landmarks"], runs["lite"]["pose"]["landmarks"]
    assert len(a) == len(b) == 33
    assert max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra[:2], rb[:2])) < 1e-3


def test_add_user_model_rejects_a_model_of_another_role(tmp_path):
    base = Registry(use_user_dir=False)
    face = base.path(base.spec("face_landmark", "default", "float16"))
    with pytest.raises(ModelError, match="is not a pose_landmark model"):
        add_user_model(face, "pose_landmark", "heavy", user_dir=tmp_path, registry=base)
    with pytest.raises(ModelError, match="unknown model role"):
        add_user_model(face, "pose", "heavy", user_dir=tmp_path, registry=base)
    assert not (tmp_path / "manifest.yaml").exists()


def test_user_manifest_cannot_name_paths_outside_its_folder(tmp_path):
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"schema": 1, "models": [
        {"name": "x@float16", "role": "pose_landmark", "variant": "x", "precision": "float16",
         "file": "../pose_landmark_full.tflite", "sha256": "0" * 64}]}))
    with pytest.raises(ModelError, match=r"models\[0\]\.file must be a plain file name"):
        read_manifest(tmp_path / "manifest.yaml", tmp_path)
    with pytest.raises(ModelError, match="manifest.yaml"):
        Registry(user_dir=tmp_path)
