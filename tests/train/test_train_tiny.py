"""End-to-end SFT and ORPO on the tiny model: seconds each on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

from oyster.errors import InputError
from oyster.train import LoraSettings, TrainConfig, train_orpo, train_sft

FAST = {"batch_size": 2, "grad_accum": 1, "max_length": 256, "learning_rate": 3e-3,
        "warmup_ratio": 0.0}


def _reload_and_generate(out: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tok.apply_chat_template([{"role": "user", "content": "I feel hopeless."}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    return str(tok.decode(gen[0, ids["input_ids"].shape[1]:]))


def _assert_run_files(out: Path, steps: list[int]) -> list[dict]:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "loss.jsonl", "loss.png", "train_config.json",
                 "train_result.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == steps
    assert all(math.isfinite(r["loss"]) for r in rows)
    return rows


def test_sft_then_orpo_tiny(sft_file: Path, pref_file: Path, tmp_path: Path) -> None:
    sft_out = tmp_path / "sft"
    res = train_sft("tiny", sft_file, sft_out, TrainConfig(max_steps=4, save_steps=2, **FAST),
                    progress=False)
    assert res.global_step == 4 and res.start_step == 0 and res.resumed_from is None
    assert res.n_examples == 4
    _assert_run_files(sft_out, [1, 2, 3, 4])
    assert res.first_loss is not None and res.last_loss is not None
    assert res.last_loss < res.first_loss  # lr 3e-3 on 4 short examples: it must learn
    assert sorted(p.name for p in sft_out.glob("checkpoint-*")) == ["checkpoint-2",
                                                                     "checkpoint-4"]
    _reload_and_generate(sft_out)

    orpo_out = tmp_path / "orpo"
    res2 = train_orpo(sft_out, pref_file, orpo_out,
                      TrainConfig(max_steps=3, save_steps=10, **FAST), progress=False)
    rows = _assert_run_files(orpo_out, [1, 2, 3])
    assert "nll_loss" in rows[0] and "log_odds_ratio" in rows[0]
    assert res2.global_step == 3
    _reload_and_generate(orpo_out)
    cfg = json.loads((orpo_out / "train_config.json").read_text())
    assert cfg["method"] == "orpo" and cfg["model"] == str(sft_out)


def test_resume_continues_from_checkpoint(sft_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_sft("tiny", sft_file, out, TrainConfig(max_steps=2, save_steps=2, seed=0, **FAST),
              progress=False)
    first = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]

    with pytest.raises(InputError, match="--resume"):
        train_sft("tiny", sft_file, out, TrainConfig(max_steps=4, **FAST), progress=False)

    # A different seed would change steps 1-2 if they were recomputed: they must not be.
    res = train_sft("tiny", sft_file, out, TrainConfig(max_steps=4, save_steps=2, seed=7,
                                                       **FAST),
                    resume=True, progress=False)
    assert res.resumed_from == out / "checkpoint-2"
    assert res.start_step == 2 and res.global_step == 4
    rows = _assert_run_files(out, [1, 2, 3, 4])
    assert rows[:2] == first  # losses and the first run's step times both kept
    assert all(r["s_per_step"] >= 0 and r["cpu_s_per_step"] > 0 for r in rows)
    assert res.s_per_step is not None and res.cpu_s_per_step is not None
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_resume_without_checkpoint_and_overwrite(sft_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    with pytest.raises(InputError, match="nothing to resume"):
        train_sft("tiny", sft_file, out, TrainConfig(max_steps=1, **FAST), resume=True,
                  progress=False)
    train_sft("tiny", sft_file, out, TrainConfig(max_steps=2, save_steps=1, **FAST),
              progress=False)
    res = train_sft("tiny", sft_file, out, TrainConfig(max_steps=1, save_steps=1, **FAST),
                    overwrite=True, progress=False)
    assert res.global_step == 1 and res.start_step == 0
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]


def test_lora_adapter_is_merged(sft_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    lora = LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj"))
    res = train_sft("tiny", sft_file, out, TrainConfig(max_steps=2, lora=lora, **FAST),
                    progress=False)
    assert res.global_step == 2
    assert (out / "adapter" / "adapter_config.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama"
    _reload_and_generate(out)  # plain transformers load: the adapter was merged


def test_bad_model_spec(sft_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="convert-embedded"):
        train_sft(tmp_path / "no-such-model", sft_file, tmp_path / "out", progress=False)


def test_bad_data_fails_before_training(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl:1"):
        train_sft("tiny", bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
