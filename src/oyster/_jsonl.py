"""JSON Lines: the one reader, durable writes, and the run directory that holds them.

Every JSON Lines file is read by `jsonl_lines` (or the two readers on top of it). It splits on
"\n" only: `str.splitlines()` also splits on U+2028, U+2029, U+0085 and others, which JSON
strings may hold unescaped (pydantic and `json.dumps(ensure_ascii=False)` write them so), and
would cut such a record in two. Errors are `InputError`s that name the file and the line.

A run directory has a manifest, `run.json` (what was run), and JSON Lines files appended one
fsynced record at a time. A kill mid-write can leave only a half-written last line: readers
ignore it and `RunDirectory.start` cuts it on resume, so nothing already written is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oyster.errors import InputError

MANIFEST_FILE = "run.json"

M = TypeVar("M", bound=BaseModel)


def append_jsonl(path: Path, record: BaseModel) -> None:
    """Append `record` as one line and fsync, so a finished record survives a kill."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(record.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    """Replace the file whole: a temporary file, then an atomic rename, so a kill leaves
    either the old records or the new ones."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def repair_torn_tail(path: Path) -> None:
    """Cut a half-written last line (a kill during a write) so later appends stay valid."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def jsonl_lines(path: str | Path, *, missing_ok: bool = False,
                torn_tail_ok: bool = False) -> Iterator[tuple[int, str]]:
    """Each non-blank line of a JSON Lines file with its 1-based number.

    `missing_ok`: a missing file has no lines. `torn_tail_ok`: what follows the last newline
    is an unfinished record (a kill mid-append) and is passed over.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return
        raise InputError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: not a file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if torn_tail_ok:
        lines = lines[:-1]
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            yield lineno, line


def jsonl_objects(path: str | Path, *, like: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Each line of a JSON Lines file as a JSON object, with its line number; `like` shows
    the expected shape in the error for a line that is not an object."""
    for lineno, line in jsonl_lines(path):
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise InputError(f"{where}: malformed JSON: nested too deeply") from None
        if not isinstance(obj, dict):
            shape = f" like {like}" if like else ""
            raise InputError(f"{where}: each line must be a JSON object{shape}, got "
                             f"{type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: Path, model_type: type[M]) -> Iterator[M]:
    """Every complete record of a run file in order; a missing file has none."""
    for lineno, line in jsonl_lines(path, missing_ok=True, torn_tail_ok=True):
        try:
            yield model_type.model_validate_json(line)
        except ValidationError as e:
            raise InputError(f"{path}:{lineno}: invalid record: {e.errors()[0]['msg']}") from None


class Manifest(BaseModel):
    """What a run is; resuming it with different `RESUME_FIELDS` would mix incomparable records."""

    model_config = ConfigDict(extra="ignore")  # a manifest from a newer version still reads

    RESUME_FIELDS: ClassVar[tuple[str, ...]] = ()

    def differs_from(self, other: Manifest) -> list[str]:
        return [f for f in self.RESUME_FIELDS if getattr(self, f) != getattr(other, f)]


Man = TypeVar("Man", bound=Manifest)


class RunDirectory(Generic[Man]):
    """A run directory: its manifest and its append-only JSON Lines files."""

    manifest_type: type[Man]
    kind: ClassVar[str] = "run"  # names the run in errors: "not a {kind} directory"
    appended_files: ClassVar[tuple[str, ...]] = ()  # JSON Lines files repaired on resume
    must_start_empty: ClassVar[bool] = False  # refuse a fresh start among other files

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def start(self, manifest: Man, resume: bool) -> None:
        """Create the run, or check that `manifest` matches the run being resumed."""
        if self.manifest_path.exists():
            if not resume:
                raise InputError(f"{self.path} already holds a {self.kind}; pass --resume to "
                                 "continue it or choose another --out")
            differs = self._read_manifest().differs_from(manifest)
            if differs:
                raise InputError(f"{self.path}: cannot resume: {', '.join(differs)} differ from "
                                 "the run already there")
            for name in self.appended_files:
                repair_torn_tail(self.path / name)
        elif self.must_start_empty and self.path.exists() and any(self.path.iterdir()):
            raise InputError(f"{self.path}: exists and is not empty; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_manifest(manifest)

    def _read_manifest(self) -> Man:
        try:
            return self.manifest_type.model_validate_json(self.manifest_path.read_text("utf-8"))
        except OSError as e:
            raise InputError(f"{self.path}: not a {self.kind} directory ({MANIFEST_FILE}: "
                             f"{e.strerror or e})") from None
        except ValidationError as e:
            raise InputError(f"{self.manifest_path}: invalid run description: "
                             f"{e.errors()[0]['msg']}") from None

    def _write_manifest(self, manifest: Man) -> None:
        self.manifest_path.write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
