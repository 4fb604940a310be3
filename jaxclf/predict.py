"""Classifies image files (text files, for a text run) with a trained run: ``python -m jaxclf.predict --workdir=DIR FILE [FILE ...]``.

Reads the run's ``config.json``, its latest checkpoint and ``preprocessing.json`` (written by
the training loop: input size, pad, the train split's per-channel mean/std, class names), and
preprocesses each image as training did: decode (PIL, RGB or grayscale), resize, pad, scale
to [0, 1], standardise; a text run tokenises each file with the run's recorded vocabulary.
Binary runs decide with the run's threshold: ``decision.json``'s
``threshold`` if present (e.g. tuned on validation data), else the config's
``decision.threshold`` (``train.threshold`` in runs recorded before that section).

Each file is handled on its own: a non-image, a truncated file or a decompression bomb gives
an error line for that file, the others are still classified, and the exit status is 1 when
any file failed. ``--json`` prints one object per line: ``{"file", "class", "probability"}``
or ``{"file", "error"}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxclf import cli
from jaxclf.data.image_folder import BadImageError, decode_image
from jaxclf.data.input_pipeline import PREPROCESSING_FILE, preprocessing_record

DECISION_FILE = "decision.json"


def _tuples(value):
    """JSON lists back to tuples (ConfigDict fields and flax module attributes want tuples)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def read_config(workdir: Path):
    import ml_collections

    path = workdir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a jaxclf run directory, or its run "
                                "stopped before it was built (train it with python -m jaxclf.main)")
    return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def _read_preprocessing(workdir: Path, config) -> dict:
    path = workdir / PREPROCESSING_FILE
    if path.exists():
        return json.loads(path.read_text())
    # Older runs: only fixed normalisations can be rebuilt from the config alone.
    d = config.dataset
    if d.resize is None:
        raise FileNotFoundError(f"{path} not found and the config has no dataset.resize: input size unknown")
    fixed = {"none": (0.0, 1.0), "unit": (0.5, 0.5)}.get(d.normalize)
    if fixed is None and (d.get("mean") is None or d.get("std") is None):
        raise FileNotFoundError(
            f"{path} not found: the run standardised with train-split statistics that only that file records"
        )
    mean, std = ((fixed[0],) * 3, (fixed[1],) * 3) if fixed else (d.mean, d.std)
    return preprocessing_record(input_shape=(*d.resize, len(mean)), pad=0, mean=mean, std=std, class_names=())


def decision_threshold(workdir: Path, config) -> float:
    path = workdir / DECISION_FILE
    if path.exists():
        return float(json.loads(path.read_text())["threshold"])
    if "decision" not in config:  # a run recorded before the decision section had train.threshold
        return float(config.train.threshold)
    return float(config.decision.threshold)


@dataclasses.dataclass
class Predictor:
    """A restored run: ``predict(paths)`` -> one result dict per path."""

    task: str
    apply: Any  # jitted (inputs, lengths or None) -> logits
    prep: dict
    class_names: tuple[str, ...]
    threshold: float

    @property
    def is_text(self) -> bool:
        return "vocabulary" in self.prep

    def preprocess(self, path) -> np.ndarray:
        """An image file as the model's normalised input, or a UTF-8 text file (text runs) as
        token ids of the run's vocabulary (``max_length`` of them, 0-padded)."""
        if self.is_text:
            from jaxclf.data import text

            tokens = text.tokenize(Path(path).read_text(encoding="utf-8"), self.prep["lowercase"])
            return text.encode([tokens], self.prep["vocabulary"], self.prep["max_length"])[0][0]
        h, w, c = self.prep["input_shape"]
        p = self.prep["pad"]
        image = decode_image(path, (h - 2 * p, w - 2 * p), channels=c).astype(np.float32) / 255.0
        image = np.pad(image, ((p, p), (p, p), (0, 0)))
        return (image - np.asarray(self.prep["mean"], np.float32)) / np.asarray(self.prep["std"], np.float32)

    def decide(self, logits: np.ndarray) -> tuple[Any, Any]:
        """(class name(s), probability) of one example's logits."""
        if self.task == "binary":
            p = float(1.0 / (1.0 + np.exp(-float(logits[0]))))
            positive = p >= self.threshold
            return self.class_names[int(positive)], p if positive else 1.0 - p
        if self.task == "multilabel":
            probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
            on = np.flatnonzero(probs >= self.threshold)
            return [self.class_names[i] for i in on], [float(probs[i]) for i in on]
        z = logits.astype(np.float64) - logits.max()
        probs = np.exp(z) / np.exp(z).sum()
        k = int(np.argmax(probs))
        return self.class_names[k], float(probs[k])

    def predict(self, paths: Sequence[str], batch_size: int = 32) -> list[dict]:
        results: dict[int, dict] = {}
        good: list[tuple[int, np.ndarray]] = []
        for i, path in enumerate(paths):
            try:
                good.append((i, self.preprocess(path)))
            except (BadImageError, OSError, UnicodeDecodeError) as e:  # OSError: missing or unreadable file
                reason = str(e).split(": ", 1)[1] if isinstance(e, BadImageError) else f"{type(e).__name__}: {e}"
                results[i] = {"file": str(path), "error": reason}
        for start in range(0, len(good), batch_size):
            chunk = good[start : start + batch_size]
            inputs = np.stack([x for _, x in chunk])
            lengths = np.maximum((inputs != 0).sum(-1), 1).astype(np.int32) if self.is_text else None
            logits = np.asarray(self.apply(inputs, lengths))
            for (i, _), row in zip(chunk, logits):
                name, prob = self.decide(row)
                results[i] = {"file": str(paths[i]), "class": name, "probability": prob}
        return [results[i] for i in range(len(paths))]


def load(workdir: str | Path) -> Predictor:
    """The run in ``workdir`` (config, latest checkpoint, preprocessing, threshold)."""
    import jax

    from jaxclf import models
    from jaxclf.train import checkpoint

    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"run directory {str(workdir)!r} does not exist")
    config = read_config(workdir)
    if not any((workdir / "checkpoints").glob("[0-9]*")):
        raise FileNotFoundError(f"{workdir} holds no trained model yet: no checkpoint in {workdir / 'checkpoints'} "
                                "(train it first with python -m jaxclf.main, or let a running run save a step)")
    prep = _read_preprocessing(workdir, config)
    params, model_state = checkpoint.load_params(workdir)
    num_classes = len(prep["class_names"]) or _infer_num_classes(params, config)
    names = tuple(prep["class_names"]) or tuple(f"class_{i}" for i in range(num_classes))
    model = models.from_config(config, num_classes)
    variables = {"params": params, **model_state}
    def forward(x, lengths):
        kwargs = {} if lengths is None else {"lengths": lengths}
        return model.apply(variables, x, train=False, **kwargs)

    apply = jax.jit(forward)
    return Predictor(config.task, apply, prep, names, decision_threshold(workdir, config))


def _infer_num_classes(params, config) -> int:
    """For runs without recorded class names: the head's width (names become class_{i})."""
    if config.task == "binary":
        return 2
    for name in ("head", "fc"):
        if name in params:
            return int(params[name]["bias"].shape[-1])
    raise ValueError(f"{PREPROCESSING_FILE} has no class_names and the model has no 'head'/'fc' layer")


def _format(result: dict) -> str:
    if "error" in result:
        return f"{result['file']}: error: {result['error']}"
    prob = result["probability"]
    prob = ", ".join(f"{p:.3f}" for p in prob) if isinstance(prob, list) else f"{prob:.3f}"
    return f"{result['file']}: {result['class']} ({prob})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxclf.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a training run's directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("files", nargs="+", help="image files (UTF-8 text files for a text run)")
    args = parser.parse_args(argv)
    try:
        predictor = load(args.workdir)
    except (FileNotFoundError, ValueError) as e:
        if cli.debugging(argv):
            raise
        print(f"error: {cli.message(e)}", file=sys.stderr)
        return cli.EXIT_ERROR
    failed = False
    for result in predictor.predict(args.files):
        failed |= "error" in result
        line = json.dumps(result) if args.json else _format(result)
        print(line, file=sys.stderr if ("error" in result and not args.json) else sys.stdout, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
