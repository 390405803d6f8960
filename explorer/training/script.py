"""A run written out as a plain PyTorch training script that a student can read, change and run.

    text = training_script(cfg, title="run 20260101-120000-abc123")   # a whole Python file

The network and the data come from the explorer (`loop.prepare`: the model with its seeded starting weights, the
data set's splits at the network's input); everything that *is* training is written out in plain PyTorch: the
optimiser and its parameter groups, the learning-rate schedule, the epochs with their seeded shuffles, the
augmentation, the loss, validation after every epoch, early stopping, the test at the end. On the CPU with the same
threads it prints the same test metrics as ``train(cfg)``, bit for bit (the same operations in the same order, the
same seeds). It runs where the explorer can be imported (its folder, or with it installed); no mixed precision.
"""
from __future__ import annotations

import pprint

from .config import TrainConfig
from .errors import TrainingError

__all__ = ["training_script"]


def _recipe_code(cfg: TrainConfig) -> str:
    if cfg.recipe == "resnet":
        return '''\
# The ResNet recipe: SGD with momentum 0.9; the learning rate is divided by 10 when the validation loss has not
# fallen for PLATEAU_PATIENCE epochs.
optimizer = torch.optim.SGD(groups, lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1,
                                                       patience=PLATEAU_PATIENCE)
STEP_SCHEDULER_EACH_BATCH = False
'''
    if cfg.recipe == "one_cycle":
        return '''\
# One-cycle: Adam, the learning rate rising to LR over the first 30 % of the steps, then annealing (cosine).
optimizer = torch.optim.Adam(groups, lr=LR, weight_decay=WEIGHT_DECAY)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                total_steps=EPOCHS * steps_per_epoch)
STEP_SCHEDULER_EACH_BATCH = True
'''
    return '''\
# Adam at a constant learning rate.
optimizer = torch.optim.Adam(groups, lr=LR, weight_decay=WEIGHT_DECAY)
scheduler = None
STEP_SCHEDULER_EACH_BATCH = False
'''


def _augmentation_code(cfg: TrainConfig) -> str:
    a = cfg.augmentation
    if not a.active:
        return '''\
augment = None  # no augmentation: every epoch sees the training images as they are
'''
    steps = []
    if a.hflip:
        steps.append("    v2.RandomHorizontalFlip(),")
    if a.crop_padding:
        steps.append(f"    v2.RandomCrop((H, W), padding={a.crop_padding}, fill=0.0),")
    if a.rotation:
        steps.append(f"    v2.RandomRotation({a.rotation!r}, interpolation=InterpolationMode.BILINEAR, fill=0.0),")
    if a.color_jitter:
        steps.append(f"    v2.ColorJitter(brightness={a.color_jitter!r}, contrast={a.color_jitter!r}),")
    body = "\n".join(steps)
    return f'''\
# Augmentation ({a.describe()}): each training image is changed on its own, in pixel space (background 0),
# drawn anew in every epoch; validation and test images are never changed.
from torchvision.transforms import InterpolationMode, v2

transform = v2.Compose([
{body}
])
channel_mean = torch.tensor(MEAN if len(MEAN) == C else [sum(MEAN) / len(MEAN)] * C).view(-1, 1, 1)
channel_std = torch.tensor(STD if len(STD) == C else [sum(STD) / len(STD)] * C).view(-1, 1, 1)


def augment(batch):
    pixels = (batch.cpu() * channel_std + channel_mean).clamp_(0.0, 1.0)  # back to pixels in [0, 1]
    changed = torch.stack([transform(image) for image in pixels])  # one set of random parameters per image
    return ((changed - channel_mean) / channel_std).to(batch.device)
'''


def training_script(cfg: TrainConfig, title: str = "") -> str:
    """The Python source of a script that trains ``cfg`` as `train` does and prints its metrics."""
    from . import datasets

    if not isinstance(cfg, TrainConfig):
        raise TrainingError(f"A training script is written from a TrainConfig; got {type(cfg).__name__}.")
    if isinstance(cfg.dataset, datasets.Dataset) and cfg.dataset.name not in datasets.names(include_downloads=True):
        raise TrainingError(f"{cfg.dataset.name} lives only in this process (an uploaded data set); a script "
                            "cannot load it — choose a registered data set.")
    dataset = datasets.get(cfg.dataset)
    config = "{\n" + "".join(f"    {k!r}: {pprint.pformat(v, width=100, sort_dicts=False)},\n"
                             for k, v in cfg.to_dict().items()) + "}"
    regression = dataset.task == "regression"
    lr, decay = cfg.learning_rate, cfg.decay
    pretrained_note = ""
    if cfg.pretrained_from is not None:
        pretrained_note = (f"\n# The backbone starts from {cfg.pretrained_from!s}, the weights of an earlier run "
                           "on the server:\n# download them from its page and change 'pretrained_from' below.")
    if cfg.mode == "discriminative":
        groups = f'''\
# Two parameter groups: the pretrained backbone learns at BACKBONE_LR_FACTOR × the rate, the head at the full rate.
BACKBONE_LR_FACTOR = {cfg.backbone_lr_factor!r}
groups = [{{"name": "backbone", "params": [p for p in backbone_params if p.requires_grad],
           "lr": LR * BACKBONE_LR_FACTOR}},
          {{"name": "head", "params": [p for p in head_params if p.requires_grad], "lr": LR}}]
groups = [g for g in groups if g["params"]]  # frozen parameters are left out of the optimiser
'''
    else:
        groups = '''\
# One parameter group: every parameter that trains (frozen ones are left out of the optimiser), at the rate LR.
groups = [{"name": "all", "params": [p for p in backbone_params + head_params if p.requires_grad], "lr": LR}]
'''
    if regression:
        target = f'''\
# Regression: the network learns the standardised target (y - mean) / std; metrics are in the target's unit
# ({dataset.target.unit}). After training, the scale is folded into the output layer, so the saved model
# predicts the {dataset.target.name} itself.
y64 = data.y_train.to(torch.float64)
TARGET_MEAN, TARGET_STD = float(y64.mean()), float(y64.std()) or 1.0
y_train = ((data.y_train.to(torch.float32) - TARGET_MEAN) / TARGET_STD).to(device)


def loss_of(out, target):
    return F.mse_loss(out[:, 0].float(), target)
'''
        evaluate = '''\
@torch.no_grad()
def evaluate(x, y, scaled=True):
    """Mean squared and mean absolute error in the target's unit (scaled: the model still predicts the
    standardised target)."""
    model.eval()
    out = torch.cat([model(x[i:i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])
    predicted = out[:, 0] * TARGET_STD + TARGET_MEAN if scaled else out[:, 0]
    error = predicted - y.to(predicted.dtype)
    return {"loss": float((error ** 2).mean()), "mse": float((error ** 2).mean()), "mae": float(error.abs().mean())}
'''
        epoch_line = ('f"epoch {epoch}/{EPOCHS}: training loss {train_loss * TARGET_STD ** 2:.4f}, "\n'
                      '          f"validation MSE {val[\'mse\']:.4f}, MAE {val[\'mae\']:.4f}"')
        finish = f'''\
layer = plan.prepared.regression_layer  # fold the target's scale into the output layer
with torch.no_grad():
    layer.weight.mul_(TARGET_STD)
    if layer.bias is not None:
        layer.bias.mul_(TARGET_STD).add_(TARGET_MEAN)
test = evaluate(data.x_test.to(device), data.y_test.to(device), scaled=False)
print(f"test MAE {{test['mae']}} {dataset.target.unit}, MSE {{test['mse']}}")
'''
    else:
        target = f'''\
y_train = data.y_train.to(device)
LABEL_SMOOTHING = {cfg.label_smoothing!r}


def loss_of(out, target):
    return F.cross_entropy(out.float(), target, label_smoothing=LABEL_SMOOTHING)
'''
        evaluate = '''\
@torch.no_grad()
def evaluate(x, y):
    """Cross-entropy (no smoothing), top-1 accuracy and the count of right answers, in eval mode."""
    model.eval()
    out = torch.cat([model(x[i:i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])
    correct = int((out.argmax(1) == y).sum())
    return {"loss": float(F.cross_entropy(out, y)), "accuracy": correct / max(len(y), 1), "correct": correct}
'''
        epoch_line = ('f"epoch {epoch}/{EPOCHS}: training loss {train_loss:.4f}, "\n'
                      '          f"validation loss {val[\'loss\']:.4f}, accuracy {val[\'accuracy\']:.1%}"')
        finish = '''\
test = evaluate(data.x_test.to(device), data.y_test.to(device))
print(f"test accuracy {test['accuracy']} ({test['correct']} of {len(data.y_test)} right)")
'''
    threads = (f"torch.set_num_threads({cfg.threads})  # as the run: the same threads give the same sums\n"
               if cfg.threads else "")
    early = cfg.early_stopping
    if cfg.time_budget is not None:
        pretrained_note += (f"\n# The run had a time budget of {cfg.time_budget:g} s; this script trains every epoch "
                            "(stop it with Ctrl-C).")
    heading = f"{title}: " if title else ""
    return f'''\
"""{heading}{dataset.title}, {cfg.mode} ({cfg.recipe} recipe), {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}.

Written by the CNN Architecture Explorer. The network and the data come from the explorer; the training itself is
plain PyTorch below. Run it where the explorer can be imported (its folder, or with it installed):

    python <this file>

On the CPU it prints the same test metrics as the run did in the explorer (same seeds, same order of operations).
"""
import math
import time

import torch
import torch.nn.functional as F

from explorer.training import TrainConfig
from explorer.training.loop import prepare

# The run's settings, as the explorer stored them.{pretrained_note}
CONFIG = {config}

{threads}cfg = TrainConfig.from_dict(CONFIG)
plan = prepare(cfg)  # the model with its starting weights (seeded), the data at its input, what is frozen
dataset, data, model = plan.dataset, plan.data, plan.prepared.model
backbone_params, head_params = plan.prepared.backbone_params, plan.prepared.head_params
frozen_batchnorms = plan.prepared.frozen_batchnorms  # a frozen backbone keeps its BatchNorm statistics too
C, H, W = plan.prepared.input_shape
MEAN, STD = plan.mean, plan.std  # the normalisation of the data at the network's input

EPOCHS = {cfg.epochs!r}
BATCH_SIZE = {cfg.batch_size!r}
LR = {lr!r}
WEIGHT_DECAY = {decay!r}
PLATEAU_PATIENCE = {cfg.plateau_patience!r}
EARLY_STOPPING = {early!r}  # stop after this many epochs without a lower validation loss (None: never)
SEED = {cfg.seed!r}
EVAL_BATCH = 256

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
model.to(device)
x_train, x_val = data.x_train.to(device), data.x_val.to(device)
y_val = data.y_val.to(device)
n_train = len(data.y_train)
# a last batch of a single image is dropped: BatchNorm cannot train on one image
steps_per_epoch = max(1, n_train // BATCH_SIZE + (1 if n_train % BATCH_SIZE > 1 else 0))

{target}

{groups}
{_recipe_code(cfg)}

{_augmentation_code(cfg)}

{evaluate}

def epoch_seed(epoch):
    return (SEED * 1_000_003 + epoch * 7_919) % (2**63 - 1)


best_loss, bad_epochs, start = math.inf, 0, time.perf_counter()
for epoch in range(1, EPOCHS + 1):
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch_seed(epoch))).to(device)
    torch.manual_seed(epoch_seed(epoch) ^ 0x5EED)  # dropout and augmentation draw from it
    model.train()
    for m in frozen_batchnorms:
        m.eval()
    loss_sum, seen = 0.0, 0
    for b in range(steps_per_epoch):
        idx = order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE]
        xb, yb = x_train[idx], y_train[idx]
        if augment is not None:
            xb = augment(xb)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(xb), yb)
        if not math.isfinite(loss.item()):
            raise SystemExit(f"The loss became {{loss.item()}} at epoch {{epoch}}, batch {{b + 1}}; lower the learning "
                             "rate.")
        loss.backward()
        optimizer.step()
        if STEP_SCHEDULER_EACH_BATCH:
            scheduler.step()
        loss_sum += loss.item() * len(idx)
        seen += len(idx)
    train_loss = loss_sum / max(seen, 1)
    val = evaluate(x_val, y_val)
    if scheduler is not None and not STEP_SCHEDULER_EACH_BATCH:
        scheduler.step(val["loss"])
    print({epoch_line}, f"({{time.perf_counter() - start:.1f}} s)")
    if val["loss"] < best_loss:
        best_loss, bad_epochs = val["loss"], 0
    else:
        bad_epochs += 1
    if EARLY_STOPPING is not None and bad_epochs >= EARLY_STOPPING and epoch < EPOCHS:
        print(f"stopped early: the validation loss has not fallen for {{bad_epochs}} epochs")
        break

{finish}
torch.save(model.state_dict(), "trained.pt")
print("the trained weights are in trained.pt")
'''
