"""The 2-minute soak CI runs (scripts/soak.py; the 30-minute figures are in docs/reliability.md).

The soak process is started by conftest.py when the tests are collected, so its two
minutes overlap the rest of the suite; this test waits for it and judges the report.
Run time here: whatever is left of the 2 minutes (0 s when the suite took longer).
"""
from __future__ import annotations

import json
import tempfile

from fault_helpers import background_soak, start_background_soak


def test_soak_two_minutes():
    if background_soak() is None:  # run on its own (e.g. -k): start it now
        start_background_soak(tempfile.mkdtemp(prefix="ci-soak-"))
    soak = background_soak()
    code = soak["proc"].wait(400)
    out = (soak["dir"] / "soak.out").read_text(errors="replace")
    report = json.loads((soak["dir"] / "soak.json").read_text())
    print("\n" + out)
    assert code == 0 and report["ok"], out
    assert report["daemon_alive_to_end"] and report["exit_code"] == 0 and report["stopped_published"], report
    assert report["broker_restarts"] >= 2, report
    assert report["lost_outside_outages"] == 0, report
    assert report["landmarks_received"] > 0 and report["frames_processed"] > 0, report
    # No leaks across broker restarts: fds and threads back where they were, RSS flat.
    assert report["fds_end"] <= report["fds_after_warmup"] + 2, report
    assert report["threads_end"] <= report["threads_after_warmup"] + 1, report
    assert report["rss_mb_end"] - report["rss_mb_after_warmup"] <= 25, report
