#!/usr/bin/env python3
"""What the A/B shadow costs: the real daemon with and without it, runs interleaved.

Each run: ``edge-holistic run`` on tests/data/clip.avi (looping, not paced by the file),
a local mosquitto, the ``stats`` topic read every second. Reported per setting: processed
fps (median over the stats after a warm-up), CPU % (100 = one core), RSS (MB, last), and
the shadow's own counters. ``--max-fps`` paces the primary (a Pi at 15 fps is paced);
unpaced runs show the throughput cost, paced runs the CPU cost.

  python scripts/bench_shadow.py --seconds 25 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from mqtt_fixtures import DATA, Broker, DaemonProcess, Subscriber, daemon_config  # noqa: E402


def one_run(tmp: Path, broker: Broker, name: str, shadow: dict, seconds: float, max_fps: float, task: str) -> dict:
    cfg = daemon_config(tmp, broker.port, name, source={"type": "file", "path": str(DATA / "clip.avi"),
                                                        "realtime": False, "loop": True},
                        pipeline={"task": task, "pose_model": "full", "hand_model": "full", "precision": "float",
                                  "threads": 2, "max_fps": max_fps, "shadow": shadow},
                        health={"stats_interval": 1, "stall_timeout": 5, "unhealthy_after": 30})
    sub = Subscriber(broker.port, f"edge_holistic/{name}/stats")
    d = DaemonProcess(cfg)
    try:
        time.sleep(seconds)
    finally:
        d.close()
        sub.close()
    stats = [m.json() for m in sub.of("stats")]
    warm = [s for s in stats if s["uptime_s"] > 8]  # models loaded, schedule chosen
    if not warm:
        raise RuntimeError(f"{name}: no stats after warm-up\n{d.log()[-2000:]}")
    last = warm[-1]
    return {"fps": statistics.median(s["fps"]["processed"] for s in warm),
            "cpu": statistics.median(s["cpu_percent"] for s in warm),
            "rss": last["rss_mb"], "shadow": last.get("shadow")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=25)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-fps", type=float, default=0)
    ap.add_argument("--task", default="holistic")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--candidate", default="lite@int8")
    args = ap.parse_args()
    pose, _, precision = args.candidate.partition("@")
    settings = {"off": {"enabled": False},
                "on": {"enabled": True, "pose_model": pose, "hand_model": pose if pose != "heavy" else "full",
                       "precision": precision or "float", "every": args.every, "max_cpu_percent": 0}}
    results = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        broker = Broker(tmp).start()
        try:
            for r in range(args.rounds):
                for key, shadow in settings.items():
                    res = one_run(tmp, broker, f"bench-{key}-{r}", shadow, args.seconds, args.max_fps, args.task)
                    results[key].append(res)
                    extra = ""
                    if res["shadow"]:
                        c = res["shadow"]["counters"]
                        extra = (f"  shadow offered {c['offered']} compared {c['compared']} dropped {c['dropped']} "
                                 f"skipped_cpu {c['skipped_cpu']}")
                    print(f"round {r} shadow {key:>3}: {res['fps']:.1f} fps, cpu {res['cpu']:.0f} %, "
                          f"rss {res['rss']:.0f} MB{extra}", flush=True)
        finally:
            broker.close()
    summary = {k: {m: round(statistics.median(r[m] for r in v), 1) for m in ("fps", "cpu", "rss")}
               for k, v in results.items()}
    print(json.dumps({"task": args.task, "max_fps": args.max_fps, "every": args.every,
                      "candidate": args.candidate, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
