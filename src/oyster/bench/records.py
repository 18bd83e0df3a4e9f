"""A run on disk: `run.json` (what was run), `results.jsonl` (one record per finished
prompt × system, appended and fsynced as each arrives) and `summary.json` (the numbers).

A kill mid-run loses nothing already written: a half-written last line is dropped when the
run is read or resumed, and `--resume` skips every key that has a record without an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oyster.bench.targets import System, TargetReply
from oyster.errors import InputError
from oyster.judges.base import RefusalVerdict, SafetyVerdict, SatisfactionVerdict

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


class RunMeta(BaseModel):
    """What a run is: which benchmark, on which data, target and judges."""

    model_config = ConfigDict(extra="ignore")

    benchmark: str
    label: str = Field(description="a short name for reports")
    data: str
    backend: str
    systems: list[System]
    judges: str
    params: dict[str, Any] = Field(default_factory=dict)
    targets: list[dict[str, Any]] = Field(default_factory=list)
    started: str = ""
    oyster_version: str = ""

    def same_run(self, other: RunMeta) -> list[str]:
        """Fields that differ in a way that makes resuming unsound."""
        return [f for f in ("benchmark", "data", "backend", "judges")
                if getattr(self, f) != getattr(other, f)]


class ResultRecord(BaseModel):
    """One prompt through one system, judged."""

    model_config = ConfigDict(extra="ignore")

    key: str
    system: System
    id: str
    language: str
    level: str | None = None
    category: str | None = None
    attack_method: str | None = None
    user_role: str | None = None
    prompt: str
    reply: TargetReply | None = None
    error: str | None = None
    refusal: RefusalVerdict | None = None
    safety: SafetyVerdict | None = None
    satisfaction: SatisfactionVerdict | None = None
    constructive: dict[str, float] | None = Field(
        default=None, description="C_β per β (keys are β as text); absent if undetermined")

    @property
    def ok(self) -> bool:
        return self.error is None


def record_key(system: str, item_id: str) -> str:
    return f"{system}/{item_id}"


class RunDir:
    """The files of one run; `append` is durable line by line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def meta(self) -> RunMeta:
        p = self.path / RUN_FILE
        try:
            return RunMeta.model_validate_json(p.read_text("utf-8"))
        except OSError as e:
            raise InputError(f"{self.path}: not a run directory ({RUN_FILE}: "
                             f"{e.strerror or e})") from e
        except ValidationError as e:
            raise InputError(f"{p}: invalid run description: {e.errors()[0]['msg']}") from e

    def start(self, meta: RunMeta, resume: bool) -> None:
        """Create the run, or check that `meta` matches the run being resumed."""
        if (self.path / RUN_FILE).exists():
            if not resume:
                raise InputError(f"{self.path} already holds a run; pass --resume to continue it "
                                 "or choose another --out")
            differs = self.meta().same_run(meta)
            if differs:
                raise InputError(f"{self.path}: cannot resume: {', '.join(differs)} differ from "
                                 "the run already there")
            self._repair_tail()
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / RUN_FILE).write_text(meta.model_dump_json(indent=2) + "\n", "utf-8")

    def _repair_tail(self) -> None:
        """Cut a half-written last line (a kill during a write) so appends stay valid."""
        p = self.results_path
        if not p.exists():
            return
        data = p.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(p, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def records(self) -> list[ResultRecord]:
        """Every complete record; for a key written twice (an error, then a retry) the last."""
        p = self.results_path
        if not p.exists():
            return []
        by_key: dict[str, ResultRecord] = {}
        lines = p.read_text("utf-8").split("\n")
        complete = lines[:-1]  # the text after the last newline is unfinished
        for lineno, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                rec = ResultRecord.model_validate_json(line)
            except ValidationError as e:
                raise InputError(f"{p}:{lineno}: invalid record: {e.errors()[0]['msg']}") from e
            by_key[rec.key] = rec
        return list(by_key.values())

    def done_keys(self) -> set[str]:
        return {r.key for r in self.records() if r.ok}

    def append(self, record: ResultRecord) -> None:
        line = record.model_dump_json() + "\n"
        with open(self.results_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def replace_records(self, records: list[ResultRecord], meta: RunMeta) -> None:
        """Rewrite the results whole (temporary file, then an atomic rename) and the meta."""
        tmp = self.results_path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(record.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.results_path)
        (self.path / RUN_FILE).write_text(meta.model_dump_json(indent=2) + "\n", "utf-8")

    def write_summary(self, summary: BaseModel) -> Path:
        p = self.path / SUMMARY_FILE
        p.write_text(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False)
                     + "\n", "utf-8")
        return p
