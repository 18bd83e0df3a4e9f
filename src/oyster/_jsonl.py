"""Durable JSON Lines files and the run directory that holds them.

A run directory has a manifest, `run.json` (what was run), and JSON Lines files appended one
fsynced record at a time. A kill mid-write can leave only a half-written last line: readers
ignore it and `RunDirectory.start` cuts it on resume, so nothing already written is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

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


def read_jsonl(path: Path, model_type: type[M]) -> Iterator[M]:
    """Every complete record in file order; a missing file has none."""
    if not path.exists():
        return
    complete = path.read_text("utf-8").split("\n")[:-1]  # after the last newline: unfinished
    for lineno, line in enumerate(complete, 1):
        if not line.strip():
            continue
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
