"""``python -m jaxclf.predict``: a run's model classifies files, bad files fail one by one."""

import json
import struct
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxclf import config as config_lib
from jaxclf import convert, models, predict
from jaxclf.data.image_folder import load_image_folder, write_synthetic_folder
from jaxclf.train import workdir as workdir_lib
from conftest import REPO

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def huge_png(path, side=100_000):
    """A PNG header announcing side x side pixels: over PIL's decompression-bomb limit."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A binary not-hotdog run directory as the loop leaves it (random small ResNet-20)."""
    tmp = tmp_path_factory.mktemp("predict")
    folder = write_synthetic_folder(tmp / "images", per_class=3)
    config = config_lib.load(f"{REPO}/configs/not_hotdog.py", "smoke")
    workdir = tmp / "run"
    workdir.mkdir()
    workdir_lib.record_config(workdir, config.to_dict())
    model = models.from_config(config, 2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    stats = jax.tree.map(lambda s: s + 0.1, jax.device_get(variables["batch_stats"]))
    convert.write_checkpoint(str(workdir / "checkpoints"), jax.device_get(variables["params"]), stats)
    record = predict.preprocessing_record(input_shape=(32, 32, 3), pad=0, mean=MEAN, std=STD,
                                          class_names=("hotdog", "not_hotdog"))
    workdir_lib.write_json(workdir / predict.PREPROCESSING_FILE, record)
    logits_fn = lambda x: model.apply({"params": variables["params"], "batch_stats": stats}, x, train=False)  # noqa: E731
    return workdir, folder, logits_fn


def _files(folder):
    return sorted(str(p) for p in folder.rglob("*.png"))


def test_probabilities_match_the_training_preprocessing(run, capsys):
    workdir, folder, logits_fn = run
    files = _files(folder)
    assert predict.main(["--workdir", str(workdir), "--json", *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in lines] == files
    # The same images through the image-folder loader (what training saw) and the model.
    images = np.concatenate([x for x, _ in load_image_folder(folder, image_size=32, split_ratio=0.5).splits.values()])
    inputs = (images / np.float32(255.0) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    p_positive = sorted(float(v) for v in jax.nn.sigmoid(logits_fn(inputs))[:, 0])
    got = sorted(r["probability"] if r["class"] == "not_hotdog" else 1 - r["probability"] for r in lines)
    np.testing.assert_allclose(got, p_positive, atol=1e-5)
    assert all(r["probability"] >= 0.5 for r in lines)  # threshold 0.5: the decided class is the likelier


def test_bad_files_fail_alone(run, tmp_path, capsys):
    workdir, folder, _ = run
    (tmp_path / "text.jpg").write_text("not an image")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:300])
    huge_png(tmp_path / "bomb.png")
    bad = [str(tmp_path / n) for n in ("text.jpg", "cut.jpg", "bomb.png", "missing.png")]
    good = _files(folder)[:2]
    assert predict.main(["--workdir", str(workdir), "--json", bad[0], good[0], *bad[1:], good[1]]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    errors = {r["file"]: r["error"] for r in out if "error" in r}
    assert sorted(errors) == sorted(bad)
    assert "truncated" in errors[bad[1]].lower() and "DecompressionBomb" in errors[bad[2]]
    assert [r["file"] for r in out if "class" in r] == good
    assert predict.main(["--workdir", str(workdir), good[0]]) == 0  # plain text output
    text = capsys.readouterr().out
    assert text.startswith(good[0] + ": ") and "hotdog" in text


def test_threshold_without_decision_json_comes_from_the_recorded_config(tmp_path):
    import ml_collections

    now = ml_collections.ConfigDict({"decision": {"threshold": 0.7}})
    before = ml_collections.ConfigDict({"train": {"threshold": 0.3}})  # config.json of a run from before `decision`
    assert (predict.decision_threshold(tmp_path, now), predict.decision_threshold(tmp_path, before)) == (0.7, 0.3)


def test_threshold_from_decision_json(run, tmp_path):
    workdir, folder, _ = run
    files = _files(folder)
    base = predict.load(workdir)
    assert base.threshold == 0.5  # config decision.threshold
    (workdir / predict.DECISION_FILE).write_text(json.dumps({"threshold": 0.0}))
    try:
        results = predict.load(workdir).predict(files)
    finally:
        (workdir / predict.DECISION_FILE).unlink()
    assert {r["class"] for r in results} == {"not_hotdog"}


def test_missing_run_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        predict.load(tmp_path)
