"""Training settings as one typed, validated model (no torch import here).

`TrainConfig` holds every knob `train_sft` and `train_orpo` read. Unset values resolve to
defaults that suit the method and whether LoRA is on (`TrainConfig.resolved_lr`): full
fine-tuning wants a small learning rate, LoRA a larger one, ORPO smaller than SFT.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["sft", "orpo"]

#: Learning rates used when `TrainConfig.learning_rate` is left unset.
DEFAULT_LR: dict[tuple[Method, bool], float] = {
    ("sft", False): 2e-5,  # full fine-tuning
    ("sft", True): 2e-4,  # LoRA
    ("orpo", False): 8e-6,  # ORPO paper (Hong et al., 2024), full fine-tuning
    ("orpo", True): 5e-5,  # LoRA
}

#: Attention and MLP projections of Llama-style models (SmolLM2, Llama, Qwen, Mistral).
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
)


class LoraSettings(BaseModel):
    """LoRA adapter settings (PEFT). After training the adapter is merged into the base
    weights, so the output directory is a plain transformers checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(default=16, gt=0, le=1024)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS


class TrainConfig(BaseModel):
    """Hyper-parameters for one SFT or ORPO run.

    `max_steps` > 0 overrides `epochs`. `lora=None` means full fine-tuning.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: float | None = Field(default=None, gt=0.0, le=1.0,
                                        description="None: a default for the method")
    batch_size: int = Field(default=2, gt=0, description="per device")
    grad_accum: int = Field(default=4, gt=0)
    max_steps: int = Field(default=-1, ge=-1, description="-1: train for `epochs`")
    epochs: float = Field(default=1.0, gt=0.0)
    max_length: int = Field(default=1024, ge=16, description="tokens per example (prompt+reply)")
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    lr_scheduler: str = "linear"
    beta: float = Field(default=0.1, gt=0.0, description="ORPO odds-ratio weight (lambda)")
    lora: LoraSettings | None = None
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    save_steps: int = Field(default=50, gt=0)
    save_total_limit: int | None = Field(default=2, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    threads: int | None = Field(
        default=None, gt=0,
        description="CPU threads for torch (None: torch's default). On a busy machine 1 can "
                    "be several times faster than 2: OpenMP threads spin while they wait.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.max_steps == 0:
            raise ValueError("max_steps must be -1 (use epochs) or a positive number")
        return self

    def resolved_lr(self, method: Method) -> float:
        """The learning rate this run uses: the set one, or the default for the method."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LR[(method, self.lora is not None)]
