"""Off a terminal (a log file, CI output), long phases without a loop of their own log a line at
least every PLAIN_EVERY_S seconds (the README's promise): the heartbeat."""

from __future__ import annotations

import logging
import time

from chitalab import progress


def test_a_long_phase_logs_a_line_every_period_off_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="chitalab.progress"):
        with progress.heartbeat("pruning with CHITA (swap)", status=lambda: "epoch 1/3", every_s=0.05):
            time.sleep(0.32)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 3, lines
    assert all(line.startswith("pruning with CHITA (swap): still running after ") for line in lines)
    assert all(line.endswith(" s, epoch 1/3") for line in lines)
    time.sleep(0.1)
    assert len(caplog.records) == len(lines), "the heartbeat went on after its phase"


def test_no_heartbeat_on_a_terminal_or_with_progress_off(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="chitalab.progress"):
        monkeypatch.setattr(progress, "on_terminal", lambda: True)
        with progress.heartbeat("training", every_s=0.02):
            time.sleep(0.1)
        monkeypatch.setattr(progress, "on_terminal", lambda: False)
        with progress.heartbeat("training", enabled=False, every_s=0.02):
            time.sleep(0.1)
    assert caplog.records == []


def test_the_default_period_is_the_readmes_30_s():
    assert progress.PLAIN_EVERY_S == 30.0
