"""Settings of one model and its training (pydantic): used by the trainer and by run configs."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_NAMES = ("cnn_small", "resnet18", "resnet10", "centernet_unet")
#: Models that detect objects (task: detection); the others classify.
DETECTOR_NAMES = ("centernet_unet",)


class StrictModel(BaseModel):
    """The base of every settings model: unknown keys are refused, values are frozen, and the
    docstring under a field is its description in the JSON Schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelConfig(StrictModel):
    """A network: one of the built-in models and its width."""

    name: str = Field("cnn_small", json_schema_extra={"enum": list(MODEL_NAMES)})
    """The architecture (centernet_unet detects; the others classify)."""
    width: int | None = Field(None, gt=0)
    """Channels of the first layer; None: the model's default."""

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}")
        return name


class MilestoneSchedule(StrictModel):
    """Multiply the learning rate by ``gamma`` at each milestone epoch (default: 50% and 75% of the epochs)."""

    kind: Literal["milestones"] = "milestones"
    milestones: list[Annotated[int, Field(gt=0)]] | None = None
    gamma: float = Field(0.1, gt=0, le=1)


class PatienceSchedule(StrictModel):
    """Drop the rate ×gamma after ``patience`` epochs without a validation gain; stop when a drop
    brings no gain for 2·patience epochs, or at ``train.epochs``."""

    kind: Literal["patience"]
    patience: int = Field(3, gt=0)
    gamma: float = Field(0.1, gt=0, lt=1)


class AugmentConfig(StrictModel):
    """Training augmentation."""

    crop_padding: int = Field(2, ge=0)
    """Random crop of the image padded by this many pixels."""
    flip: bool = True
    """Random horizontal flip."""


class TrainConfig(StrictModel):
    """How a network is trained: SGD with momentum, a learning-rate schedule, augmentation, precision."""

    epochs: int = Field(10, gt=0)
    """Schedule milestones: the epochs; patience: the cap."""
    batch_size: int = Field(128, gt=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Annotated[MilestoneSchedule | PatienceSchedule, Field(discriminator="kind")] = MilestoneSchedule()
    augment: AugmentConfig = AugmentConfig()
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 on CUDA, fp32 on every CPU (benchmarks/results/precision.json); bf16 is autocast."""
    channels_last: bool = True
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    threads: int | None = Field(None, gt=0)
    """Torch CPU threads; None: torch's default."""

    @field_validator("schedule", mode="before")
    @classmethod
    def _default_kind(cls, value: object) -> object:
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "milestones", **value}
        return value

    @model_validator(mode="after")
    def _milestones(self) -> TrainConfig:
        if isinstance(self.schedule, MilestoneSchedule) and self.schedule.milestones is not None:
            ms = self.schedule.milestones
            if any(b <= a for a, b in itertools.pairwise(ms)):
                raise ValueError(f"train.schedule.milestones: must increase, got {ms}")
            if ms and ms[-1] > self.epochs:
                raise ValueError(f"train.schedule.milestones: {ms[-1]} is past train.epochs ({self.epochs})")
        return self

    def milestones(self) -> list[int]:
        assert isinstance(self.schedule, MilestoneSchedule)
        if self.schedule.milestones is not None:
            return list(self.schedule.milestones)
        half_up = [int(self.epochs * f + 0.5) for f in (0.5, 0.75)]  # round half up: 6 epochs -> 3, 5
        return sorted({max(1, m) for m in half_up} - {self.epochs})
