"""The benchmark reports the console lists: HTML files written by `oyster report` under one
folder (searched three levels deep), recognised by the generator tag the report writes (or,
for reports written before it had one, by its footer line)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

from pydantic import BaseModel

MAX_DEPTH = 3
MAX_REPORTS = 500
_GENERATOR = re.compile(r"<meta name=['\"]generator['\"] content=['\"]oyster report['\"]")
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_GENERATED = re.compile(r"Generated (\S+) by `oyster report` from (\d+) run")


class ReportFile(BaseModel):
    name: str  # path under the reports folder, with forward slashes
    title: str
    generated: str | None
    runs: int | None
    size: int
    modified: float

    @property
    def modified_utc(self) -> str:
        return datetime.fromtimestamp(self.modified, UTC).strftime("%Y-%m-%d %H:%M")


def _read_head(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return f.read(8192)


def list_reports(folder: Path) -> list[ReportFile]:
    """Oyster reports under `folder`, newest first."""
    found: list[ReportFile] = []
    root = folder.resolve()
    for path in sorted(root.rglob("*.html")):
        if len(path.relative_to(root).parts) > MAX_DEPTH or not path.is_file():
            continue
        try:
            head = _read_head(path)
            stat = path.stat()
        except OSError:
            continue
        generated = _GENERATED.search(head)
        if not (_GENERATOR.search(head) or generated):
            continue
        title = _TITLE.search(head)
        found.append(ReportFile(
            name=path.relative_to(root).as_posix(),
            title=unescape(title.group(1).strip()) if title else path.stem,
            generated=generated.group(1) if generated else None,
            runs=int(generated.group(2)) if generated else None,
            size=stat.st_size, modified=stat.st_mtime))
        if len(found) >= MAX_REPORTS:
            break
    return sorted(found, key=lambda r: r.modified, reverse=True)


def report_path(folder: Path, name: str) -> Path | None:
    """The file for a listed report name; None for anything not listed (no path tricks)."""
    for report in list_reports(folder):
        if report.name == name:
            return folder.resolve() / report.name
    return None
