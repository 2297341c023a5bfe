#!/usr/bin/env python3
"""Side-by-side speed of MediaPipe 0.10.21's legacy Holistic/Pose and ours; writes docs/benchmarks.md.

Why side by side, alternating, in one run: CPU figures on a shared or thermally
throttled board drift by tens of percent from one minute to the next. A ratio is only
meaningful if both sides saw the same conditions, so every round runs each
configuration once for MediaPipe and once for us, back to back (the order flips every
round), and the report gives the ratio per round with its min-max.

Both sides run in tracking mode on the same decoded frames (each side decodes the
video with OpenCV before its clock starts), each in its own fresh single process:
MediaPipe through ``scripts/mp_reference_worker.py bench`` in its throwaway venv,
ours through ``edge-holistic bench --json``. Thread philosophy, the same on both
sides: one XNNPACK thread per model (what MediaPipe's CPU inference calculator uses
on desktop Linux by default) and concurrency across independent stages (MediaPipe's
graph scheduler; our Engine's overlapped video mode).

Then agreement on the same clip: MediaPipe's tracking outputs (the worker's ``clip``
mode) against ours, per part, as the median over frames of the per-frame median
landmark distance / box diagonal (the golden-test measure, ``tests/golden.py``).

Usage: ``.venv/bin/python scripts/bench_compare.py [--video V] [--rounds 3] [--out docs/benchmarks.md]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

import _mpvenv  # noqa: E402

DEFAULT_VIDEO = Path("/work/shared/testdata/video.avi")


@dataclass(frozen=True)
class Config:
    """One row of the comparison.

    ``flags``: our ``edge-holistic bench`` flags (a custom runner reads the task and models from
    them too); ``mp_setting``: the MediaPipe worker setting it is compared with; ``source``:
    "video" (``--video``) or "facehands" (the generated face-and-both-hands clip);
    ``ours``: how our side is measured — None runs ``edge-holistic bench``. A runner is called
    ``ours(video, flags, threads, frames)`` and returns at least ``{"fps": float, "frames": int}``
    (``latency_ms``/``stages_ms``/``rss_mb`` when it has them). This is the hook for the daemon
    end-to-end rows: register ``Config(flags, setting, ours=<daemon runner>)`` in ``CONFIGS``.
    """

    flags: Tuple[str, ...]
    mp_setting: str
    source: str = "video"
    ours: Optional[Callable[[Path, Sequence[str], int, Optional[int]], Dict[str, Any]]] = None


HOLISTIC_FULL = ("--task", "holistic", "--pose-model", "full", "--hand-model", "full")
CONFIGS: Dict[str, Config] = {
    "holistic_full": Config(HOLISTIC_FULL, "holistic_full"),
    "holistic_lite": Config(("--task", "holistic", "--pose-model", "lite", "--hand-model", "full"), "holistic_lite"),
    "pose_full": Config(("--task", "pose", "--pose-model", "full"), "pose_full"),
    "pose_lite": Config(("--task", "pose", "--pose-model", "lite"), "pose_lite"),
    # Face and both hands in view on every frame: every holistic model runs on every frame.
    "holistic_full_facehands": Config(HOLISTIC_FULL, "holistic_full", source="facehands"),
    # Our int8 builds (the default on ARM) against MediaPipe's float graphs: only run when the
    # manifest has int8 entries; agreement is reported for them separately.
    "holistic_full_int8": Config(HOLISTIC_FULL + ("--precision", "int8"), "holistic_full"),
    "pose_full_int8": Config(("--task", "pose", "--pose-model", "full", "--precision", "int8"), "pose_full"),
}
DEFAULT_CONFIGS = ["holistic_full", "holistic_lite", "pose_full", "pose_lite", "holistic_full_facehands"]

# The face-and-hands clip: scripts/make_clip.py's steady camera on the seated man of a committed
# still (MediaPipe Holistic finds his face and both hands on the still). Generated per run into a
# temporary folder (4 MB at 640x480: too big to commit; the same bytes from the same OpenCV build).
FACEHANDS_STILL = REPO / "tests" / "data" / "images" / "COCO_val2014_000000000241.jpg"
FACEHANDS_ARGS = ["--person-box", "10", "260", "230", "620", "--size", "640", "480", "--steady", "0.25", "0.66", "1.5"]


def make_facehands_clip(out_dir: Path) -> Path:
    import make_clip

    out = Path(out_dir) / "facehands.avi"
    if make_clip.main(["--source", str(FACEHANDS_STILL), "--out", str(out), *FACEHANDS_ARGS]) != 0:
        raise SystemExit("could not make the face-and-hands clip")
    return out


def have_int8() -> bool:
    from edge_holistic.runtime import Registry

    reg = Registry()
    return all(any(r == role and p == "int8" for (r, _v, p) in reg.specs)
               for role in ("pose_detector", "pose_landmark", "face_detector", "face_landmark", "hand_recrop",
                            "hand_landmark"))


# Issue 9's targets: holistic full >= 1.5x (also on the face-and-hands clip), pose full >= 2x.
TARGETS: Dict[str, float] = {"holistic_full": 1.5, "holistic_full_facehands": 1.5, "pose_full": 2.0}


def ours_bench(video: Path, flags: Sequence[str], threads: int, frames: Optional[int],
               extra: Sequence[str] = ()) -> Dict[str, Any]:
    cmd = [str(REPO / ".venv" / "bin" / "edge-holistic"), "bench", "--source", str(video), "--json",
           "--threads", str(threads), *flags, *extra]
    if frames:
        cmd += ["--frames", str(frames)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"ours failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mp_bench(video: Path, setting: str, frames: Optional[int]) -> Dict[str, Any]:
    r = _mpvenv.mediapipe_bench(video, settings=[setting], max_frames=frames)
    return {"fps": r["fps"][setting], "p50": r["ms_p50"][setting], "found": r["found"][setting]}


# --------------------------------------------------------------------------------------
# Agreement


def our_tracking(video: Path, frames: Optional[int], task: str, threads: int, precision: str = "float") -> List[Any]:
    """Our per-frame results on the clip, tracking mode, the way bench runs it (schedule auto)."""
    from edge_holistic.bench import load_frames
    from edge_holistic.pipeline import Engine, EngineOptions

    rgb = load_frames(str(video), frames)
    with Engine(EngineOptions(task=task, pose_model="full", hand_model="full", threads=threads,
                              precision=precision)) as engine:
        return list(engine.run((f, i / 30.0) for i, f in enumerate(rgb)))


def agreement(results: Sequence[Any], ref_dir: Path, name: str, parts: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per part: frames compared, found/not-found agreement, median and p90 of the per-frame median ratio."""
    import golden

    ref = golden.load_golden(name, ref_dir)
    out: Dict[str, Dict[str, Any]] = {}
    for part in parts:
        ratios, agree, n = [], 0, 0
        for i, r in enumerate(results):
            item = ref.frame(i)
            ours = getattr(r, part)
            theirs = item.part(part)
            n += 1
            agree += (ours is None) == (theirs is None)
            if ours is None or theirs is None:
                continue
            mask = golden.pose_visible_mask(theirs) if part == "pose" else None
            if mask is not None and not mask.any():
                continue
            ratios.append(golden.median_distance_ratio(ours.landmarks, theirs, mask, item.width, item.height))
        out[part] = {"frames": n, "both": len(ratios), "found_agreement": agree / max(n, 1),
                     "median": float(np.median(ratios)) if ratios else None,
                     "p90": float(np.percentile(ratios, 90)) if ratios else None}
    return out


# --------------------------------------------------------------------------------------
# Daemon end to end


def daemon_figures(video: Path, seconds: float, threads: int) -> Optional[Dict[str, Any]]:
    """Run ``edge-holistic run`` (holistic, full models) against a private mosquitto, the clip
    played at its recorded rate like a camera; return its last ``stats`` message.

    capture -> publish latency is the daemon's ``total`` stage, the engine's own submit -> result
    time its ``engine`` stage; RSS is the daemon's own reading. None when the daemon or mosquitto
    is missing.
    """
    import shutil
    import socket

    if not (REPO / "edge_holistic" / "daemon" / "app.py").is_file() or not shutil.which("mosquitto"):
        return None
    import paho.mqtt.client as mqtt

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: List[Dict[str, Any]] = []
    client = None
    daemon = None
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(
            "device_id: bench\n"
            f"source: {{type: file, path: {video}, loop: true, realtime: true}}\n"
            f"pipeline: {{task: holistic, pose_model: full, hand_model: full, precision: float, threads: {threads}, "
            "max_fps: 0}\n"
            f"mqtt: {{host: 127.0.0.1, port: {port}}}\n"
            "health: {stats_interval: 5}\n")
        try:
            time.sleep(0.5)
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            client.on_message = lambda c, u, m: got.append(json.loads(m.payload))
            client.connect("127.0.0.1", port)
            client.subscribe("edge_holistic/bench/stats")
            client.loop_start()
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            daemon = subprocess.Popen([str(REPO / ".venv" / "bin" / "edge-holistic"), "run", "--config", str(cfg)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and daemon.poll() is None:
                time.sleep(0.5)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            if client is not None:
                client.loop_stop()
                client.disconnect()
            broker.terminate()
            broker.wait(timeout=10)
    if not got:
        err = daemon.stderr.read()[-2000:] if daemon is not None and daemon.stderr else ""
        print(f"warning: no stats from the daemon; stderr tail: {err}", file=sys.stderr)
        return None
    return got[-1]


# --------------------------------------------------------------------------------------
# Daemon end to end, lossless (issue 9): the same video, the same models, the daemon's live path

def daemon_e2e(video: Path, flags: Sequence[str], threads: int, frames: Optional[int] = None) -> Dict[str, Any]:
    """fps of ``edge-holistic run --once --stdout`` on ``video`` (file source, ``realtime: false``):
    decoding in the grabber's thread, Engine live mode, messages built and written to stdout.

    The clock runs from the first message line to the last (model loading is not counted, as
    bench does not count it); everything in between is: decode, inference, message, JSON, the
    pipe. ``frames`` cuts the clip with a copy through OpenCV when given (None: the whole clip).
    """
    opts = dict(zip(flags[::2], flags[1::2]))
    name = " ".join(flags)
    task = opts["--task"]
    with tempfile.TemporaryDirectory() as tmp:
        src = video
        if frames:
            import cv2

            cap = cv2.VideoCapture(str(video))
            src = Path(tmp) / "cut.avi"
            out = None
            for _ in range(frames):
                ok, frame = cap.read()
                if not ok:
                    break
                if out is None:
                    out = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 30,
                                          (frame.shape[1], frame.shape[0]))
                out.write(frame)
            cap.release()
            out.release()
        cfg = Path(tmp) / "e2e.yaml"
        cfg.write_text(
            "device_id: bench\n"
            f"source: {{type: file, path: '{src}', loop: false, realtime: false}}\n"
            f"pipeline: {{task: {task}, pose_model: {opts.get('--pose-model', 'full')}, "
            f"hand_model: {opts.get('--hand-model', 'full')}, precision: float, threads: {threads}, max_fps: 0}}\n"
            "mqtt: {enabled: false}\nhealth: {stats_interval: 3600}\n")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "edge-holistic"), "run", "--config", str(cfg),
                                 "--once", "--stdout"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        times: List[float] = []
        found = 0
        totals: List[float] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            times.append(time.perf_counter())
            msg = json.loads(line)
            found += msg["pose"] is not None
            totals.append(msg["latency_ms"]["total"])
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0 or len(times) < 2:
            raise SystemExit(f"daemon failed on {video} ({name}): exit {proc.returncode}\n{err[-3000:]}")
    return {"fps": (len(times) - 1) / (times[-1] - times[0]), "frames": len(times), "found": found,
            "latency_p50": float(np.median(totals)), "latency_p95": float(np.percentile(totals, 95))}


def daemon_e2e_lines(rounds: List[Dict[str, Dict[str, Any]]], names: Sequence[str]) -> List[str]:
    """The report's daemon section: each ``daemon_*`` row against MediaPipe and against bench
    (the row without ``daemon_``), per round, so both ratios come from the same minutes."""
    pairs = [(n, n[len("daemon_"):]) for n in names if n.startswith("daemon_") and n[len("daemon_"):] in names]
    if not pairs:
        return []
    lines = ["", "## Daemon end to end against MediaPipe and bench (same rounds)", "",
             "`edge-holistic run --once --stdout`, file source with `realtime: false` (decoded in the grabber's "
             "thread, a few frames ahead), the Engine in live mode (`block=True`: lossless), each message built, "
             "encoded and written to a pipe; fps from the first message to the last (model loading excluded, as "
             "in bench). Targets (issue 9): holistic full ≥ 1.5×, pose full ≥ 2× MediaPipe; within 10% of bench.",
             "", "| configuration | daemon fps (median) | vs MediaPipe (median, min–max) | vs bench (median, min–max) "
             "| capture → publish p50 / p95 (last round) | target |", "|---|---:|---:|---:|---:|---|"]
    for name, bench_row in pairs:
        d = [r[name]["ours"]["fps"] for r in rounds]
        vs_mp = [r[name]["ours"]["fps"] / r[name]["mp"]["fps"] for r in rounds]
        vs_bench = [r[name]["ours"]["fps"] / r[bench_row]["ours"]["fps"] for r in rounds]
        last = rounds[-1][name]["ours"]
        goal = TARGETS.get(name, 0.0)
        m_mp, m_b = float(np.median(vs_mp)), float(np.median(vs_bench))
        verdict = (f"≥ {goal}× MP — {'met' if m_mp >= goal else 'missed'}; ≥ 0.90× bench — "
                   f"{'met' if m_b >= 0.9 else 'missed'}")
        lines.append(f"| {bench_row} | {np.median(d):.1f} | {m_mp:.2f}× ({min(vs_mp):.2f}–{max(vs_mp):.2f}) | "
                     f"{m_b:.2f}× ({min(vs_bench):.2f}–{max(vs_bench):.2f}) | {last['latency_p50']:.0f} / "
                     f"{last['latency_p95']:.0f} ms | {verdict} |")
    return lines


# The daemon rows (issue 9): registered through the Config runner hook.
CONFIGS["daemon_holistic_full"] = Config(HOLISTIC_FULL, "holistic_full", ours=daemon_e2e)
CONFIGS["daemon_pose_full"] = Config(("--task", "pose", "--pose-model", "full"), "pose_full", ours=daemon_e2e)
DEFAULT_CONFIGS += ["daemon_holistic_full", "daemon_pose_full"]
TARGETS.update({"daemon_holistic_full": 1.5, "daemon_pose_full": 2.0})


# --------------------------------------------------------------------------------------
# Report


def machine() -> Dict[str, str]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "arch": platform.machine(), "kernel": platform.release()}


def versions(py_mp: Path) -> Dict[str, str]:
    from importlib.metadata import version

    import cv2

    mp_ver = subprocess.run([str(py_mp), "-c", "import mediapipe,numpy,cv2;print(mediapipe.__version__, numpy.__version__, cv2.__version__)"],
                            capture_output=True, text=True).stdout.split()
    return {"python": platform.python_version(), "ai-edge-litert": version("ai-edge-litert"),
            "numpy": np.__version__, "opencv": cv2.__version__,
            "mediapipe": mp_ver[0] if mp_ver else "?",
            "mediapipe venv numpy/opencv": "/".join(mp_ver[1:]) if mp_ver else "?"}


def fmt(v: Optional[float], spec: str = ".1f") -> str:
    return "—" if v is None else format(v, spec)


def write_report(path: Path, args: argparse.Namespace, rounds: List[Dict[str, Dict[str, Any]]],
                 agree: Dict[str, Dict[str, Dict[str, Any]]], vers: Dict[str, str], mach: Dict[str, str],
                 frames: int, started: str, load: Tuple[float, float]) -> None:
    lines = [
        "# Benchmarks: edge_holistic vs MediaPipe 0.10.21",
        "",
        f"Generated by `scripts/bench_compare.py` ({started}); do not edit by hand, re-run the script.",
        "",
        "## Setup",
        "",
        f"- Machine: {mach['cpu']}, {mach['cores']} cores, {mach['arch']}, Linux {mach['kernel']}; "
        f"load average before/after the run {load[0]:.2f}/{load[1]:.2f} (the machine is shared: other jobs ran "
        "during the measurement, which is why both sides alternate).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        f"- Input: `{args.video.name}`, {frames} frames"
        + (f"; `*_facehands` rows: a {args.source_frames.get('facehands', 0)}-frame 640x480 clip made by "
           "`scripts/make_clip.py` (steady camera on the seated man of `COCO_val2014_000000000241.jpg`, face and "
           "both hands in view on every frame)" if "facehands" in args.sources else "")
        + "; decoded to RGB before timing on both sides; tracking mode; "
        f"{args.rounds} rounds, each running every configuration once per side back to back (order flipped "
        "every round); 5 untimed warm-up frames, then the timed pass restarts at frame 0.",
        f"- Threads: one XNNPACK thread per model on both sides (ours: `--threads {args.threads}`; MediaPipe's "
        "desktop default). Concurrency across independent stages on both sides: MediaPipe's graph scheduler; ours "
        "runs the next frame's pose while this frame's face and hands run, and face and hands concurrently.",
        "- Models: MediaPipe's own files. Ours loads the landmark-only pose models (`*_nomask`, segmentation head "
        "pruned by `scripts/prune_models.py`, outputs identical) — MediaPipe computes the mask even with "
        "`enable_segmentation=False`.",
        "- Holistic lite = MediaPipe `model_complexity=0` (pose lite, hands full); full = complexity 1.",
        "- `*_int8` rows: our int8 models (`--precision int8`, the default on ARM boards) against MediaPipe's "
        "float graph of the same complexity; the targets apply to the float rows.",
        "",
        "## Throughput (frames per second)",
        "",
        "| configuration | ours fps (median) | MediaPipe fps (median) | ratio median | ratio min–max | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    summary = {}
    for name in args.configs:
        ours = [r[name]["ours"]["fps"] for r in rounds]
        mp = [r[name]["mp"]["fps"] for r in rounds]
        ratios = [a / b for a, b in zip(ours, mp)]
        med = float(np.median(ratios))
        summary[name] = (med, min(ratios), max(ratios))
        target = ""
        goal = TARGETS.get(name)  # the targets are for the float models
        if goal:
            target = f"≥ {goal}× — {'met' if med >= goal else f'missed by {goal - med:.2f}×'}"
        lines.append(f"| {name} | {np.median(ours):.1f} | {np.median(mp):.1f} | {med:.2f}× | "
                     f"{min(ratios):.2f}–{max(ratios):.2f}× | {target} |")
    lines += ["", "Per round (ours / MediaPipe fps):", "",
              "| round | " + " | ".join(args.configs) + " |", "|---|" + "---|" * len(args.configs)]
    for i, r in enumerate(rounds):
        lines.append(f"| {i + 1} | " + " | ".join(f"{r[n]['ours']['fps']:.1f} / {r[n]['mp']['fps']:.1f}"
                                                    for n in args.configs) + " |")
    lines += ["", "## Our per-stage latency (last round, ms, p50 / p95)", ""]
    for name in args.configs:
        o = rounds[-1][name]["ours"]
        if "stages_ms" not in o:
            continue
        stages = ", ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in o["stages_ms"].items())
        lines.append(f"- {name}: frame latency {o['latency_ms']['p50']:.1f}/{o['latency_ms']['p95']:.1f}; "
                     f"{stages}; peak RSS {o['rss_mb']:.0f} MB (includes the decoded clip held in memory, "
                     f"{frames} × {args.frame_mb:.1f} MB)")
    lines += ["", "## Agreement with MediaPipe on the same clip (tracking mode, full models)", "",
              "Per part: frames where both found it, found/not-found agreement over all frames, and the median "
              "(and p90) over those frames of the per-frame median landmark distance divided by the reference "
              "box diagonal (pose: MediaPipe-visible landmarks only). Test thresholds on single images: pose "
              "1.5%, face 2%, hands 3%.", "",
              "| solution | part | both found | found agreement | median | p90 |", "|---|---|---:|---:|---:|---:|"]
    for sol, parts in agree.items():
        for part, a in parts.items():
            lines.append(f"| {sol} | {part} | {a['both']}/{a['frames']} | {a['found_agreement'] * 100:.1f}% | "
                         f"{fmt(a['median'] and a['median'] * 100, '.2f')}% | {fmt(a['p90'] and a['p90'] * 100, '.2f')}% |")
    d = args.daemon
    lines += ["", "## Daemon end to end (`edge-holistic run`)", ""]
    if d is None:
        lines.append("Not measured (daemon, mosquitto or its stats missing).")
    else:
        lat = d["latency_ms"]
        ratio = lat["total"]["p95"] / lat["engine"]["p95"]
        lines += [
            f"Holistic (pose full, hands full), `--threads {args.threads}`, the same video played at its recorded "
            f"rate like a camera (newest frame wins), {args.daemon_seconds:.0f} s against a local mosquitto; the "
            "daemon's last `stats` message:", "",
            "| figure | value | target |", "|---|---:|---|",
            f"| processed / captured fps | {d['fps']['processed']:.1f} / {d['fps']['captured']:.1f} | |",
            f"| engine latency (`engine`: submit → result) p50 / p95 | {lat['engine']['p50']:.1f} / "
            f"{lat['engine']['p95']:.1f} ms | |",
            f"| capture → publish (`total`) p50 / p95 | {lat['total']['p50']:.1f} / "
            f"{lat['total']['p95']:.1f} ms | |",
            f"| capture → publish p95 / engine p95 | {ratio:.2f}× | ≤ 1.3× — {'met' if ratio <= 1.3 else 'missed'} |",
            f"| RSS with holistic loaded | {d['rss_mb']:.0f} MB | ≤ 250 MB — "
            f"{'met' if d['rss_mb'] <= 250 else 'missed'} |",
            f"| CPU | {d['cpu_percent']:.0f} % | |",
        ]
    lines += daemon_e2e_lines(rounds, args.configs)
    lines += ["", "## Notes", "", *args.notes, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    p.add_argument("--threads", type=int, default=1, help="our interpreter threads (default: 1, like MediaPipe)")
    p.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                   help="default: the four float configurations, plus the int8 ones when the manifest has int8 models")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--notes-file", type=Path, default=REPO / "docs" / "benchmark_notes.md",
                   help="Markdown appended under 'Notes' (profile summary, daemon figures)")
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--no-daemon", action="store_true", help="skip the daemon end-to-end figure")
    p.add_argument("--daemon-seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    if not args.video.is_file():
        raise SystemExit(f"error: video {args.video} not found")
    if args.configs is None:
        args.configs = DEFAULT_CONFIGS + (["holistic_full_int8", "pose_full_int8"] if have_int8() else [])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    py_mp = _mpvenv.ensure_venv(quiet=True)

    clip_dir = tempfile.TemporaryDirectory()
    sources = {"video": args.video}
    if any(CONFIGS[n].source == "facehands" for n in args.configs):
        sources["facehands"] = make_facehands_clip(Path(clip_dir.name))
    args.sources = sources

    rounds: List[Dict[str, Dict[str, Any]]] = []
    dropped: List[str] = []
    for rnd in range(args.rounds):
        this: Dict[str, Dict[str, Any]] = {}
        for name in list(args.configs):
            cfg = CONFIGS[name]
            video = sources[cfg.source]
            order = ("mp", "ours") if rnd % 2 == 0 else ("ours", "mp")
            this[name] = {}
            try:
                for side in order:
                    if side == "mp":
                        this[name]["mp"] = mp_bench(video, cfg.mp_setting, args.frames)
                    else:
                        this[name]["ours"] = (cfg.ours or ours_bench)(video, cfg.flags, args.threads, args.frames)
            except SystemExit as e:
                if not name.endswith("_int8"):
                    raise
                # The int8 models belong to another work stream and may be rebuilt mid-run
                # (a checksum change fails the load): report the float rows without them.
                print(f"warning: dropping {name}: {e}", file=sys.stderr)
                dropped.append(name)
                args.configs.remove(name)
                for r in rounds:
                    r.pop(name, None)
                this.pop(name)
                continue
            print(f"round {rnd + 1} {name}: ours {this[name]['ours']['fps']:.1f} fps, "
                  f"MediaPipe {this[name]['mp']['fps']:.1f} fps", file=sys.stderr, flush=True)
        rounds.append(this)
    if dropped:
        args.notes_extra = [f"- Dropped during the run (model files changed underneath): {', '.join(dropped)}."]
    main_rows = [n for n in args.configs if CONFIGS[n].source == "video"] or args.configs
    frames = rounds[0][main_rows[0]]["ours"]["frames"]
    args.source_frames = {CONFIGS[n].source: rounds[0][n]["ours"]["frames"] for n in args.configs}

    agree: Dict[str, Dict[str, Dict[str, Any]]] = {}
    if not args.no_agreement:
        with tempfile.TemporaryDirectory() as tmp:
            _mpvenv.run_in_venv(py_mp, _mpvenv.WORKER, ["clip", "--out-dir", tmp, str(args.video)], capture=True)
            ours_h = our_tracking(args.video, args.frames, "holistic", args.threads)
            agree["Holistic"] = agreement(ours_h, Path(tmp), "holistic_full_tracking",
                                          ("pose", "face", "left_hand", "right_hand"))
            ours_p = our_tracking(args.video, args.frames, "pose", args.threads)
            agree["Pose"] = agreement(ours_p, Path(tmp), "pose_full_tracking", ("pose",))
            if "holistic_full_int8" in args.configs:
                try:
                    ours_h8 = our_tracking(args.video, args.frames, "holistic", args.threads, "int8")
                    agree["Holistic, ours int8"] = agreement(ours_h8, Path(tmp), "holistic_full_tracking",
                                                             ("pose", "face", "left_hand", "right_hand"))
                except Exception as e:  # noqa: BLE001 - same reason as above: int8 files in flux
                    print(f"warning: no int8 agreement: {e}", file=sys.stderr)
    import cv2

    cap = cv2.VideoCapture(str(args.video))
    args.frame_mb = cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) * 3 / 2**20
    cap.release()
    args.notes = (args.notes_file.read_text().splitlines() if args.notes_file else []) + \
        getattr(args, "notes_extra", [])
    args.daemon = None if args.no_daemon else daemon_figures(args.video, args.daemon_seconds, args.threads)
    summary = write_report(args.out, args, rounds, agree, versions(py_mp), machine(), frames, started,
                           (load0, os.getloadavg()[0]))
    for name, (med, lo, hi) in summary.items():
        print(f"{name}: ours/MediaPipe {med:.2f}x (min {lo:.2f}, max {hi:.2f})")
    for sol, parts in agree.items():
        for part, a in parts.items():
            print(f"agreement {sol} {part}: median {fmt(a['median'] and a['median'] * 100, '.2f')}% "
                  f"on {a['both']} frames, found agreement {a['found_agreement'] * 100:.1f}%")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
