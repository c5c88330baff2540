"""The settings of a training run (:class:`TrainConfig`, what ``edgeseg train``'s flags and a
``config.yaml`` fill in) and their validation. Values left at ``None`` are picked from the
dataset and device by :func:`edgeseg.train.defaults.auto_settings`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from edgeseg.errors import TrainingError
from edgeseg.train import data as tdata
from edgeseg.train.losses import LOSSES, WEIGHT_METHODS, parse_weights
from edgeseg.train.models import model_names

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Every knob of a run; ``None`` means "pick from the dataset size and device"."""

    data: str = ""
    out: str = ""
    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)
    size: int = 256
    crop: Optional[int] = None
    crop_focus: float = 0.8  # share of crops placed on labelled foreground (rare defects)
    # scale jitter of the training crops [lo, hi] (1 = deployment scale; [1, 1]: off);
    # None: picked (see edgeseg.train.defaults.auto_settings)
    zoom: Optional[list] = None
    epochs: Optional[int] = None
    batch: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: float = 1e-4
    dropout: float = 0.1
    loss: str = "ce+dice"
    class_weights: str = "auto"
    workers: Optional[int] = None
    seed: int = 0
    device: str = "auto"
    amp: Optional[bool] = None  # None: bfloat16 on CPUs with AMX, off elsewhere
    resume: bool = False
    patience: Optional[int] = None  # None: 15 with --epochs, off when the clock sets the schedule
    # under the clock: stop once val mIoU gained < PLATEAU_MIN_GAIN over this share of the
    # time budget (checked from half the budget on); None: 0.3 under the clock; 0: off
    plateau: Optional[float] = None
    warmup_epochs: float = 1.0
    clip_grad: float = 1.0
    ema: float = 0.99  # decay of the weight average validated and saved as best.pt; 0: off
    time_limit: Optional[float] = None  # minutes; None: DEFAULT_MINUTES unless epochs is given
    # what the time limit counts: "wall" seconds, or "cpu": this process's CPU seconds per
    # torch thread (the same amount of work whatever the load of a shared machine)
    clock: str = "wall"
    max_steps: Optional[int] = None  # per epoch (tests, smoke runs)
    allow_upscale: bool = False
    calibrate: bool = True  # per-class logit offsets fitted on the train images afterwards
    val_every: Optional[int] = None  # epochs between validations; None: ~10 % of the time
    mean: tuple = tdata.IMAGENET_MEAN
    std: tuple = tdata.IMAGENET_STD
    progress: bool = True
    #: fine-tuning (edgeseg.train.finetune): a run dir, checkpoint or starter:NAME to start
    #: from; timm encoder weights (imagenet or a file); encoder lr factor; BatchNorm stats
    init: Optional[str] = None
    encoder_weights: Optional[str] = None
    encoder_lr_mult: float = 1.0
    freeze_bn: str = "none"

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainingError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(names))}"
            )
        return cls(**d)

    def validate(self) -> None:
        if self.model not in model_names():
            raise TrainingError(
                f"unknown model {self.model!r}; available models: {', '.join(model_names())}"
            )
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        cw = self.class_weights
        if cw not in WEIGHT_METHODS and not parse_weights(cw):
            raise TrainingError(
                f"--class-weights {cw!r}: use {'|'.join(WEIGHT_METHODS)} or a comma list of "
                "numbers, one per class"
            )
        if self.size < 32 or self.size % 32:
            raise TrainingError(f"--size {self.size}: use a multiple of 32 (e.g. 256 or 512)")
        if self.crop is not None and (self.crop < 32 or self.crop % 32):
            raise TrainingError(f"--crop {self.crop}: use a multiple of 32, at least 32")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise TrainingError(f"--device {self.device!r}: use auto, cpu or cuda")
        if not 0 <= self.ema < 1:
            raise TrainingError(f"ema {self.ema}: use a decay in [0, 1) (0 turns it off)")
        if self.zoom is not None and not (
            len(self.zoom) == 2 and 0 < float(self.zoom[0]) <= float(self.zoom[1]) <= 4
        ):
            raise TrainingError(f"--zoom {self.zoom}: use LO,HI with 0 < LO <= HI <= 4")
        if not 0 <= self.crop_focus <= 1:
            raise TrainingError(f"crop_focus {self.crop_focus}: use a value in [0, 1]")
        if not 0 <= self.dropout < 1:
            raise TrainingError(f"--dropout {self.dropout}: use a value in [0, 1)")
        if self.plateau is not None and not 0 <= self.plateau < 1:
            raise TrainingError(f"plateau {self.plateau}: use a share of the time in [0, 1)")
        if self.clock not in ("wall", "cpu"):
            raise TrainingError(f"clock {self.clock!r}: use wall or cpu")
        if self.time_limit is not None and self.time_limit <= 0:
            raise TrainingError(f"--time-limit {self.time_limit}: use minutes > 0")
        if not 0 <= self.encoder_lr_mult <= 10:
            raise TrainingError(
                f"--encoder-lr-mult {self.encoder_lr_mult}: use a factor in [0, 10] (0 freezes "
                "the encoder)"
            )
        if self.freeze_bn not in ("none", "encoder", "all"):
            raise TrainingError(f"--freeze-bn {self.freeze_bn!r}: use none, encoder or all")
        if self.encoder_weights is not None and self.model != "timm_unet":
            raise TrainingError(
                f"--encoder-weights is for timm encoders (--model timm_unet), not {self.model!r}"
            )
