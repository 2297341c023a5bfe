"""Fault injection: camera faults through the real daemon process.

Run time: ~40 s (two daemons at once: an image folder with odd frames that vanishes and
comes back, and a video file that vanishes and comes back).
"""
from __future__ import annotations

import shutil
import time

import cv2
import numpy as np

from fault_helpers import NotifyListener, latest_stats, run_cases_concurrently, wait_stats
from mqtt_fixtures import DATA, Broker, DaemonProcess, Subscriber, daemon_config

PREFIX = "edge_holistic"


def odd_folder(folder):
    """One good photo plus grayscale, odd-sized, tiny, zero-size, corrupt and 16-bit files.

    Played lossless (``realtime: false``): every frame reaches the engine, none is skipped.
    """
    folder.mkdir()
    src = sorted((DATA / "images").glob("*.jpg"))[0]
    shutil.copy(src, folder / "a_good.jpg")
    bgr = cv2.imread(str(src))
    cv2.imwrite(str(folder / "b_gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "c_odd.png"), bgr[:301, :199])
    cv2.imwrite(str(folder / "d_1x1.png"), bgr[:1, :1])
    cv2.imwrite(str(folder / "e_strip.png"), bgr[:2, :])
    cv2.imwrite(str(folder / "f_16bit.png"), (bgr.astype(np.uint16) * 257))
    (folder / "g_zero.jpg").write_bytes(b"")
    (folder / "h_corrupt.jpg").write_bytes(src.read_bytes()[:300])
    (folder / "i_text.png").write_text("not an image")


def _run_folder_case(tmp_path, broker, results):
    dev = "camfold"
    folder = tmp_path / "imgs"
    odd_folder(folder)
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    cfg = daemon_config(tmp_path, broker.port, dev, source={"type": "images", "path": str(folder), "realtime": False},
                        health={"stall_timeout": 1, "unhealthy_after": 3, "stats_interval": 1})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    try:
        assert sub.wait_for("landmarks", timeout=60), d.log()
        st = sub.wait_for("stats", lambda m: m.json()["frames"]["bad_frames"] >= 6 and
                          m.json()["frames"]["processed_total"] >= 6, timeout=30)
        assert st is not None, (latest_stats(sub), d.log()[-2000:])
        sizes = {(m.json()["frame"]["width"], m.json()["frame"]["height"]) for m in sub.of("landmarks")}
        assert (1, 1) in sizes and (199, 301) in sizes, sizes  # odd frames went through the engine
        first = st.json()
        # The folder vanishes: source down in status and health, the process stays, pings go on.
        gone = tmp_path / "gone"
        folder.rename(gone)
        t_gone = time.monotonic()
        down = sub.wait_for("status", lambda m: "source down" in m.text, timeout=20, since=t_gone)
        assert down is not None, ([m.text for m in sub.of("status", t_gone)][-1:], d.log()[-2000:])
        time.sleep(6.0)  # twice unhealthy_after: a wedge verdict would have stopped the pings by now
        assert d.proc.poll() is None
        assert len(notify.pings(since=t_gone + 4.0)) >= 2, "watchdog pings stopped for a source outage"
        folder_back = gone.rename(folder)
        t_back = time.monotonic()
        assert sub.wait_for("landmarks", timeout=40, since=t_back), d.log()[-2000:]
        healthy = sub.wait_for("status", lambda m: m.json().get("healthy") is True, timeout=20, since=t_back)
        assert healthy is not None, d.log()[-2000:]
        last = wait_stats(sub, lambda s: s["reopens"] >= 1, timeout=20, since=t_back)
        assert last is not None, ([m.text[:300] for m in sub.of("stats", t_gone)][-3:], d.log()[-3000:])
        assert last["frames"]["errors"] + last["stalls"] >= 1, last
        assert "Traceback" not in d.log()
        results["folder"] = {"bad_frames": first["frames"]["bad_frames"], "sizes": sorted(sizes),
                             "process_errors": last["frames"]["process_errors"], "reopens": last["reopens"],
                             "recovered_s": round(time.monotonic() - t_back, 1), "down_status": down.json()["health"],
                             "folder_back": str(folder_back)}
    finally:
        sub.close()
        d.close()
        notify.close()


def _run_file_case(tmp_path, broker, results):
    dev = "camfile"
    clip = tmp_path / "clip.avi"
    shutil.copy(DATA / "clip.avi", clip)
    cfg = daemon_config(tmp_path, broker.port, dev, source={"type": "file", "path": str(clip), "realtime": True},
                        health={"stall_timeout": 1, "unhealthy_after": 3, "stats_interval": 1})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg)
    try:
        assert sub.wait_for("landmarks", timeout=60), d.log()
        away = tmp_path / "away.avi"
        clip.rename(away)  # the open capture plays to its end (~3 s), then the reopen fails
        t_gone = time.monotonic()
        down = sub.wait_for("status", lambda m: "source down" in m.text, timeout=25, since=t_gone)
        assert down is not None, d.log()[-2000:]
        assert d.proc.poll() is None
        away.rename(clip)
        t_back = time.monotonic()
        assert sub.wait_for("landmarks", timeout=40, since=t_back), d.log()[-2000:]
        last = wait_stats(sub, lambda s: s["frames"]["open_failures"] + s["frames"]["errors"] >= 1, timeout=20,
                          since=t_gone)
        assert last is not None, ([m.text[:300] for m in sub.of("stats", t_gone)][-3:], d.log()[-3000:])
        results["file"] = {"open_failures": last["frames"]["open_failures"], "errors": last["frames"]["errors"],
                           "recovered_s": round(time.monotonic() - t_back, 1), "down_status": down.json()["health"]}
    finally:
        sub.close()
        d.close()


def test_camera_faults_odd_frames_vanishing_folder_and_file(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    results: dict = {}
    try:
        run_cases_concurrently({"folder": _run_folder_case, "file": _run_file_case}, tmp_path, broker, results, 240)
        print("\ncamera faults:", results)
    finally:
        broker.close()
