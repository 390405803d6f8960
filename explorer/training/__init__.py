"""Training as a library (no streamlit): data sets, the loop, recipes, metrics.

    from explorer.training import TrainConfig, train, TrainingError, datasets
    result = train(TrainConfig(network="lenet5", dataset="digits", mode="scratch", recipe="adam", epochs=10))
    result.test["accuracy"], result.history, result.model

See `loop` (the loop and `train`), `networks` (the model, its starting weights, frozen parts), `recipes`,
`datasets` and `config`; runs as jobs in processes of their own: `jobs` (`RunManager`), `worker`, `runfolder`;
`script` writes a run out as a plain PyTorch training script.
"""
from . import datasets
from .config import MODE_TITLES, MODES, RECIPE_DEFAULTS, RECIPES, Augmentation, TrainConfig
from .errors import DatasetError, TrainingError
from .jobs import PruneReport, RunManager, default_runs_root, memory_budget, memory_refusal, runs_max_bytes
from .loop import (EpochEstimate, FitResult, RunPlan, TrainingMemory, TrainResult, augmentation_preview,
                   choose_device, estimate_epoch, evaluate, fit, lr_schedule, prepare, sample_predictions, train,
                   trainable_parameters, training_memory)
from .recipes import Schedule

__all__ = ["TrainConfig", "Augmentation", "train", "fit", "evaluate", "TrainResult", "FitResult", "TrainingError",
           "DatasetError", "datasets", "trainable_parameters", "lr_schedule", "augmentation_preview",
           "choose_device", "prepare", "RunPlan", "Schedule", "MODES", "MODE_TITLES", "RECIPES", "RECIPE_DEFAULTS",
           "RunManager", "PruneReport", "default_runs_root", "memory_budget", "memory_refusal", "runs_max_bytes",
           "EpochEstimate", "estimate_epoch", "TrainingMemory", "training_memory", "sample_predictions"]
