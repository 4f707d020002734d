"""The only code that prints.

Everything the product says goes through an ``Output`` as an event: a kind
plus fields. In a terminal events become rich lines and tables; with
``--json`` each event is one JSON line on stdout. Tests read events, not
text. Every string passes through ``redaction.redact`` on the way out.

stdout is for data, stderr for messages: without ``--json``, warnings, errors
and debug lines go to ``messages`` (stderr), so that ``cubeinstall render >
all.yaml`` or ``render | kubectl apply -f -`` get nothing but YAML. With
``--json`` stdout is the event stream, every event on it, one a line.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from cubeinstall.core.redaction import redact, redact_obj


@dataclass
class Output:
    json_mode: bool = False
    verbose: bool = False
    color: bool = True
    stream: Any = None  # data: text, tables, JSON events
    messages: Any = None  # warnings, errors, debug lines (human mode); default stderr
    events: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _console: Any = field(default=None, repr=False)
    _message_console: Any = field(default=None, repr=False)
    _running: dict[str, float] | None = field(default=None, repr=False)  # live view: stage -> start

    def __post_init__(self) -> None:
        if self.messages is None:  # an explicit stream alone (tests) takes both
            self.messages = sys.stderr if self.stream is None else self.stream
        if self.stream is None:
            self.stream = sys.stdout

    # -- events ---------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> None:
        """Record and show one event. ``message`` is the human line, if any."""
        record = redact_obj({"event": kind, "time": round(time.time(), 3), **fields})
        with self._lock:
            self.events.append(record)
            if self._running is not None:
                self._track_running(kind, _running_name(record))
            if self.json_mode:
                self.stream.write(json.dumps(record, default=str, sort_keys=True) + "\n")
                self.stream.flush()
            elif kind != "debug" or self.verbose:
                message = record.get("message")
                if message:
                    self._print(self._style(kind, message), to_messages=kind in _MESSAGE_KINDS)

    def info(self, message: str, **fields: Any) -> None:
        self.event("info", message=message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.event("warning", message=message, **fields)

    def debug(self, message: str, **fields: Any) -> None:
        self.event("debug", message=message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.event("error", message=message, **fields)

    # -- human rendering -------------------------------------------------------

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        rows = [[redact(str(cell)) for cell in row] for row in rows]
        if self.json_mode:
            self.event("table", title=title, columns=list(columns), rows=rows)
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_lines=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        with self._lock:
            self._rich().print(table)

    def text(self, text: str) -> None:
        """Plain text that is the product of a command (rendered YAML, a diff)."""
        with self._lock:
            self.stream.write(redact(text))
            if not text.endswith("\n"):
                self.stream.write("\n")
            self.stream.flush()

    @contextlib.contextmanager
    def progress(self, label: str, total: int, unit: str = "rows") -> Iterator[Callable[[int], None]]:
        """Yield ``advance(n)``: a rich progress bar in a terminal, ``progress`` events always."""
        done = 0
        bar = None
        # one live display per terminal: while stages run at once, their line is it
        if not self.json_mode and _is_terminal(self.messages) and self._running is None:
            from rich.progress import Progress

            bar = Progress(console=self._messages_rich(), transient=True)
            task = bar.add_task(redact(label), total=total)
            bar.start()

        def advance(count: int) -> None:
            nonlocal done
            done += count
            self.event("progress", target=label, done=done, total=total, unit=unit)
            if bar is not None:
                bar.update(task, completed=done)

        try:
            yield advance
        finally:
            if bar is not None:
                bar.stop()

    @contextlib.contextmanager
    def running_stages(self, active: bool) -> Iterator[None]:
        """While stages run at once: on a terminal, a live line under the output naming
        each running stage and how long it has run (events and --json are unchanged)."""
        if not active or self.json_mode or not _is_terminal(self.stream):
            yield
            return
        from rich.live import Live

        self._running = {}
        live = Live(get_renderable=self._running_line, console=self._rich(), transient=True,
                    refresh_per_second=4, redirect_stdout=False, redirect_stderr=False)
        try:
            with live:
                yield
        finally:
            self._running = None

    def _track_running(self, kind: str, stage: str | None) -> None:
        if kind == "stage-start" and stage:
            self._running[stage] = time.monotonic()
        elif kind in ("stage-done", "stage-failed", "stage-skipped") and stage:
            self._running.pop(stage, None)

    def _running_line(self) -> str:
        from rich.text import Text

        now = time.monotonic()
        stages = dict(self._running or {})
        return Text("running: " + ", ".join(f"{name} {now - began:.0f}s"
                                           for name, began in stages.items()), style="dim")

    def _style(self, kind: str, message: str) -> str:
        prefix = {"warning": "[yellow]warning:[/] ", "error": "[red]error:[/] ",
                  "debug": "[dim]debug:[/] "}.get(kind, "")
        from rich.markup import escape

        return prefix + escape(message)

    def _print(self, markup: str, to_messages: bool = False) -> None:
        console = self._messages_rich() if to_messages else self._rich()
        console.print(markup, highlight=False, soft_wrap=True)

    def _rich(self):
        if self._console is None:
            self._console = self._new_console(self.stream)
        return self._console

    def _messages_rich(self):
        if self.messages is self.stream or (self._running is not None
                                            and _is_terminal(self.messages)):
            return self._rich()  # one terminal: messages print above the live line too
        if self._message_console is None:
            self._message_console = self._new_console(self.messages)
        return self._message_console

    def _new_console(self, stream):
        from rich.console import Console

        return Console(file=stream, no_color=not self.color, highlight=False, soft_wrap=True)


def _running_name(record: dict) -> str | None:
    """A stage in the live line, with its cluster on a site of several (events carry it)."""
    stage, cluster = record.get("stage"), record.get("cluster")
    return f"{stage}@{cluster}" if stage and cluster else stage


def _is_terminal(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


# Event kinds that are messages about the run, not its product: stderr in human mode.
_MESSAGE_KINDS = frozenset({"warning", "error", "debug"})
