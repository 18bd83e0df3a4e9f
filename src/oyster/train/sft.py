"""Supervised fine-tuning (TRL `SFTTrainer`) on chat data.

Each example is the conversation before the final assistant reply (the prompt) and that
reply (the completion); the loss is computed on the reply only, through the model's own
chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from oyster.train.config import TrainConfig
from oyster.train.data import load_sft
from oyster.train.run import TrainResult, lora_config, run, trainer_args

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


def train_sft(model: str | Path, data: str | Path, out: str | Path,
              config: TrainConfig | None = None, *, resume: bool = False,
              overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Fine-tune `model` (`tiny`, `embedded` or a checkpoint dir) on the SFT JSONL `data`
    and save the result in `out` (see `oyster.train` for the layout).

    `resume=True` continues from the last `out/checkpoint-N`; `overwrite=True` starts again
    over an earlier run. Raises `InputError` for bad data or paths before any training."""
    cfg = config or TrainConfig()
    data_path = Path(data)
    examples = load_sft(data_path)

    def make_trainer(base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     callbacks: list[Any]) -> Trainer:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list([ex.as_record() for ex in examples])
        args = SFTConfig(**trainer_args(cfg, "sft", Path(out), progress),
                         completion_only_loss=True, packing=False)
        return SFTTrainer(model=base, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora_config(cfg),
                          callbacks=callbacks)

    return run("sft", model=str(model), data=data_path, out=Path(out), cfg=cfg, resume=resume,
               overwrite=overwrite, progress=progress,
               n_examples=len(examples), make_trainer=make_trainer)
