"""The ``dataset`` config section: what to train on and how it is read and preprocessed.

Keys that apply to one kind of input sit in a sub-section of that kind (``text``,
``strokes``, ``image_folder``, ``stream``); the rest apply to every kind.
"""

from __future__ import annotations

from jaxclf.schema import Field, Section

SEQUENCE_VIEWS = ("", "rows")

SECTION = Section("what to train on, and how it is read and preprocessed (jaxclf.data)", {
    "name": Field("digits", "a bundled builder (jaxclf.data.builders), a TFDS name, or image_folder"),
    "data_dir": Field(None, "TFDS data directory, or the folder of an image_folder dataset (None: TFDS default)", str),
    "download": Field(True, "download and prepare a missing TFDS dataset"),
    "train_split": Field("train", "the split trained on"),
    "eval_splits": Field(("test",), "splits evaluated every train.eval_every steps and at the end"),
    "test_splits": Field((), "splits evaluated once, at the end (results.json, report): keep test data out of choices"),
    "validation_fraction": Field(0.0, "> 0: a stratified 'validation' split carved from train_split (in-memory only)"),
    "validation_seed": Field(0, "seed of the validation carve"),
    "image_key": Field("image", "the input feature (image, sequence, text or strokes)"),
    "label_key": Field("label", "the integer label feature"),
    "pad": Field(0, "zero pixels added on each side of an image (e.g. 2: 28x28 MNIST -> 32x32)"),
    "resize": Field(None, "(height, width) images are resized to (None: as stored)", tuple),
    "normalize": Field("standardize", "standardize (train-split statistics, or mean/std) | unit | none"),
    "mean": Field(None, "per-channel mean for standardize (None: measured on the train split)", tuple),
    "std": Field(None, "per-channel std for standardize (None: measured on the train split)", tuple),
    "max_length": Field(256, "text: tokens kept per example; strokes: points kept (longer sketches dropped)"),
    "sequence_view": Field("", "'rows': an image becomes a sequence of its rows (for recurrent models)"),
    "keep_classes": Field((), "a subset of classes, indices or names, relabelled 0..k-1 in this order; () = all"),
    "examples_per_class": Field(0, "label budget of the train split; 0 = every example"),
    "budget_seed": Field(0, "seed of the examples kept by examples_per_class"),
    "augment": Field((), "training augmentations: random_crop, flip; stroke_scale, stroke_drop; "
                         "streaming: random_resized_crop, flip"),
    "crop_padding": Field(4, "random_crop: pixels padded on each side before the crop"),
    "in_memory": Field(True, "False: stream TFDS ArrayRecord files (datasets too large for memory, e.g. ImageNet)"),
    "text": Section("text inputs (jaxclf.data.text)", {
        "vocab_size": Field(20000, "vocabulary from the train split, incl. 0 = padding, 1 = unknown"),
        "lowercase": Field(True, "lowercase the text before tokenising"),
    }),
    "strokes": Section("stroke-5 sketches (jaxclf.data.strokes)", {
        "stroke_scale": Field(0.15, "augment stroke_scale: offsets x U[1 - s, 1 + s] per sketch and axis"),
        "stroke_drop": Field(0.1, "augment stroke_drop: probability of dropping a point inside a stroke"),
    }),
    "image_folder": Section("name=image_folder: a folder of class folders (jaxclf.data.image_folder)", {
        "split_ratio": Field(0.8, "train fraction per class when the folder has no train/test folders"),
        "split_seed": Field(0, "seed of that split"),
        "on_bad_file": Field("skip", "unreadable files: skip (and list them) | error"),
        "allow_single_class": Field(False, "True trains on a folder of one class"),
    }),
    "stream": Section("in_memory=False: streaming (jaxclf.data.stream; needs resize and explicit mean/std)", {
        "eval_resize": Field(0, "evaluation: shorter side to this, then a center crop of resize; 0: resize whole"),
        "num_workers": Field(4, "worker processes decoding and preprocessing images (0: the training process)"),
    }),
})


def validate(dataset) -> None:
    """Raises ValueError for dataset settings that would only fail once data are read."""
    from jaxclf.data import image_folder, input_pipeline, sources, stream

    sources.check_exists(dataset.name, dataset.data_dir)
    if dataset.in_memory:
        unknown_aug = set(dataset.augment) - set(input_pipeline.AUGMENTATIONS)
        if unknown_aug:
            raise ValueError(
                f"unknown dataset.augment {sorted(unknown_aug)}; valid: "
                f"{', '.join(input_pipeline.AUGMENTATIONS)} "
                f"(streaming, dataset.in_memory=False: {', '.join(stream.AUGMENTATIONS)})"
            )
        if dataset.stream.eval_resize:
            raise ValueError("dataset.stream.eval_resize applies to streaming only (dataset.in_memory=False)")
    else:
        stream.check_config(dataset)
    if not 0.0 <= dataset.validation_fraction < 1.0:
        raise ValueError(f"dataset.validation_fraction must be in [0, 1), got {dataset.validation_fraction}")
    if dataset.validation_fraction and not dataset.in_memory:
        raise ValueError("dataset.validation_fraction carves in-memory datasets only (dataset.in_memory=True)")
    if dataset.sequence_view not in SEQUENCE_VIEWS:
        raise ValueError(f"unknown dataset.sequence_view {dataset.sequence_view!r}; valid: '', rows")
    if dataset.normalize not in input_pipeline.NORMALIZATIONS:
        raise ValueError(
            f"unknown dataset.normalize {dataset.normalize!r}; valid: {', '.join(input_pipeline.NORMALIZATIONS)}"
        )
    policy = dataset.image_folder.on_bad_file
    if policy not in image_folder.BAD_FILE_POLICIES:
        raise ValueError(f"dataset.image_folder.on_bad_file must be 'skip' or 'error', got {policy!r}")
