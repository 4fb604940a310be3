"""The ``optim`` (optimizer and learning-rate schedule) and ``train`` (the loop) config sections."""

from __future__ import annotations

import math

from jaxclf.schema import Field, Section

OPTIM = Section("optimizer and learning-rate schedule (jaxclf.train.optim)", {
    "name": Field("adam", "sgd | momentum | nesterov | adam | adamw"),
    "lr": Field(1e-3, "peak learning rate"),
    "schedule": Field("constant", "constant | cosine | step | linear"),
    "warmup_steps": Field(0, "linear warm-up from 0 over this many steps"),
    "step_boundaries": Field((0.5, 0.75), "schedule step: where the lr drops, as fractions of train.num_steps"),
    "step_factor": Field(0.1, "schedule step: lr multiplier at each boundary"),
    "end_lr_factor": Field(0.0, "cosine/linear: final lr = lr * end_lr_factor"),
    "momentum": Field(0.9, "momentum / nesterov: momentum"),
    "b1": Field(0.9, "adam / adamw: first-moment decay"),
    "b2": Field(0.999, "adam / adamw: second-moment decay"),
    "weight_decay": Field(0.0, "weight decay: L2 added to the gradient, decoupled for adamw"),
    "decay_kernels_only": Field(False, "weight decay on kernels only, not biases / norm scales"),
    "clip_norm": Field(0.0, "global-norm gradient clipping; 0 disables it"),
})

TRAIN = Section("the training loop (jaxclf.train)", {
    "batch_size": Field(128, "training examples per step (all devices together)"),
    "eval_batch_size": Field(512, "examples per evaluation batch"),
    "num_steps": Field(1000, "training steps"),
    "eval_every": Field(500, "evaluate dataset.eval_splits every this many steps"),
    "log_every": Field(100, "log training scalars every this many steps"),
    "checkpoint_every": Field(500, "checkpoint every this many steps"),
    "keep_checkpoints": Field(3, "checkpoints kept (the newest)"),
    "label_smoothing": Field(0.0, "label smoothing of the cross-entropy"),
    "class_weights": Field(None, "per-class loss weights (None: all 1)", tuple),
    "aux_loss_weight": Field(0.3, "weight of auxiliary logits (e.g. GoogLeNet) in the loss"),
    "log_grad_norms": Field(False, "also log the gradient norm of every layer"),
    "steps_per_call": Field(1, "K > 1: K steps per jitted call (lax.scan): fewer dispatches, a win for small models"),
    "scan_unroll": Field(1, "steps unrolled per scan iteration (= steps_per_call: no loop left; compile time grows)"),
    "skip_nonfinite": Field(False, "skip (and count) updates with a non-finite loss or gradient"),
    "progress": Field(True, "progress bar on the terminal"),
    "allow_unusual": Field(False, "run values that are legal but almost surely a mistake (negative lr, "
                                  "a batch larger than the train split, one class)"),
})

POSITIVE = ("batch_size", "eval_batch_size", "num_steps", "steps_per_call", "scan_unroll", "eval_every", "log_every",
            "checkpoint_every", "keep_checkpoints")


def validate_optim(optim, *, allow_unusual: bool) -> None:
    """Raises ValueError for an unknown optimizer or schedule, and (unless ``allow_unusual``) a
    learning rate that is negative or not finite."""
    from jaxclf.train.optim import check_names

    check_names(optim)
    lr = optim.lr
    if not allow_unusual and not (math.isfinite(lr) and lr >= 0):
        what = "negative (gradient ascent)" if lr < 0 else "not finite"
        raise ValueError(f"optim.lr={lr} is {what}; set train.allow_unusual=True to run it anyway")


def validate(train) -> None:
    """Raises ValueError for a count of the loop that is not positive."""
    for key in POSITIVE:
        if train[key] <= 0:
            raise ValueError(f"train.{key} must be positive, got {train[key]}")
