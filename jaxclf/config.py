"""The config schema: every experiment config starts from :func:`base_config`.

Configs are ml_collections ConfigDicts (type-safe: an override of the wrong type or of a key
that does not exist is an error). Each package owns the section it reads, its defaults with a
one-line doc per key and its checks (``jaxclf/*/config.py``, ``jaxclf.transfer``); this module
only assembles them. :func:`validate` runs every section's checks (names and values that a
ConfigDict cannot check) before any data is read or any computation runs, and says what the
valid choices are. :func:`describe` is what ``python -m jaxclf.main --print_config`` prints.
"""

from __future__ import annotations

import ml_collections

from jaxclf.schema import Field, Section

# generative: the model family defines its loss and the scalars it logs (e.g. Sketch-RNN).
# sequence: one target token per step, labels (N, T) (tagging, generation, seq2seq).
TASKS = ("multiclass", "binary", "multilabel", "generative", "sequence")


def metrics_task(task: str) -> str:
    """The task the metrics see: per-step targets ('sequence') are scored token by token, as
    multiclass rows."""
    return "multiclass" if task == "sequence" else task

TOP = Section("the run", {
    "seed": Field(0, "seed of the initialisation, the data order and the augmentation"),
    "task": Field("multiclass", "multiclass | binary (one logit) | multilabel | generative (the model's own loss) | sequence (a label per step)"),
    "metrics": Field(("accuracy",), "metrics logged and evaluated (jaxclf.metrics.names()); generative: the loss's scalars"),
})


def schema() -> Section:
    """The whole config: the top-level keys, then each package's section.

    Imported here, not at the top: the packages' modules import the training loop, which
    imports this module."""
    from jaxclf import transfer
    from jaxclf.data import config as data_config
    from jaxclf.metrics import config as metrics_config
    from jaxclf.models import config as models_config
    from jaxclf.train import config as train_config

    return Section(TOP.doc, {
        **TOP.fields,
        "model": models_config.MODEL,
        "dataset": data_config.SECTION,
        "transfer": transfer.SECTION,
        "loss": models_config.LOSS,
        "optim": train_config.OPTIM,
        "eval": metrics_config.EVAL,
        "decision": metrics_config.DECISION,
        "train": train_config.TRAIN,
    })


def base_config() -> ml_collections.ConfigDict:
    """Defaults for every key the training loop reads; experiment configs override them."""
    return schema().build()


def docs() -> dict[str, str]:
    """``dotted key -> one-line doc`` for every key and section of :func:`base_config`."""
    out = {}
    for key, field in schema().fields.items():
        out.update(field.docs(key) if isinstance(field, Section) else {key: field.doc})
    return out


def _extra_doc(path: str, config) -> str:
    """The doc of a key a config adds to the defaults (a model's keywords, a loss's)."""
    from jaxclf.models import config as models_config

    section, _, key = path.rpartition(".")
    if section == "model":
        return models_config.key_doc(config.model.name, key) or "keyword of jaxclf.models.create"
    if section == "loss":
        return "keyword of the model family's loss"
    return "added by this config"


def _describe(node, section: Section, prefix: str, root) -> list[str]:
    """A section's lines: its header, its keys, then its sub-sections (declared order first)."""
    lines, subsections = [], []
    if prefix:
        lines += ["", f"# {prefix}: {section.doc}"]
    declared = [k for k in section.fields if k in node]
    for key in declared + sorted(set(node.keys()) - set(section.fields)):
        path = f"{prefix}.{key}" if prefix else key
        field = section.fields.get(key)
        value = node[key]
        if isinstance(value, ml_collections.ConfigDict):
            sub = field if isinstance(field, Section) else Section(_extra_doc(path, root))
            subsections += _describe(value, sub, path, root)
        else:
            doc = field.doc if isinstance(field, Field) else _extra_doc(path, root)
            lines.append(f"{path} = {value!r}  # {doc}")
    return lines + subsections


def describe(config) -> str:
    """Every key of ``config`` with its value and one-line doc, grouped by section."""
    return "\n".join(_describe(config, schema(), "", config)) + "\n"


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


def validate(config) -> None:
    """Raises ValueError for names and values that would only fail later, listing valid ones:
    each section's own checks, then those across sections."""
    from jaxclf import transfer
    from jaxclf.data import config as data_config
    from jaxclf.metrics import config as metrics_config
    from jaxclf.models import config as models_config
    from jaxclf.train import config as train_config

    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
    models_config.validate(config.model)
    train_config.validate_optim(config.optim, allow_unusual=config.train.allow_unusual)
    if config.task == "generative":
        models_config.validate_logged(config.model.name, config.metrics)
    else:
        metrics_config.validate_names(config.metrics, metrics_task(config.task))
    data_config.validate(config.dataset)
    transfer.validate(config.transfer)
    metrics_config.validate_decision(config.decision, config.dataset.eval_splits)
    train_config.validate(config.train)
