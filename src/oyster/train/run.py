"""What SFT and ORPO runs share: the output dir layout, resuming, the loss log and plot,
LoRA, and saving a final checkpoint that loads with `from_pretrained(out)`.

Output dir layout:
    out/config.json, model.safetensors, tokenizer*, chat template, generation_config.json
    out/loss.jsonl            one {"step", "loss", ...} per logged step (rewritten on resume)
    out/loss.png              the loss curve
    out/train_config.json     what was asked for (method, model, data, TrainConfig)
    out/train_result.json     what happened (steps, losses, wall time)
    out/checkpoint-N/         resumable Trainer checkpoints (model, optimizer, scheduler, RNG)
    out/adapter/              the LoRA adapter alone, when --lora was used
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from oyster.errors import InputError, OysterError
from oyster.train.config import Method, TrainConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

LOSS_FILE = "loss.jsonl"
PLOT_FILE = "loss.png"
CONFIG_FILE = "train_config.json"
RESULT_FILE = "train_result.json"
ADAPTER_DIR = "adapter"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
#: Extra metrics kept in loss.jsonl when the trainer logs them.
_EXTRA_KEYS = ("learning_rate", "grad_norm", "epoch", "nll_loss", "log_odds_ratio",
               "log_odds_chosen", "rewards/accuracies", "rewards/margins")


class LossPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: int
    loss: float


class TrainResult(BaseModel):
    """What a training run did. `losses` has one point per logged step since step 1,
    including the steps of an earlier run that this one resumed."""

    model_config = ConfigDict(frozen=True)

    method: Method
    out_dir: Path
    global_step: int
    start_step: int
    resumed_from: Path | None
    n_examples: int
    losses: tuple[LossPoint, ...]
    wall_s: float
    loss_plot: Path | None
    s_per_step: float | None = None
    cpu_s_per_step: float | None = None

    @property
    def first_loss(self) -> float | None:
        return self.losses[0].loss if self.losses else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1].loss if self.losses else None


class TrainingError(OysterError):
    """Training started but failed (diverged, ran out of memory, library error)."""


def checkpoints(out: Path) -> list[Path]:
    """`checkpoint-N` dirs in `out`, oldest first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir()
             if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def prepare_out(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Check the output dir and return the checkpoint to resume from (or None)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    found = checkpoints(out)
    if resume:
        if not found:
            raise InputError(f"{out}: nothing to resume (no checkpoint-N directory); "
                             f"run without --resume to start")
        return found[-1]
    previous = found or [p for p in (out / LOSS_FILE, out / "config.json") if p.exists()]
    if previous and not overwrite:
        raise InputError(f"{out}: holds an earlier run ({previous[-1].name}); pass --resume to "
                         f"continue it or --overwrite to start again")
    if overwrite:
        for ckpt in found:
            shutil.rmtree(ckpt)
        if (out / ADAPTER_DIR).is_dir():
            shutil.rmtree(out / ADAPTER_DIR)
        for name in (LOSS_FILE, PLOT_FILE, RESULT_FILE):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return None


def loss_points(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training-loss entries of a Trainer log history, one dict per step."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        step = int(entry["step"])
        row: dict[str, Any] = {"step": step, "loss": float(entry["loss"])}
        row.update({k: entry[k] for k in _EXTRA_KEYS if k in entry})
        rows[step] = row
    return [rows[k] for k in sorted(rows)]


#: Per-step timing kept in loss.jsonl: wall seconds, and CPU seconds of this process (all
#: threads), which stay meaningful on a machine shared with other jobs.
_TIMING_KEYS = ("s_per_step", "cpu_s_per_step")


def write_loss_log(out: Path, log_history: list[dict[str, Any]],
                   timing: dict[int, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Rewrite loss.jsonl from the trainer's history; `timing` (step -> seconds per step)
    is added, and steps timed by an earlier process (before a resume) keep their times."""
    rows = loss_points(log_history)
    earlier: dict[int, dict[str, Any]] = {}
    if (out / LOSS_FILE).is_file():
        for line in (out / LOSS_FILE).read_text("utf-8").splitlines():
            try:
                row = json.loads(line)
                earlier[int(row["step"])] = row
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a killed run: its step is logged again anyway
    for row in rows:
        times = (timing or {}).get(row["step"]) or {
            k: earlier[row["step"]][k] for k in _TIMING_KEYS if k in earlier.get(row["step"], {})}
        row.update(times)
    tmp = out / (LOSS_FILE + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out / LOSS_FILE)
    return rows


def plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Draw the loss curve (and ORPO's NLL part when present); None without matplotlib."""
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    ax.plot(steps, losses, marker="o", markersize=2.5, linewidth=0.8, alpha=0.6, label="loss")
    window = len(rows) // 8
    if window >= 2:  # a trailing mean makes the trend readable through per-batch noise
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, linewidth=2, label=f"loss, mean of last {window}")
    if any("nll_loss" in r for r in rows):
        pts = [(r["step"], r["nll_loss"]) for r in rows if "nll_loss" in r]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", markersize=2,
                linewidth=0.8, linestyle="--", label="NLL part")
    ax.legend(fontsize="small")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def make_loss_callback(out: Path) -> Any:
    """A TrainerCallback that keeps `loss.jsonl` current after every log event, so a crashed
    or interrupted run still leaves its curve; on resume the restored history is kept."""
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def __init__(self) -> None:
            self.timing: dict[int, dict[str, float]] = {}
            self._last: tuple[int, float, float] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._last = (state.global_step, time.perf_counter(), time.process_time())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if self._last is not None and logs and "loss" in logs:
                step, wall, cpu = self._last
                n = max(1, state.global_step - step)
                now = (state.global_step, time.perf_counter(), time.process_time())
                self.timing[state.global_step] = {"s_per_step": round((now[1] - wall) / n, 2),
                                                  "cpu_s_per_step": round((now[2] - cpu) / n, 2)}
                self._last = now
            if state.is_world_process_zero:
                write_loss_log(out, state.log_history, self.timing)

    return LossLog()


def lora_config(cfg: TrainConfig) -> Any:
    """A PEFT LoraConfig for causal LM training, or None without `cfg.lora`."""
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), bias="none",
                      task_type="CAUSAL_LM")


def trainer_args(cfg: TrainConfig, method: Method, out: Path, progress: bool) -> dict[str, Any]:
    """Keyword arguments shared by SFTConfig and ORPOConfig (both TrainingArguments)."""
    import dataclasses

    import torch
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    args: dict[str, Any] = {
        "output_dir": str(out),
        "learning_rate": cfg.resolved_lr(method),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "max_steps": cfg.max_steps,
        "num_train_epochs": cfg.epochs,
        "max_length": cfg.max_length,
        "weight_decay": cfg.weight_decay,
        "lr_scheduler_type": cfg.lr_scheduler,
        "bf16": cfg.bf16,
        "fp16": False,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "remove_unused_columns": method != "orpo",
    }
    # transformers 5 renamed these; TRL defaults gradient checkpointing to on, we default off.
    if "activation_checkpointing" in fields:
        args["activation_checkpointing"] = cfg.gradient_checkpointing
    else:
        args["gradient_checkpointing"] = cfg.gradient_checkpointing
    if "warmup_ratio" in fields:
        args["warmup_ratio"] = cfg.warmup_ratio
    else:  # a float < 1 is a ratio of the total steps
        args["warmup_steps"] = cfg.warmup_ratio
    return args


def model_dtype(cfg: TrainConfig) -> str:
    """Weights dtype to load: bf16 only for LoRA with --bf16 (the frozen base can be bf16);
    full fine-tuning keeps float32 master weights and uses bf16 autocast."""
    return "bfloat16" if cfg.bf16 and cfg.lora is not None else "float32"


def write_config(out: Path, method: Method, model: str, data: Path, n_examples: int,
                 cfg: TrainConfig, resumed_from: Path | None) -> None:
    import torch
    import transformers
    import trl

    record = {
        "method": method,
        "model": model,
        "data": str(data),
        "n_examples": n_examples,
        "resumed_from": str(resumed_from) if resumed_from else None,
        "config": cfg.model_dump(mode="json"),
        "learning_rate": cfg.resolved_lr(method),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl.__version__},
    }
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def save_final(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out: Path,
               cfg: TrainConfig) -> PreTrainedModel:
    """Save the trained weights in `out` itself (LoRA merged into the base weights; the
    adapter alone also goes to `out/adapter`), with the tokenizer and chat template."""
    import torch

    model: Any = trainer.accelerator.unwrap_model(trainer.model)
    if cfg.lora is not None:
        model.save_pretrained(out / ADAPTER_DIR)
        model = model.merge_and_unload()
    if cfg.bf16 and cfg.lora is None:
        model = model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    return model


def _median(values: list[float]) -> float | None:
    """The median, leaving out the first value (it carries data loading and warm-up)."""
    import statistics

    kept = values[1:] or values
    return round(statistics.median(kept), 2) if kept else None


def run(method: Method, *, model: str, data: Path, out: Path, cfg: TrainConfig, resume: bool,
        overwrite: bool, progress: bool, n_examples: int,
        make_trainer: Callable[[PreTrainedModel, PreTrainedTokenizerBase, list[Any]], Trainer],
        ) -> TrainResult:
    """Load the model, build the trainer via `make_trainer`, train (or resume), save."""
    from oyster.train.models import load_model

    out = out.expanduser()
    start = time.perf_counter()
    resume_from = prepare_out(out, resume=resume, overwrite=overwrite)
    write_config(out, method, model, data, n_examples, cfg, resume_from)

    import torch
    import transformers

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)  # process-wide: the CLI's choice to make
    transformers.set_seed(cfg.seed)
    base, tokenizer = load_model(model, dtype=model_dtype(cfg))
    loss_log = make_loss_callback(out)
    trainer = make_trainer(base, tokenizer, [loss_log])
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise TrainingError(f"{method} training failed: {exc}") from exc

    rows = write_loss_log(out, trainer.state.log_history, loss_log.timing)
    bad = [r["step"] for r in rows if not math.isfinite(r["loss"])]
    save_final(trainer, tokenizer, out, cfg)
    title = f"{method.upper()} on {Path(model).name if model not in ('tiny', 'embedded') else model}"
    plot = plot_loss(rows, out / PLOT_FILE, title)
    result = TrainResult(
        method=method,
        out_dir=out,
        global_step=trainer.state.global_step,
        start_step=int(_CKPT.match(resume_from.name).group(1)) if resume_from else 0,  # type: ignore[union-attr]
        resumed_from=resume_from,
        n_examples=n_examples,
        losses=tuple(LossPoint(step=r["step"], loss=r["loss"]) for r in rows),
        wall_s=round(time.perf_counter() - start, 2),
        loss_plot=plot,
        s_per_step=_median([t["s_per_step"] for t in loss_log.timing.values()]),
        cpu_s_per_step=_median([t["cpu_s_per_step"] for t in loss_log.timing.values()]),
    )
    (out / RESULT_FILE).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if bad:
        raise TrainingError(f"{method}: the loss is not finite at step(s) {bad[:5]} "
                            f"(learning rate too high? try a smaller --lr); see {out / LOSS_FILE}")
    return result
