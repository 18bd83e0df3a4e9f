"""Fine-tune a chat model on Lingo-BP output: SFT, then ORPO (docs/training.md).

    from oyster.train import TrainConfig, LoraSettings, train_sft, train_orpo, convert_embedded

    base = convert_embedded("/tmp/smollm2")                        # GGUF -> checkpoint dir
    sft = train_sft(base, "sft.jsonl", "/tmp/run/sft", TrainConfig(max_steps=40))
    orpo = train_orpo(sft.out_dir, "pairs.jsonl", "/tmp/run/orpo", TrainConfig(max_steps=30))
    # orpo.out_dir is a transformers checkpoint: serve it with the `hf:/tmp/run/orpo` backend

Model specs: `tiny` (built from a config, for smoke tests), `embedded` (the packaged
SmolLM2-135M-Instruct GGUF, dequantized) or a checkpoint directory. Data formats: see
`oyster.train.data`. Output layout: see `oyster.train.run`. Importing this package does
not import torch; the training functions do.
"""

from oyster.train.config import LoraSettings, TrainConfig
from oyster.train.convert import convert_embedded, convert_gguf, embedded_gguf_path
from oyster.train.data import PreferenceExample, SFTExample, load_preferences, load_sft
from oyster.train.models import build_tiny, load_model, save_tiny
from oyster.train.orpo import train_orpo
from oyster.train.run import LossPoint, TrainingError, TrainResult
from oyster.train.sft import train_sft

__all__ = [
    "LoraSettings",
    "LossPoint",
    "PreferenceExample",
    "SFTExample",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "build_tiny",
    "convert_embedded",
    "convert_gguf",
    "embedded_gguf_path",
    "load_model",
    "load_preferences",
    "load_sft",
    "save_tiny",
    "train_orpo",
    "train_sft",
]
