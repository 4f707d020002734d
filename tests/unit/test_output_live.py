"""While stages run at once, a terminal shows which are running; events stay as they are."""

from __future__ import annotations

import io
import time

from cubeinstall.core.output import Output


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_the_running_stages_and_keeps_the_lines():
    terminal = Terminal()
    out = Output(stream=terminal, messages=terminal, color=False)
    with out.running_stages(active=True):
        out.event("stage-start", stage="kubeflow", message="▶ kubeflow: Argo")
        out.event("stage-start", stage="volcano", message="▶ volcano: scheduler")
        time.sleep(0.6)  # the live line refreshes 4 times a second
        out.event("stage-done", stage="volcano", message="✔ volcano: no changes")
        with out.progress("back-fill", 1) as advance:  # no second live display: no error
            advance(1)
        out.warn("a message from a stage")
    shown = terminal.getvalue()
    assert "running: kubeflow" in shown and "volcano" in shown
    assert "✔ volcano: no changes" in shown and "a message from a stage" in shown
    assert [e["event"] for e in out.events][:3] == ["stage-start", "stage-start", "stage-done"]


def test_no_live_line_off_a_terminal_or_in_json_mode():
    for out in (Output(stream=io.StringIO()), Output(json_mode=True, stream=io.StringIO())):
        with out.running_stages(active=True):
            out.event("stage-start", stage="kubeflow", message="▶ kubeflow")
        assert "running:" not in out.stream.getvalue()
