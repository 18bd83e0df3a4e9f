"""Odds-ratio preference optimisation (ORPO, Hong et al. 2024) with TRL's
`trl.experimental.orpo.ORPOTrainer`.

ORPO needs no reference model: its loss is the NLL of the chosen reply plus `beta` times a
log-odds-ratio term that pushes the chosen reply's odds above the rejected one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from oyster.train.config import TrainConfig
from oyster.train.data import load_preferences
from oyster.train.run import TrainResult, lora_config, run, trainer_args

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


def train_orpo(model: str | Path, data: str | Path, out: str | Path,
               config: TrainConfig | None = None, *, resume: bool = False,
               overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Preference-tune `model` (`tiny`, `embedded` or a checkpoint dir, typically the output
    of `train_sft`) on the preference JSONL `data` and save the result in `out`.

    `resume=True` continues from the last `out/checkpoint-N`; `overwrite=True` starts again
    over an earlier run. Raises `InputError` for bad data or paths before any training."""
    cfg = config or TrainConfig()
    data_path = Path(data)
    examples = load_preferences(data_path)

    def make_trainer(base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     callbacks: list[Any]) -> Trainer:
        import warnings

        from datasets import Dataset

        with warnings.catch_warnings():  # "trl.experimental is unstable": we pin and test it
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        dataset = Dataset.from_list([ex.as_record() for ex in examples])
        args = ORPOConfig(**trainer_args(cfg, "orpo", Path(out), progress), beta=cfg.beta)
        return ORPOTrainer(model=base, args=args, train_dataset=dataset,
                           processing_class=tokenizer, peft_config=lora_config(cfg),
                           callbacks=callbacks)

    return run("orpo", model=str(model), data=data_path, out=Path(out), cfg=cfg,
               resume=resume, overwrite=overwrite, progress=progress,
               n_examples=len(examples),
               make_trainer=make_trainer)
