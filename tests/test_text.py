"""Text classification: tokeniser and vocabulary against plain re-computations, padding
invariance of the text models, and imdb_reviews / glue/sst2 end to end on mock data."""

from __future__ import annotations

import json
import re
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxclf import config as config_lib
from jaxclf import data, models
from jaxclf.data import text
from jaxclf.models import text as text_models

from conftest import REPO

# ----------------------------------------------------------------------------- tokeniser


def _scan_tokens(s: str) -> list[str]:
    """The tokeniser's rule, re-done character by character (no regular expressions)."""
    for br in ("<br />", "<br/>", "<br>", "<BR />"):
        s = s.replace(br, " ")
    s = s.lower()
    is_word = lambda c: c.isalnum() or c == "_"  # noqa: E731
    tokens, i = [], 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
        elif is_word(c):
            j = i
            inner_apostrophe = lambda j: s[j] == "'" and j + 1 < len(s) and is_word(s[j + 1])  # noqa: E731
            while j < len(s) and (is_word(s[j]) or inner_apostrophe(j)):
                j += 1
            tokens.append(s[i:j])
            i = j
        else:
            tokens.append(c)
            i += 1
    return tokens


def test_tokenize_examples():
    assert text.tokenize(b"I didn't like it!!! <br /><br />Worst. Film. Ever :)") == [
        "i", "didn't", "like", "it", "!", "!", "!", "worst", ".", "film", ".", "ever", ":", ")"]
    assert text.tokenize("Caf\u00e9 au_lait 42", lowercase=False) == ["Caf\u00e9", "au_lait", "42"]
    assert text.tokenize("it 's n't 'quoted'") == ["it", "'", "s", "n't", "'", "quoted", "'"]
    assert text.tokenize("<pad> <unk>") == ["<", "pad", ">", "<", "unk", ">"]  # never reserved ids
    assert text.tokenize("") == [] and text.tokenize(b"  <br />  ") == []


def test_tokenize_matches_a_character_scan():
    rng = np.random.default_rng(0)
    alphabet = list("abcXYZ019_' \t\n.,!?-()\"<>/\u00e9\u00df") + ["<br />", "<br/>", "<BR />"]
    for _ in range(500):
        s = "".join(rng.choice(alphabet, size=rng.integers(0, 40)))
        assert text.tokenize(s) == _scan_tokens(s), repr(s)


# ----------------------------------------------------------------------------- vocabulary


def _vocabulary_by_hand(texts, vocab_size):
    """Count with a dict; order: count descending, then token ascending; reserved first."""
    counts = {}
    for tokens in texts:
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    by_token = sorted(counts)
    by_count = sorted(by_token, key=lambda t: counts[t], reverse=True)  # stable: ties by token
    return ("<pad>", "<unk>", *by_count[: vocab_size - 2])


def test_vocabulary_is_most_frequent_then_alphabetical():
    texts = [["b", "a", "c", "c"], ["d", "a", "b", "e"], ["c"]]
    assert text.build_vocabulary(texts, 5) == ("<pad>", "<unk>", "c", "a", "b")
    assert text.build_vocabulary(texts, 2) == ("<pad>", "<unk>")
    assert text.build_vocabulary(texts, 100) == ("<pad>", "<unk>", "c", "a", "b", "d", "e")  # shorter
    with pytest.raises(ValueError, match="vocab_size must be >= 2"):
        text.build_vocabulary(texts, 1)


def test_vocabulary_matches_recount_and_ignores_example_order():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(40)]
    texts = [list(rng.choice(words, size=rng.integers(0, 12))) for _ in range(60)]
    for size in (2, 3, 10, 30, 100):
        expected = _vocabulary_by_hand(texts, size)
        assert text.build_vocabulary(texts, size) == expected
        shuffled = [texts[i] for i in rng.permutation(len(texts))]
        assert text.build_vocabulary(shuffled, size) == expected


def test_encode_unknowns_truncation_and_empty_texts():
    vocab = ("<pad>", "<unk>", "good", "film")
    ids, lengths = text.encode([["good", "film"], ["bad", "film", "good", "good", "film"], []], vocab, 4)
    np.testing.assert_array_equal(ids, [[2, 3, 0, 0], [1, 3, 2, 2], [1, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [2, 4, 1])
    assert ids.dtype == lengths.dtype == np.int32
    assert text.decode(ids[1], lengths[1], vocab) == "<unk> film good good"


def _dataset_cfg(**overrides):
    cfg = ml_collections.ConfigDict({
        "name": "fake_text", "image_key": "text", "label_key": "label", "max_length": 5,
        "text": {"vocab_size": 6, "lowercase": True},
    })
    for key, value in overrides.items():
        (cfg.text if key in cfg.text else cfg)[key] = value
    return cfg


def _raw(texts, labels):
    return {"text": np.array([t.encode() for t in texts], dtype=object), "label": np.array(labels, np.int64)}


def test_prepare_builds_vocabulary_on_train_only():
    raw = {
        "train": _raw(["Great great film!", "A bad film<br />bad.", ""], [1, 0, 1]),
        "test": _raw(["great unseen words here and more", "BAD"], [1, 0]),
    }
    splits, vocab = text.prepare(_dataset_cfg(), raw, "train")
    assert vocab == ("<pad>", "<unk>", "bad", "film", "great", "!")  # ties: '!' < '.' < 'a'
    assert set(splits) == {"train", "test"}
    train, test = splits["train"], splits["test"]
    assert train.inputs.shape == (3, 5)  # width = min(max_length, longest text = 6 tokens)
    np.testing.assert_array_equal(train.inputs, [[4, 4, 3, 5, 0], [1, 2, 3, 2, 1], [1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(train.lengths, [4, 5, 1])
    np.testing.assert_array_equal(test.inputs, [[4, 1, 1, 1, 1], [2, 0, 0, 0, 0]])  # truncated
    np.testing.assert_array_equal(test.lengths, [5, 1])
    assert train.labels.dtype == train.inputs.dtype == train.lengths.dtype == np.int32
    again, vocab_again = text.prepare(_dataset_cfg(), raw, "train")
    assert vocab_again == vocab and np.array_equal(again["test"].inputs, test.inputs)


def test_prepare_width_is_the_longest_text_when_shorter_than_max_length():
    raw = {"train": _raw(["a b", "a"], [0, 1]), "validation": _raw(["a b c", "b"], [1, 0])}
    splits, _ = text.prepare(_dataset_cfg(max_length=64), raw, "train")
    assert splits["train"].inputs.shape == (2, 3) and splits["validation"].inputs.shape == (2, 3)
    splits, _ = text.prepare(_dataset_cfg(lowercase=False), {"train": _raw(["A a"], [0])}, "train")
    assert splits["train"].inputs.tolist() == [[2, 3]]  # 'A' and 'a' are two tokens


# ----------------------------------------------------------------------------- models

V, L = 50, 7
LENGTHS = np.array([7, 3, 1, 5])


def _tokens(width):
    """The same four texts (ids >= 2) padded with 0 to ``width`` steps."""
    ids = np.random.default_rng(0).integers(2, V, (len(LENGTHS), L)).astype(np.int32)
    ids[np.arange(L)[None] >= LENGTHS[:, None]] = 0
    return np.pad(ids, ((0, 0), (0, width - L)))


TEXT_MODELS = [
    ("text_rnn", dict(hidden=6)),  # bidirectional LSTM, max pooling
    ("text_rnn", dict(hidden=6, cell="gru", num_layers=2, pooling="attention")),
    ("text_rnn", dict(hidden=6, bidirectional=False, pooling="last", cell="rnn")),
    ("text_rnn", dict(hidden=6, pooling="mean", dtype="bfloat16")),
    ("text_cnn", dict(features=16)),
    ("text_cnn", dict(features=16, widths=(2, 9), dtype="bfloat16")),
]


def _perturb(tree):
    """Random offsets on every parameter, large on biases: as after training, a window or
    step that reads padding alone would give a nonzero output and show up."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    keys = jax.random.split(jax.random.key(1), len(paths))
    scale = lambda path: 2.0 if "bias" in jax.tree_util.keystr(path) else 0.3  # noqa: E731
    return treedef.unflatten([x + scale(p) * jax.random.normal(k, x.shape) for (p, x), k in zip(paths, keys)])


@pytest.mark.parametrize("name,kwargs", TEXT_MODELS, ids=lambda v: str(v))
def test_padding_never_changes_the_logits(name, kwargs):
    model = models.create(name, num_classes=3, vocab_size=V, embed_dim=8, **kwargs)
    variables = jax.jit(lambda k, x, n: model.init(k, x, lengths=n, train=False))(jax.random.key(0), _tokens(L), LENGTHS)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    variables = _perturb(variables)  # e.g. nonzero biases: a window over padding alone would show
    apply = jax.jit(lambda x, n: model.apply(variables, x, lengths=n, train=False))
    ref = apply(_tokens(L), LENGTHS)
    assert ref.shape == (4, 3) and ref.dtype == jnp.float32 and np.all(np.isfinite(ref))
    tol = 2e-2 if kwargs.get("dtype") == "bfloat16" else 1e-5
    np.testing.assert_allclose(apply(_tokens(3 * L), LENGTHS), ref, atol=tol)
    # Without lengths, the non-padding ids give them.
    np.testing.assert_allclose(apply(_tokens(L + 2), None), ref, atol=tol)
    # The one-token text alone, unpadded (no convolution window reads padding only), gives
    # its row of the batch.
    np.testing.assert_allclose(apply(_tokens(L)[2:3, :1], LENGTHS[2:3])[0], ref[2], atol=tol)


def test_wide_conv_is_flax_conv_with_full_padding():
    x = jax.random.normal(jax.random.key(0), (2, 5, 3))
    for w in (1, 4):
        wide = text_models.WideConv(4, w)
        params = _perturb(wide.init(jax.random.key(w), x))
        conv = nn.Conv(4, (w,), padding=[(w - 1, w - 1)])
        np.testing.assert_allclose(wide.apply(params, x), conv.apply(params, x), atol=1e-5)


def test_text_models_train_with_dropout_and_reject_flatten_pooling():
    for name in ("text_rnn", "text_cnn"):
        model = models.create(name, num_classes=1, vocab_size=V, embed_dim=4, dropout_rate=0.5)
        variables = jax.jit(lambda k, x, n: model.init(k, x, lengths=n, train=False))(jax.random.key(0), _tokens(L), LENGTHS)
        train = jax.jit(lambda k: model.apply(variables, _tokens(L), lengths=LENGTHS, train=True, rngs={"dropout": k}))
        a, b = train(jax.random.key(1)), train(jax.random.key(2))
        assert a.shape == (4, 1) and not np.allclose(a, b)
    with pytest.raises(ValueError, match="unknown pooling 'flatten'"):
        models.create("text_rnn", num_classes=2, vocab_size=V, pooling="flatten").init(jax.random.key(0), _tokens(L), train=False)


# ----------------------------------------------------------------------------- end to end

TEXT_CONFIGS = [("text_imdb", "smoke", "test"), ("text_sst2", "smoke", "validation"), ("text_imdb", "cnn_smoke", "test")]


def _config(name, variant, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), variant)
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    return c


def test_configs_share_one_vocab_size():
    for name in ("text_imdb", "text_sst2"):
        for variant in (None, "smoke", "cnn", "cnn_smoke"):
            c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), variant)
            c.dataset.text.vocab_size = 123  # as --config.dataset.text.vocab_size=123 would
            assert models.from_config(c, 2).vocab_size == 123


def test_mock_text_loads_as_varied_token_ids(tfds_dir):
    c = _config("text_imdb", "smoke", tfds_dir)
    with tfds.testing.mock_data(num_examples=24):
        ds = data.load(c.dataset)
    train = ds.splits["train"]
    assert train.inputs.dtype == np.int32 and train.inputs.shape == (24, train.lengths.max())  # <= 16
    assert len({tuple(row) for row in train.inputs}) > 12  # mock texts differ
    assert len(set(train.lengths.tolist())) > 1 and train.lengths.min() >= 1
    assert ds.num_classes == 2


@pytest.mark.parametrize("name,variant,eval_split", TEXT_CONFIGS)
def test_text_smoke_config_trains_on_mock_data(name, variant, eval_split, tmp_path, tfds_dir):
    from jaxclf.run import train_and_evaluate
    c = _config(name, variant, tfds_dir)
    c.train.allow_unusual = True  # 20 mock examples: fewer than a batch
    with tfds.testing.mock_data(num_examples=20):
        results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert set(results) == {eval_split}
    assert 0.0 <= results[eval_split]["accuracy"] <= 1.0 and np.isfinite(results[eval_split]["loss"])
    record = json.loads((tmp_path / data.input_pipeline.PREPROCESSING_FILE).read_text())
    vocabulary = record["vocabulary"]
    assert vocabulary[:2] == ["<pad>", "<unk>"] and 2 < len(vocabulary) <= c.dataset.text.vocab_size
    _check_prediction(c, tmp_path, vocabulary)


def _check_prediction(c, workdir, vocabulary):
    """jaxclf.predict on text files: the probability of a text made of vocabulary words 2..5
    equals the model's own on token ids [2, 3, 4, 5]; an undecodable file gets an error line."""
    from jaxclf import predict
    from jaxclf.train import checkpoint
    words = [w for w in vocabulary[2:6] if re.fullmatch(r"\w+", w)]
    good, bad = workdir / "good.txt", workdir / "bad.txt"
    good.write_text(" ".join(words))
    bad.write_bytes(b"\xff\xfe not utf-8 \xc3")
    got = predict.load(workdir).predict([str(good), str(bad)])
    assert "error" in got[1] and "UnicodeDecodeError" in got[1]["error"]
    ids = np.asarray([[vocabulary.index(w) for w in words]], np.int32)
    params = checkpoint.load(workdir / "checkpoints")[1]["state"]["params"]
    logit = float(models.from_config(c, 2).apply({"params": params}, ids, lengths=np.asarray([len(words)]), train=False).ravel()[0])
    p_positive = 1 / (1 + np.exp(-logit))
    assert got[0]["probability"] == pytest.approx(max(p_positive, 1 - p_positive), rel=1e-5)


def test_bad_text_feature_names_the_features(tfds_dir):
    c = _config("text_sst2", "smoke", tfds_dir)
    c.dataset.image_key = "text"  # sst2 calls it 'sentence'
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(ValueError, match="no feature 'text'.*idx, label, sentence"):
            data.load(c.dataset)
