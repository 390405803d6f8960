"""The three recipes: optimiser and learning-rate schedule, made the same way for a run and for its preview.

* ``adam`` — Adam at a constant learning rate (default 1e-3).
* ``one_cycle`` — Adam under ``OneCycleLR`` (default peak 3e-3): warm up for 30 % of the steps, then anneal
  (cosine) to 1/10⁴ of the start, stepped every batch; the shipped LeNet-5's recipe.
* ``resnet`` — the lecture's ResNet recipe: SGD with momentum 0.9, learning rate 0.1, weight decay 1e-5, the
  learning rate divided by 10 when the validation loss has not fallen for ``plateau_patience`` epochs
  (``ReduceLROnPlateau``).

Parameter groups are named: "head" (everything that trains at the full rate) and, in discriminative mode,
"backbone" (at ``backbone_lr_factor`` × the rate).
"""
from __future__ import annotations

import dataclasses

import torch

from .config import TrainConfig

__all__ = ["Recipe", "make_recipe", "Schedule", "preview_schedule", "steps_per_epoch"]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of a single image is dropped (BatchNorm cannot train on one image)."""
    full, rest = divmod(n_train, batch_size)
    return max(1, full + (1 if rest > 1 else 0))


@dataclasses.dataclass
class Recipe:
    name: str
    lr: float
    weight_decay: float
    groups: list[dict]  # {"name", "params", "lr"}
    epochs: int
    steps_per_epoch: int
    batch_size: int
    plateau_patience: int = 2

    def optimizer(self) -> torch.optim.Optimizer:
        groups = [{"params": g["params"], "lr": g["lr"], "name": g["name"]} for g in self.groups]
        if self.name == "resnet":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def scheduler(self, optimizer):
        """(scheduler or None, when it steps: "batch" | "epoch" | None)."""
        if self.name == "one_cycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in self.groups], total_steps=self.epochs * self.steps_per_epoch), \
                "batch"
        if self.name == "resnet":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1,
                                                              patience=self.plateau_patience), "epoch"
        return None, None

    def describe(self) -> str:
        groups = ", ".join(f"{g['name']} {g['lr']:.3g}" for g in self.groups)
        if self.name == "resnet":
            return (f"SGD, momentum 0.9, weight decay {self.weight_decay:g}, learning rate {groups}, ÷10 after "
                    f"{self.plateau_patience} epochs without a lower validation loss")
        if self.name == "one_cycle":
            return f"Adam, weight decay {self.weight_decay:g}, one-cycle schedule peaking at {groups}"
        return f"Adam, weight decay {self.weight_decay:g}, constant learning rate {groups}"


def make_recipe(cfg: TrainConfig, backbone_params: list, head_params: list, n_train: int) -> Recipe:
    """The recipe of ``cfg`` over the parameters that train (frozen ones are left out of the optimiser)."""
    lr = cfg.learning_rate
    backbone = [p for p in backbone_params if p.requires_grad]
    head = [p for p in head_params if p.requires_grad]
    if cfg.mode == "discriminative":
        groups = [{"name": "backbone", "params": backbone, "lr": lr * cfg.backbone_lr_factor},
                  {"name": "head", "params": head, "lr": lr}]
    else:
        groups = [{"name": "head", "params": backbone + head, "lr": lr}]
    groups = [g for g in groups if g["params"]]
    return Recipe(cfg.recipe, lr, cfg.decay, groups, cfg.epochs, steps_per_epoch(n_train, cfg.batch_size),
                  cfg.batch_size, cfg.plateau_patience)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The learning rate of every optimiser step, per parameter group, as the run will use it."""
    groups: dict[str, list[float]]
    steps_per_epoch: int
    epochs: int
    note: str  # what the preview cannot know (the plateau drops of the ResNet recipe)

    @property
    def steps(self) -> list[float]:
        """The learning rate of the "head" group (the full rate), per step."""
        return self.groups["head"]


def preview_schedule(recipe: Recipe) -> Schedule:
    """Run the recipe's optimiser and scheduler on stand-in parameters and record each step's learning rate."""
    stand_ins = [{"name": g["name"], "params": [torch.zeros(1, requires_grad=True)], "lr": g["lr"]}
                 for g in recipe.groups]
    shadow = dataclasses.replace(recipe, groups=stand_ins)
    optimizer = shadow.optimizer()
    scheduler, when = shadow.scheduler(optimizer)
    out: dict[str, list[float]] = {g["name"]: [] for g in optimizer.param_groups}
    for _ in range(recipe.epochs):
        for _ in range(recipe.steps_per_epoch):
            for g in optimizer.param_groups:
                out[g["name"]].append(float(g["lr"]))
            optimizer.step()  # no gradients: nothing moves, but the scheduler sees a step was taken
            if when == "batch":
                scheduler.step()
    note = ""
    if recipe.name == "resnet":
        note = ("drawn without the ÷10 drops: they come when the validation loss stops falling for "
                f"{recipe.plateau_patience} epochs, which is known only while the run goes")
    return Schedule(out, recipe.steps_per_epoch, recipe.epochs, note)
