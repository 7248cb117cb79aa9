"""Settings of one model and its training (pydantic): used by the trainer and by run configs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MODEL_NAMES = ("cnn_small", "resnet18", "resnet10", "centernet_unet")
#: Models that detect objects (task: detection); the others classify.
DETECTOR_NAMES = ("centernet_unet",)


class StrictModel(BaseModel):
    """The base of every settings model: unknown keys are refused, values are frozen, and the
    docstring under a field is its description in the JSON Schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelConfig(StrictModel):
    """A network: one of the built-in models and its width, or your own from ``factory``."""

    name: str = Field("cnn_small", json_schema_extra={"enum": list(MODEL_NAMES)})
    """The architecture (centernet_unet detects; the others classify)."""
    width: int | None = Field(None, gt=0)
    """Channels of the first layer; None: the model's default."""
    factory: str | None = None
    """Your own classifier instead of a built-in one: "package.module:callable" (imported) or
    "path/to/script.py:callable" (relative to the config's folder), called as
    callable(num_classes=C, in_channels=c, input_size=(H, W)) and returning a torch.nn.Module whose
    output is logits [batch, C]."""

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}")
        return name

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, factory: str | None, info: ValidationInfo) -> str | None:
        if factory is None:
            return None
        target, colon, attribute = factory.rpartition(":")
        names = attribute.split(".")
        if not colon or not target or not all(part.isidentifier() for part in names):
            raise ValueError(
                f"'{factory}' is not 'package.module:callable' or 'path/to/script.py:callable'; name the "
                "function or class after a colon"
            )
        if not is_script(target):
            if not all(part.isidentifier() for part in target.split(".")):
                raise ValueError(f"'{target}' is neither a module name (package.module) nor a .py file")
            return factory
        base = (info.context or {}).get("config_dir")
        path = Path(target).expanduser()
        if base is not None and not path.is_absolute():  # a script beside the config
            path = Path(base) / path
        return f"{path.resolve() if base is not None else path}:{attribute}"

    @model_validator(mode="after")
    def _one_network(self) -> ModelConfig:
        if self.factory is not None:
            if "name" in self.model_fields_set:
                raise ValueError("factory and name both choose the network; keep one")
            if self.width is not None:
                raise ValueError("width sets a built-in model's width; your factory builds its own network: remove it")
        return self

    @property
    def label(self) -> str:
        """How messages name the network: the built-in model's name, or the factory."""
        return self.name if self.factory is None else self.factory


def is_script(target: str) -> bool:
    """Whether a factory's target (before the colon) is a ``.py`` file rather than a module."""
    return target.endswith(".py")


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
    """Training augmentation (classification; a detector trains on its images as they are)."""

    crop_padding: int = Field(2, ge=0)
    """Random crop of the image padded by this many pixels."""
    flip: bool | None = None
    """Random horizontal flip. None: on for the built-in fashion_mnist (where it was measured), off for
    every other dataset (digits, text, medical and most non-natural images are not mirror images of
    themselves)."""

    def describe(self) -> str:
        """The augmentations that run, in words: ``random crop (padding 2 px), horizontal flip``."""
        ran = [f"random crop (padding {self.crop_padding} px)"] if self.crop_padding > 0 else []
        ran += ["horizontal flip"] if self.flip else []
        return ", ".join(ran) or "none"


def default_flip(dataset: str, task: str) -> bool:
    """``train.augment.flip`` when a config leaves it out: on for the built-in Fashion-MNIST
    classification only."""
    return dataset == "fashion_mnist" and task == "classification"


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
