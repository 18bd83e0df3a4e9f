"""A run on disk: `run.json` (what was run), `results.jsonl` (one record per finished
prompt × system, appended and fsynced as each arrives) and `summary.json` (the numbers).

A kill mid-run loses nothing already written: a half-written last line is dropped when the
run is read or resumed, and `--resume` skips every key that has a record without an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from oyster._jsonl import Manifest, RunDirectory, append_jsonl, read_jsonl, rewrite_jsonl
from oyster.bench.targets import System, TargetReply
from oyster.judges.base import RefusalVerdict, SafetyVerdict, SatisfactionVerdict

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


class RunMeta(Manifest):
    """What a run is: which benchmark, on which data, target and judges."""

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

    RESUME_FIELDS: ClassVar[tuple[str, ...]] = ("benchmark", "data", "backend", "judges")

    def differs_from(self, other: Manifest) -> list[str]:
        # `bench compare` named the starter sets without their suffix before the Benchmark
        # registry ("package:constructive_starter"); the same data, so such runs still resume
        return [f for f in super().differs_from(other)
                if f != "data" or not isinstance(other, RunMeta)
                or _data_key(self.data) != _data_key(other.data)]


def _data_key(data: str) -> str:
    """A run's data name for comparing: a packaged set with or without `.jsonl`."""
    return data.removesuffix(".jsonl") if data.startswith("package:") else data


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


class RunDir(RunDirectory[RunMeta]):
    """The files of one run; `append` is durable line by line."""

    manifest_type = RunMeta
    appended_files = (RESULTS_FILE,)

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def meta(self) -> RunMeta:
        return self._read_manifest()

    def records(self) -> list[ResultRecord]:
        """Every complete record; for a key written twice (an error, then a retry) the last."""
        by_key = {rec.key: rec for rec in read_jsonl(self.results_path, ResultRecord)}
        return list(by_key.values())

    def done_keys(self) -> set[str]:
        return {r.key for r in self.records() if r.ok}

    def append(self, record: ResultRecord) -> None:
        append_jsonl(self.results_path, record)

    def replace_records(self, records: list[ResultRecord], meta: RunMeta) -> None:
        """Rewrite the results whole (temporary file, then an atomic rename) and the meta."""
        rewrite_jsonl(self.results_path, records)
        self._write_manifest(meta)

    def write_summary(self, summary: BaseModel) -> Path:
        p = self.path / SUMMARY_FILE
        p.write_text(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False)
                     + "\n", "utf-8")
        return p
