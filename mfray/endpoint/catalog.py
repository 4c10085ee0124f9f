"""The events a simulation server may simulate: stored event files under the folders it was
started with, by id (`<folder name>/<file stem>`), and uploads it saved under its own store. No
request names a path: an id is looked up in the index made at start, and an upload is stored
under a name the server makes."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from mfray.data import load_file
from mfray.data.validate import EVENT_SUFFIXES
from mfray.types import Event


class EventNotFound(LookupError):
    """No stored event has that id."""


class BadEvent(ValueError):
    """An upload (or a stored file) that holds no usable event; the message names the problems."""


def index_events(folders: list[str | Path]) -> dict[str, Path]:
    """{id: path} of the event files under `folders` (recursively; hidden entries skipped). The id
    is the folder's name and the file's stem; a clash keeps the first and the later ones get a
    numbered suffix, so no file is hidden."""
    index: dict[str, Path] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"event folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix in EVENT_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        for path in files:
            key, n = f"{folder.name}/{path.stem}", 2
            while key in index:
                key, n = f"{folder.name}/{path.stem}~{n}", n + 1
            index[key] = path
    return index


def load_one(path: Path, pick: str | None, shown_as: str) -> Event:
    """The event of `path` (`pick`: the id of one of several); problems name the file as
    `shown_as` (a catalogue id or an upload's own file name, never a server path)."""
    result = load_file(path)
    if result.format == "gold_labels":
        raise BadEvent(f"{shown_as}: a gold-label file, not an event")
    problems = [str(p).replace(str(path), shown_as) for p in result.problems]
    events = [e for e in result.events if pick in (None, e.event_id)]
    if len(events) != 1:
        have = ", ".join(e.event_id for e in result.events[:20]) or "none"
        want = f"event {pick!r}" if pick else "one event (give pick)"
        problems.append(f"{shown_as}: need {want}; the file has {len(result.events)}: {have}")
        raise BadEvent("; ".join(problems[:20]))
    if not events[0].responses:
        raise BadEvent(f"{shown_as}: event {events[0].event_id} has no responses to simulate")
    return events[0]


class EventCatalog:
    """Stored events by id, and uploads kept in `uploads` (a folder of the server's store)."""

    def __init__(self, folders: list[str | Path], uploads: str | Path) -> None:
        self.paths = index_events(folders)
        self.uploads = Path(uploads)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def listing(self) -> list[dict]:
        """[{id, format}] of every stored event, sorted by id."""
        return [{"id": key, "format": path.suffix[1:]} for key, path in sorted(self.paths.items())]

    def stored(self, event_id: str, pick: str | None = None) -> Event:
        """The stored event `event_id`; EventNotFound for an unknown id, BadEvent for a bad file."""
        if event_id not in self.paths:
            raise EventNotFound(f"no stored event {event_id!r}; GET /api/events lists them")
        return load_one(self.paths[event_id], pick, event_id)

    def save_upload(self, name: str, suffix: str, content: str, encoding: str) -> str:
        """Store an upload as `<name><suffix>` (`name`: the simulation's id, made by the server)
        and return that file name."""
        if suffix not in EVENT_SUFFIXES:
            raise BadEvent(f"uploads must be one of {', '.join(EVENT_SUFFIXES)}")
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise BadEvent("upload.content is not valid base64") from None
        else:
            data = content.encode("utf-8", errors="surrogatepass")
        file = f"{name}{suffix}"
        (self.uploads / file).write_bytes(data)
        return file

    def uploaded(self, file: str, pick: str | None, shown_as: str) -> Event:
        """The event of a stored upload; `file` must be a name save_upload made."""
        path = self.uploads / file
        if Path(file).name != file or path.suffix not in EVENT_SUFFIXES or not path.is_file():
            raise EventNotFound(f"upload {shown_as!r} is no longer stored")
        return load_one(path, pick, shown_as)
