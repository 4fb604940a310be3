"""The config schema: every experiment config starts from :func:`base_config`.

Configs are ml_collections ConfigDicts (type-safe: an override of the wrong type or of a key
that does not exist is an error). :func:`validate` checks the names that a ConfigDict cannot
(model, dataset, optimizer, schedule, metrics, task) before any data is read or any
computation runs, and says what the valid choices are.
"""

from __future__ import annotations

import math

import ml_collections

# generative: the model family defines its loss and the scalars it logs (e.g. Sketch-RNN).
# sequence: one target token per step, labels (N, T) (tagging, generation, seq2seq).
TASKS = ("multiclass", "binary", "multilabel", "generative", "sequence")


def metrics_task(task: str) -> str:
    """The task the metrics see: per-step targets ('sequence') are scored token by token, as
    multiclass rows."""
    return "multiclass" if task == "sequence" else task


def base_config() -> ml_collections.ConfigDict:
    """Defaults for every key the training loop reads; experiment configs override them."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "multiclass"
    c.metrics = ("accuracy",)

    # model.name plus keyword arguments for jaxclf.models.create (added per config).
    # model.dtype: compute dtype ('float32', or 'bfloat16' on accelerators); parameters stay float32.
    c.model = ml_collections.ConfigDict({"name": "lenet5", "dtype": "float32"})

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = "digits"
    c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.dataset.download = True
    c.dataset.train_split = "train"
    c.dataset.eval_splits = ("test",)  # evaluated every train.eval_every steps and at the end
    # Evaluated once, at the end (results.json, report): with eval_splits=('validation',) and
    # validation_fraction > 0, choices made while training never see the test split.
    c.dataset.test_splits = ()
    # > 0: a stratified, seeded 'validation' split carved from train_split before any
    # preprocessing statistic is measured (jaxclf.data.splits); in-memory datasets only.
    c.dataset.validation_fraction = 0.0
    c.dataset.validation_seed = 0
    c.dataset.image_key = "image"
    c.dataset.label_key = "label"
    c.dataset.pad = 0  # zero pixels added on each side (e.g. 2: 28x28 MNIST -> 32x32)
    c.dataset.resize = ml_collections.FieldReference(None, field_type=tuple)
    c.dataset.normalize = "standardize"  # standardize (train-split stats or mean/std) | unit | none
    c.dataset.mean = ml_collections.FieldReference(None, field_type=tuple)
    c.dataset.std = ml_collections.FieldReference(None, field_type=tuple)
    c.dataset.max_length = 256  # text: tokens kept per example; strokes: Nmax points (longer dropped)
    c.dataset.vocab_size = 20000  # text: vocabulary from the train split, incl. 0 = padding, 1 = unknown
    c.dataset.lowercase = True  # text
    c.dataset.sequence_view = ""  # 'rows': an image becomes a sequence of its rows (for RNNs)
    c.dataset.keep_classes = ()  # a subset of classes, indices or names (relabelled 0..k-1 in this order); () = all
    c.dataset.examples_per_class = 0  # label budget for the train split; 0 = every example
    c.dataset.budget_seed = 0
    c.dataset.augment = ()  # any of: random_crop, flip; stroke_scale, stroke_drop (training only)
    c.dataset.crop_padding = 4
    c.dataset.stroke_scale = 0.15  # stroke_scale: offsets x U[1 - s, 1 + s] per sketch and axis
    c.dataset.stroke_drop = 0.1  # stroke_drop: probability of dropping a point inside a stroke
    c.dataset.split_ratio = 0.8  # image_folder: train fraction per class (no train/test folders)
    c.dataset.split_seed = 0
    c.dataset.on_bad_file = "skip"  # image_folder: skip (and list) | error on unreadable files
    c.dataset.allow_single_class = False  # image_folder: True trains on a folder of one class
    # False: stream from TFDS ArrayRecord files (jaxclf.data.stream; datasets too large for
    # memory, e.g. ImageNet): needs resize, explicit mean/std; augment: random_resized_crop, flip.
    c.dataset.in_memory = True
    c.dataset.eval_resize = 0  # streaming eval: shorter side to this, then center crop `resize`; 0: resize whole
    c.dataset.num_workers = 4  # streaming: worker processes decoding and preprocessing images (0: in the training process)

    # Transfer learning (jaxclf.transfer); paths are regexes over '/'-joined parameter names.
    c.transfer = ml_collections.ConfigDict()
    c.transfer.init_from = ""  # workdir or checkpoint dir (e.g. python -m jaxclf.convert output)
    c.transfer.exclude = ""  # paths never copied (a head of another shape is re-initialised anyway)
    c.transfer.freeze = ""  # paths frozen, e.g. jaxclf.transfer.BACKBONE_PATTERN
    c.transfer.unfreeze_after = -1  # -1: frozen for good; N >= 0: frozen N steps, then trained
    c.transfer.backbone_lr_factor = 0.1  # lr multiplier of the frozen paths once they train
    c.transfer.freeze_batch_stats = False  # batch norm in inference mode while training

    # task 'generative': keyword arguments of the model family's own loss (jaxclf.models.loss).
    c.loss = ml_collections.ConfigDict()

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # sgd | momentum | nesterov | adam | adamw
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"  # constant | cosine | step | linear
    c.optim.warmup_steps = 0
    c.optim.step_boundaries = (0.5, 0.75)  # 'step': fractions of num_steps
    c.optim.step_factor = 0.1
    c.optim.end_lr_factor = 0.0  # cosine/linear: final lr = lr * end_lr_factor
    c.optim.momentum = 0.9
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    c.optim.decay_kernels_only = False  # weight decay on kernels only, not biases/norm scales
    c.optim.clip_norm = 0.0  # global-norm gradient clipping; 0 disables it

    # Evaluation statistics: score histograms for ROC/PR/best thresholds, calibration bins.
    c.eval = ml_collections.ConfigDict()
    c.eval.num_bins = 200
    c.eval.calibration_bins = 15
    c.eval.report = True  # write WORKDIR/report (plots + report.md) after the final evaluation

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 128
    c.train.eval_batch_size = 512
    c.train.num_steps = 1000
    c.train.eval_every = 500
    c.train.log_every = 100
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.label_smoothing = 0.0
    c.train.class_weights = ml_collections.FieldReference(None, field_type=tuple)
    c.train.aux_loss_weight = 0.3  # weight of auxiliary logits (e.g. GoogLeNet) in the loss
    c.train.threshold = 0.5  # binary / multi-label decision threshold for the metrics
    # Binary runs store a decision threshold in WORKDIR/decision.json (jaxclf.predict uses it):
    # 'fixed' (train.threshold), 'best_f1' or 'best_youden' (chosen on train.threshold_split,
    # default the first eval split; prefer a validation split to the test split).
    c.train.threshold_rule = "fixed"
    c.train.threshold_split = ""
    c.train.log_grad_norms = False  # also log the gradient norm of every layer
    # K > 1 runs K steps per jitted call (lax.scan): fewer dispatches, a win for small models
    # (recurrent, MLP, 1-D conv); large CNN steps gain nothing from it. (jaxclf.cpu writes the
    # gradients in the layout XLA:CPU runs fast inside a loop body too: jax#12868.)
    c.train.steps_per_call = 1
    c.train.scan_unroll = 1  # steps unrolled per scan iteration (= K: no loop left; compile time grows)
    c.train.skip_nonfinite = False  # skip (and count) updates with a non-finite loss/gradient
    c.train.progress = True  # progress bar on the terminal
    # Values that are legal but almost surely a mistake are refused before any compute (a
    # negative or non-finite learning rate, a batch larger than the train split, one class);
    # True runs them anyway.
    c.train.allow_unusual = False
    return c


def load(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of a config file, as ``--config=path:arg`` would load it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_jaxclf_config", path)
    if spec is None:
        raise FileNotFoundError(f"config file {path!r} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


def check_unusual(config, num_classes: int, num_train: int) -> None:
    """Refuses what the data make almost surely a mistake (``train.allow_unusual`` allows it):
    one class (every metric is trivial), a batch larger than the train split (every batch
    repeats examples)."""
    if config.train.allow_unusual:
        return
    hint = "; set train.allow_unusual=True to run it anyway"
    if num_classes < 2 and config.task in ("multiclass", "binary"):
        raise ValueError(f"dataset {config.dataset.name!r} has {num_classes} class: nothing to classify{hint}")
    if config.train.batch_size > num_train:
        raise ValueError(f"train.batch_size={config.train.batch_size} is larger than the train split "
                         f"({num_train} examples){hint}")


def model_kwargs(config) -> dict:
    """The model section without its name: keyword arguments for models.create."""
    kwargs = config.model.to_dict()
    kwargs.pop("name")
    return kwargs


def validate(config) -> None:
    """Raises ValueError for names and values that would only fail later, listing valid ones."""
    from jaxclf import data, metrics, models
    from jaxclf.train import optim

    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
    if config.model.name not in models.names():
        raise ValueError(
            f"unknown model {config.model.name!r}; valid models: {', '.join(models.names())}"
        )
    optim.check_names(config.optim)
    classes = {"num_classes": 2} if "num_classes" in models.describe(config.model.name) else {}
    model = models.create(config.model.name, **classes, **model_kwargs(config))  # raises on unknown kwargs
    if getattr(model, "cell_options", None):
        from jaxclf.models import cells

        cells.make_cell(model.cell, 1, options=model.cell_options)  # raises naming the cell's options
    if config.task == "generative":
        valid = models.loss_scalars(config.model.name)
        unknown = sorted(set(config.metrics) - set(valid))
        if unknown:
            raise ValueError(f"model {config.model.name!r} does not log {unknown}; it logs: {', '.join(valid)}")
    else:
        metrics.collection(config.metrics, num_classes=2, task=metrics_task(config.task))  # raises on bad names
    data.check_exists(config.dataset.name, config.dataset.data_dir)
    if config.dataset.in_memory:
        unknown_aug = set(config.dataset.augment) - set(data.input_pipeline.AUGMENTATIONS)
        if unknown_aug:
            raise ValueError(
                f"unknown dataset.augment {sorted(unknown_aug)}; valid: "
                f"{', '.join(data.input_pipeline.AUGMENTATIONS)} "
                f"(streaming, dataset.in_memory=False: {', '.join(data.stream.AUGMENTATIONS)})"
            )
        if config.dataset.eval_resize:
            raise ValueError("dataset.eval_resize applies to streaming only (dataset.in_memory=False)")
    else:
        data.stream.check_config(config.dataset)
    if not 0.0 <= config.dataset.validation_fraction < 1.0:
        raise ValueError(f"dataset.validation_fraction must be in [0, 1), got {config.dataset.validation_fraction}")
    if config.dataset.validation_fraction and not config.dataset.in_memory:
        raise ValueError("dataset.validation_fraction carves in-memory datasets only (dataset.in_memory=True)")
    if config.dataset.sequence_view not in ("", "rows"):
        raise ValueError(f"unknown dataset.sequence_view {config.dataset.sequence_view!r}; valid: '', rows")
    if config.dataset.normalize not in data.input_pipeline.NORMALIZATIONS:
        raise ValueError(
            f"unknown dataset.normalize {config.dataset.normalize!r}; valid: "
            f"{', '.join(data.input_pipeline.NORMALIZATIONS)}"
        )
    if config.dataset.on_bad_file not in ("skip", "error"):
        raise ValueError(f"dataset.on_bad_file must be 'skip' or 'error', got {config.dataset.on_bad_file!r}")
    from jaxclf.train.loop import THRESHOLD_RULES

    if config.train.threshold_rule not in THRESHOLD_RULES:
        raise ValueError(
            f"unknown train.threshold_rule {config.train.threshold_rule!r}; valid: {', '.join(THRESHOLD_RULES)}"
        )
    split = config.train.threshold_split
    if split and split not in config.dataset.eval_splits:
        raise ValueError(f"train.threshold_split {split!r} is not one of dataset.eval_splits {tuple(config.dataset.eval_splits)}")
    t = config.train
    lr = config.optim.lr
    if not t.allow_unusual and not (math.isfinite(lr) and lr >= 0):
        what = "negative (gradient ascent)" if lr < 0 else "not finite"
        raise ValueError(f"optim.lr={lr} is {what}; set train.allow_unusual=True to run it anyway")
    for key in ("batch_size", "eval_batch_size", "num_steps", "steps_per_call", "scan_unroll", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints"):
        if t[key] <= 0:
            raise ValueError(f"train.{key} must be positive, got {t[key]}")
