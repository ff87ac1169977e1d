"""Long steps show progress: a line updated in place on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys

from clvflow.core.progress import Progress, track


def test_log_lines_without_a_terminal(caplog):
    """Issue 9 item 13: without a TTY a step logs its count at least every `every_s` seconds
    (here 0: after every unit) and when it ends."""
    caplog.set_level(logging.INFO, logger="clvflow.core.progress")
    bar = Progress("fits", 3, every_s=0.0)
    for _ in range(3):
        bar.step()
    bar.close()
    lines = [r.getMessage().split(" (")[0] for r in caplog.records]
    assert lines == ["fits: 1/3", "fits: 2/3", "fits: 3/3 done"]


def test_track_logs_the_end_of_a_step_once_when_it_is_quick(caplog):
    """Issue 9 item 13: a step shorter than the period logs one line, when it ends."""
    caplog.set_level(logging.INFO, logger="clvflow.core.progress")
    assert list(track(iter("abc"), "snapshots", 3)) == ["a", "b", "c"]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["snapshots: 3/3 done"]


def test_a_terminal_gets_one_line_updated_in_place():
    """Issue 9 item 13: on a TTY the count is rewritten with carriage returns, no log lines."""
    text = _stderr_on_a_terminal(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from clvflow.core.progress import track\n"
        "for _ in track(range(3), 'rounds', 3): pass\n"
    )
    assert [part.split(" (")[0] for part in text.strip().split("\r")] == [
        "rounds: 1/3",
        "rounds: 2/3",
        "rounds: 3/3",
    ]
    assert "INFO" not in text


def test_on_a_terminal_only_the_main_thread_draws_in_place():
    """Issue 11: ``clvflow train`` builds the refit's inputs on a second thread while the main
    one bootstraps; on a terminal the second thread's step logs lines instead of drawing, so
    the two never overwrite each other's line."""
    text = _stderr_on_a_terminal(
        "import logging, threading; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from clvflow.core.progress import track\n"
        "t = threading.Thread(target=lambda: list(track(range(2), 'beside', 2)))\n"
        "t.start(); t.join()\n"
        "for _ in track(range(2), 'main', 2): pass\n"
    ).replace("\r\n", "\n")
    assert text.startswith("beside: 2/2 done (")  # a log line, not drawn
    drawn = text.split("\n", 1)[1]
    assert [part.split(" (")[0] for part in drawn.strip().split("\r")] == [
        "main: 1/2",
        "main: 2/2",
    ]


def _stderr_on_a_terminal(code: str) -> str:
    """What a Python child running ``code`` writes to stderr when stderr is a terminal."""
    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-c", code], stderr=follower, stdout=subprocess.DEVNULL, timeout=120
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert done.returncode == 0
    return out.decode()
