"""watchdog glue: the native observer (inotify, ReadDirectoryChangesW, FSEvents) or polling."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

if TYPE_CHECKING:
    from agent.service import Agent

# Opens tell a writer that has created a file but not written yet from a file moved in (which is finished);
# read-only closes end the wait an open started when the opener was only reading (the agent's own reads
# included, which are ignored because a dispatched file is no longer tracked).
EVENTS = [
    FileCreatedEvent,
    FileOpenedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileMovedEvent,
    FileDeletedEvent,
]


def _path(raw: bytes | str) -> str:
    return os.fsdecode(raw)


class _Handler(FileSystemEventHandler):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        src = _path(event.src_path)
        if kind == "created":
            self.agent.on_created(src)
        elif kind == "modified":
            self.agent.on_modified(src)
        elif kind == "opened":
            self.agent.on_opened(src)
        elif kind == "closed":
            self.agent.on_closed(src)
        elif kind == "closed_no_write":
            self.agent.on_closed_nowrite(src)
        elif kind == "moved":
            self.agent.on_moved(src, _path(event.dest_path))
        elif kind == "deleted":
            self.agent.on_deleted(src)


def make_observer(agent: Agent, *, poll: bool, poll_interval_s: float) -> Any:
    """Start a recursive observer on the agent's folder."""
    if poll:
        from watchdog.observers.polling import PollingObserver

        observer: Any = PollingObserver(timeout=poll_interval_s)
    else:
        from watchdog.observers import Observer

        observer = Observer()
    observer.schedule(_Handler(agent), str(agent.watch), recursive=True, event_filter=EVENTS)
    observer.start()
    return observer
