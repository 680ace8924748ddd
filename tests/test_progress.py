"""Progress bars and log lines on one terminal: each log line goes above the bar, whole, and the bar is redrawn."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from flows.common import progress_bar

FLOWS = Path(__file__).resolve().parents[1] / "flows"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen_lines(output: str) -> list[str]:
    """What a terminal shows of each line: the text after its last carriage return."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in output.split("\n")]


@pytest.fixture
def console():
    """The root logger with one console handler on a fake terminal (as Prefect's is on stderr)."""
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("%(levelname)s | %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    saved, level = root.handlers, root.level
    root.handlers, root.level = [handler], logging.INFO
    try:
        yield terminal, handler
    finally:
        root.handlers, root.level = saved, level


def test_log_lines_go_above_the_bar(console):
    terminal, handler = console
    log = logging.getLogger("tests.progress")
    with progress_bar(total=3, desc="colorize", unit="photo", file=terminal) as bar:
        bar.update(1)
        log.info("shard 1/3 written")
        log.debug("below the handler's level")
        bar.update(1)
        log.warning("a bad photo")
        bar.update(1)
    lines = screen_lines(terminal.getvalue())
    assert "INFO | shard 1/3 written" in lines and "WARNING | a bad photo" in lines, lines
    assert not any("below the handler's level" in line for line in lines)
    assert re.search(r"colorize: 100%.*3/3", lines[-1] or lines[-2]), lines
    assert handler in logging.getLogger().handlers, "the console handler is back after the bar"
    assert not any(type(h).__name__ == "_AboveBar" for h in logging.getLogger().handlers)


def test_without_a_terminal_there_is_no_bar_and_logging_is_untouched(console):
    pipe = io.StringIO()  # not a terminal
    with progress_bar(total=2, desc="embed", file=pipe) as bar:
        assert bar.disable and console[1] in logging.getLogger().handlers
        bar.update(2)
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("flow", ["preprocess.py", "embed.py", "colorize.py"])
def test_flows_show_their_bars_through_progress_bar(flow):
    source = (FLOWS / flow).read_text()
    assert "progress_bar(" in source and "tqdm" not in source
