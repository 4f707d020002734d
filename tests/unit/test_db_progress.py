"""Back-fill progress goes through Output: events always, a bar only in a terminal."""

from __future__ import annotations

import io

from cubeinstall.core.output import Output


def test_progress_events_in_json_mode():
    stream = io.StringIO()
    out = Output(json_mode=True, stream=stream)
    with out.progress("back-fill kubeflow.project.expand", 2500) as advance:
        for done in (1000, 1000, 500):
            advance(done)
    progress = [e for e in out.events if e["event"] == "progress"]
    assert [(e["done"], e["total"]) for e in progress] == [(1000, 2500), (2000, 2500), (2500, 2500)]
    assert stream.getvalue().count('"event": "progress"') == 3


def test_no_bar_and_no_text_when_not_a_terminal():
    stream = io.StringIO()
    out = Output(stream=stream)
    with out.progress("back-fill x", 10) as advance:
        advance(10)
    assert stream.getvalue() == ""
    assert out.events[-1]["done"] == 10
