#!/usr/bin/env python3
"""Measure what the web page costs the daemon: RSS with the page on, CPU of one watching browser.

Starts ``edge-holistic run`` (holistic by default, MQTT off, page on a free port) on a video,
then in turn: nobody watching, one headless Chromium on the live page (MJPEG + live numbers),
and after one holistic upload on /api/analyze. For each phase it prints the daemon's RSS and
its CPU % (100 = one core) over ``--seconds``. Example:
  .venv/bin/python scripts/measure_web.py --source /path/to/video.avi --seconds 20
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def encoded(base: str) -> float:
    for line in urllib.request.urlopen(base + "/metrics", timeout=10).read().decode().splitlines():
        if line.startswith("edge_holistic_mjpeg_frames_encoded_total "):
            return float(line.split()[1])
    return 0.0


def encode_cost_ms(source: str, task: str, frames: int = 20) -> float:
    """CPU ms (thread time: what the work takes, not what a busy machine lets it have) to draw
    and JPEG-encode one frame of ``source`` for the stream, as the page's worker does."""
    import cv2

    from edge_holistic.pipeline.engine import Engine, EngineOptions, RunningMode
    from edge_holistic.web.live import FrameHub

    cap = cv2.VideoCapture(source)
    rgbs = []
    while len(rgbs) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        rgbs.append(bgr[:, :, ::-1].copy())
    with Engine(EngineOptions(running_mode=RunningMode.IMAGE, task=task, threads=1)) as engine:
        results = [engine.detect(rgb) for rgb in rgbs]
    encode = FrameHub.encode_frame
    t0 = time.thread_time()
    for rgb, result in zip(rgbs, results):
        encode(rgb, result)
    return (time.thread_time() - t0) / len(rgbs) * 1e3


def phase(name: str, pid: int, seconds: float, base: str = "") -> None:
    e0 = encoded(base) if base else 0.0
    c0, t0 = cpu_seconds(pid), time.monotonic()
    peak = 0.0
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        peak = max(peak, rss_mb(pid))
    cpu = 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    extra = f"   stream {(encoded(base) - e0) / (time.monotonic() - t0):4.1f} frames/s" if base else ""
    print(f"{name:<34} RSS {rss_mb(pid):6.1f} MB (peak {peak:6.1f})   daemon CPU {cpu:5.1f} %{extra}", flush=True)


def chromium(url: str, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    b = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    b.get(url)
    return b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(REPO / "tests" / "data" / "clip.avi"))
    ap.add_argument("--task", default="holistic")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-fps", type=float, default=15)
    ap.add_argument("--photo", default=str(REPO / "tests" / "data" / "images" / "COCO_val2014_000000000536.jpg"))
    args = ap.parse_args()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="measure-web-"))
    cfg = tmp / "config.yaml"
    cfg.write_text(f"device_id: measure\nsource: {{type: file, path: '{args.source}'}}\n"
                   f"pipeline: {{task: {args.task}, max_fps: {args.max_fps}}}\nmqtt: {{enabled: false}}\n"
                   f"http: {{port: {port}}}\n")
    log = open(tmp / "daemon.log", "wb")
    d = subprocess.Popen([sys.executable, "-m", "edge_holistic.cli", "run", "--config", str(cfg)], cwd=REPO,
                         stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(5)  # past start-up
        print(f"task {args.task}, source {args.source}, max_fps {args.max_fps}, {os.cpu_count()} cores")
        phase("page on, nobody watching", d.pid, args.seconds)
        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        b = chromium(base + "/", profile)
        time.sleep(3)
        phase("one Chromium on the live page", d.pid, args.seconds, base)
        b.quit()
        shutil.rmtree(profile, ignore_errors=True)
        time.sleep(2)
        phase("browser gone", d.pid, args.seconds)
        req = urllib.request.Request(base + "/api/analyze?task=holistic", data=Path(args.photo).read_bytes(),
                                     headers={"Content-Type": "image/jpeg"})
        urllib.request.urlopen(req, timeout=60).read()
        phase("after one holistic /api/analyze", d.pid, args.seconds / 2)
        time.sleep(45)  # analyze.IDLE_RELEASE_S (30 s) + the 10 s housekeeping tick
        phase("analyze models released (idle)", d.pid, args.seconds / 2)
    finally:
        d.terminate()
        d.wait(15)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    ms = encode_cost_ms(args.source, args.task)
    print(f"drawing + JPEG for the stream: {ms:.1f} ms CPU per frame -> {ms * 10 / 10:.1f} % of one core "
          f"at the 10 fps cap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
