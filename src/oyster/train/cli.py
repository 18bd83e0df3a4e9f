"""`oyster train sft|orpo|convert-embedded`: the training commands.

Wire them into the main CLI with `register(app)`; torch, transformers and TRL are imported
only when a command runs, so `oyster --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from oyster.errors import OysterError

if TYPE_CHECKING:
    from oyster.train import LoraSettings, TrainConfig, TrainResult

HELP = """Fine-tune a chat model on Lingo-BP data: SFT, then ORPO.

MODEL is `tiny` (a tiny model built from a config, for smoke tests), `embedded` (the
packaged SmolLM2-135M-Instruct) or a transformers checkpoint directory. The output dir gets
the final model + tokenizer (servable with the `hf:OUT` backend), loss.jsonl, loss.png and
resumable checkpoint-N dirs."""

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="`tiny`, `embedded` or a "
                                       "checkpoint dir (e.g. from `convert-embedded`).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output dir for the model, "
                                      "checkpoints, loss.jsonl and loss.png.")]
StepsOpt = Annotated[int, typer.Option("--max-steps", help="Optimizer steps; -1 trains for "
                                       "--epochs instead.")]
EpochsOpt = Annotated[float, typer.Option("--epochs", help="Passes over the data when "
                                          "--max-steps is -1.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate (default: SFT 2e-5, "
                                             "ORPO 8e-6; with --lora 2e-4 / 5e-5).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Examples per device per step.")]
AccumOpt = Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")]
LenOpt = Annotated[int, typer.Option("--max-length", help="Max tokens per example "
                                     "(prompt + reply); longer ones are truncated.")]
LoraOpt = Annotated[bool, typer.Option("--lora/--no-lora", help="Train a LoRA adapter (PEFT) "
                                       "and merge it into the saved model.")]
LoraROpt = Annotated[int, typer.Option("--lora-r", help="LoRA rank.")]
LoraAlphaOpt = Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.")]
LoraDropOpt = Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.")]
LoraTargetsOpt = Annotated[str | None, typer.Option(
    "--lora-targets", help="Comma-separated module names (default: q,k,v,o,gate,up,down_proj).")]
Bf16Opt = Annotated[bool, typer.Option("--bf16", help="bfloat16 mixed precision (GPU).")]
GcOpt = Annotated[bool, typer.Option("--gradient-checkpointing",
                                     help="Trade compute for memory (large models).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
SaveOpt = Annotated[int, typer.Option("--save-steps", help="Save a checkpoint every N steps.")]
LogOpt = Annotated[int, typer.Option("--logging-steps", help="Log the loss every N steps.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last "
                                         "checkpoint-N in --out.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Start again over an "
                                            "earlier run in --out.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads for torch (default: torch's choice); on a busy CPU try 1.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _lora(on: bool, r: int, alpha: int, dropout: float, targets: str | None
          ) -> LoraSettings | None:
    from oyster.train import LoraSettings

    if not on:
        return None
    kw: dict[str, object] = {"r": r, "alpha": alpha, "dropout": dropout}
    if targets:
        kw["target_modules"] = tuple(t.strip() for t in targets.split(",") if t.strip())
    return LoraSettings.model_validate(kw)


def _config(**kw: object) -> TrainConfig:
    from pydantic import ValidationError

    from oyster.errors import InputError
    from oyster.train import TrainConfig

    try:
        return TrainConfig.model_validate(kw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"bad training option: {problems}") from None


def _report(result: TrainResult) -> None:
    first, last = result.first_loss, result.last_loss
    loss = f"loss {first:.4f} -> {last:.4f}" if first is not None and last is not None else "no loss"
    resumed = f" (resumed at step {result.start_step})" if result.resumed_from else ""
    pace = (f", {result.s_per_step:g} s/step ({result.cpu_s_per_step:g} CPU s)"
            if result.s_per_step is not None and result.cpu_s_per_step is not None else "")
    typer.echo(f"{result.method}: {result.global_step} steps{resumed}, {loss}, "
               f"{result.wall_s:.1f} s{pace}")
    typer.echo(f"model: {result.out_dir}  (serve with hf:{result.out_dir})")
    if result.loss_plot:
        typer.echo(f"loss curve: {result.loss_plot}")


def _fail(exc: OysterError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def sft(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help='SFT JSONL: one {"messages": '
                                       '[...]} per line, ending with the assistant reply.')],
    out: OutOpt,
    max_steps: StepsOpt = -1,
    epochs: EpochsOpt = 1.0,
    lr: LrOpt = None,
    batch_size: BatchOpt = 2,
    grad_accum: AccumOpt = 4,
    max_length: LenOpt = 1024,
    lora: LoraOpt = False,
    lora_r: LoraROpt = 16,
    lora_alpha: LoraAlphaOpt = 32,
    lora_dropout: LoraDropOpt = 0.05,
    lora_targets: LoraTargetsOpt = None,
    bf16: Bf16Opt = False,
    gradient_checkpointing: GcOpt = False,
    seed: SeedOpt = 0,
    save_steps: SaveOpt = 50,
    logging_steps: LogOpt = 1,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Supervised fine-tuning (TRL SFTTrainer); the loss is on the final assistant reply."""
    from oyster.train import train_sft

    try:
        cfg = _config(learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum,
                      max_steps=max_steps, epochs=epochs, max_length=max_length,
                      lora=_lora(lora, lora_r, lora_alpha, lora_dropout, lora_targets),
                      bf16=bf16, gradient_checkpointing=gradient_checkpointing, seed=seed,
                      save_steps=save_steps, logging_steps=logging_steps, threads=threads)
        result = train_sft(model, data, out, cfg, resume=resume, overwrite=overwrite,
                           progress=not quiet)
    except OysterError as exc:
        raise _fail(exc) from None
    _report(result)


def orpo(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help='Preference JSONL: {"prompt": '
                                       '[...], "chosen": [...], "rejected": [...]} per line.')],
    out: OutOpt,
    max_steps: StepsOpt = -1,
    epochs: EpochsOpt = 1.0,
    lr: LrOpt = None,
    beta: Annotated[float, typer.Option("--beta", help="Weight of the odds-ratio term "
                                        "(lambda in the ORPO paper).")] = 0.1,
    batch_size: BatchOpt = 2,
    grad_accum: AccumOpt = 4,
    max_length: LenOpt = 1024,
    lora: LoraOpt = False,
    lora_r: LoraROpt = 16,
    lora_alpha: LoraAlphaOpt = 32,
    lora_dropout: LoraDropOpt = 0.05,
    lora_targets: LoraTargetsOpt = None,
    bf16: Bf16Opt = False,
    gradient_checkpointing: GcOpt = False,
    seed: SeedOpt = 0,
    save_steps: SaveOpt = 50,
    logging_steps: LogOpt = 1,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Preference tuning with ORPO (no reference model); usually run on the SFT output."""
    from oyster.train import train_orpo

    try:
        cfg = _config(learning_rate=lr, beta=beta, batch_size=batch_size,
                      grad_accum=grad_accum, max_steps=max_steps, epochs=epochs,
                      max_length=max_length,
                      lora=_lora(lora, lora_r, lora_alpha, lora_dropout, lora_targets),
                      bf16=bf16, gradient_checkpointing=gradient_checkpointing, seed=seed,
                      save_steps=save_steps, logging_steps=logging_steps, threads=threads)
        result = train_orpo(model, data, out, cfg, resume=resume, overwrite=overwrite,
                            progress=not quiet)
    except OysterError as exc:
        raise _fail(exc) from None
    _report(result)


def convert_embedded_cmd(out: OutOpt) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a trainable checkpoint dir."""
    from oyster.train import convert_embedded

    try:
        path = convert_embedded(out)
    except OysterError as exc:
        raise _fail(exc) from None
    typer.echo(f"checkpoint: {path}  (train with --model {path}, serve with hf:{path})")


def export_gguf_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A training run's output dir (or any "
                                            "transformers checkpoint dir).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The GGUF file to write.",
                                      dir_okay=False)],
    outtype: Annotated[str, typer.Option(
        "--outtype", help="f32, f16, bf16, q8_0 (converter) or q4_1, q4_k_m, q6_k "
        "(llama.cpp's quantizer). f16 and q8_0 keep small fine-tuning updates; q4_1 (the "
        "packaged model's format) snaps them back onto the base model's grid.")] = "f16",
    converter: Annotated[Path | None, typer.Option(
        "--converter", help="convert_hf_to_gguf.py or its dir (default: the one "
        "`fetch-converter` cached).")] = None,
    overwrite: OverwriteOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write a trained model as one GGUF file for `--backend embedded:OUT.gguf` (llama.cpp)."""
    from oyster.train.gguf_export import export_gguf

    try:
        result = export_gguf(run_dir, out, outtype, converter=converter, overwrite=overwrite)
    except OysterError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    fixes = ", ".join(f"{k}={v:g}" for k, v in result.metadata_fixes.items())
    typer.echo(f"gguf: {result.out} ({result.out_type}, {result.bytes / 1e6:.1f} MB, "
               f"{result.tensors} tensors, {result.wall_s:.1f} s)")
    if fixes:
        typer.echo(f"added what the converter left out: {fixes}")
    typer.echo(f"serve with --backend embedded:{result.out}")


def fetch_converter_cmd(
    dest: Annotated[Path | None, typer.Option(
        "--dest", help="Where to keep it (default: ~/.cache/oyster/gguf-converter-...).",
        file_okay=False)] = None,
) -> None:
    """Fetch llama.cpp's GGUF converter once (from the llama-cpp-python source distribution
    on PyPI, matching the installed version) for `export-gguf`."""
    from oyster.train.gguf_export import fetch_converter

    try:
        conv = fetch_converter(dest)
    except OysterError as exc:
        raise _fail(exc) from None
    typer.echo(f"converter: {conv.script}")


def make_app() -> typer.Typer:
    """The `train` sub-app on its own (handy for tests)."""
    app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
    app.command("sft", no_args_is_help=True)(sft)
    app.command("orpo", no_args_is_help=True)(orpo)
    app.command("convert-embedded", no_args_is_help=True)(convert_embedded_cmd)
    app.command("export-gguf", no_args_is_help=True)(export_gguf_cmd)
    app.command("fetch-converter")(fetch_converter_cmd)
    return app


def register(app: typer.Typer) -> None:
    """Add the `train` command group to the main Oyster CLI."""
    app.add_typer(make_app(), name="train", help=HELP.splitlines()[0])
