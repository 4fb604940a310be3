"""Transfer learning: merging pretrained weights, frozen/slower backbones, frozen batch norm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import models, transfer
from jaxclf.train import checkpoint, steps as steps_lib

SMALL = dict(widths=(4, 4, 8), stage_sizes=(1, 1, 1))  # a ResNet-8


def _init(num_classes, name="resnet20", seed=0, side=8, **kwargs):
    model = models.create(name, num_classes=num_classes, **(kwargs or SMALL))
    variables = model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed)}, jnp.zeros((1, side, side, 3)), train=False)
    return model, dict(variables)


def _leaves(tree):
    return transfer._flat(jax.device_get(tree))


def test_merge_replaces_head_between_class_counts():
    _, source = _init(10, seed=1)
    _, target = _init(2, seed=2)
    params, report = transfer.merge_pretrained(target["params"], source["params"])
    merged, src, tgt = _leaves(params), _leaves(source["params"]), _leaves(target["params"])
    assert set(report.reinitialised) == {"head/kernel", "head/bias"}
    assert len(report.copied) == len(tgt) - 2 and not report.unused
    for path, value in merged.items():
        np.testing.assert_array_equal(value, (tgt if path.startswith("head/") else src)[path])
    stats, report = transfer.merge_pretrained({"batch_stats": target["batch_stats"]}, {"batch_stats": source["batch_stats"]})
    assert not report.reinitialised
    jax.tree.map(np.testing.assert_array_equal, stats["batch_stats"], jax.device_get(source["batch_stats"]))


def test_merge_exclude_and_errors():
    _, source = _init(10, seed=1)
    _, target = _init(10, seed=2)
    params, report = transfer.merge_pretrained(target["params"], source["params"], exclude=r"^stem/")
    assert all(p.startswith("stem/") for p in report.reinitialised) and report.reinitialised
    np.testing.assert_array_equal(params["stem"]["conv"]["kernel"], target["params"]["stem"]["conv"]["kernel"])
    _, wider = _init(10, widths=(4, 8, 8), stage_sizes=(1, 1, 1))
    with pytest.raises(ValueError, match="differ outside the head"):
        transfer.merge_pretrained(wider["params"], source["params"])
    lenet = {"params": {"conv1": {"kernel": np.zeros(3)}}}
    with pytest.raises(ValueError, match="no pretrained array matches"):
        transfer.merge_pretrained(lenet["params"], source["params"])


def _loss_fn(model, batch_stats, x, y):
    def loss(params):
        logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.jit(jax.grad(loss))


def _run(tx, steps=5, **kw):
    """``steps`` optimizer steps of a small ResNet; returns (initial params, params per step, opt states)."""
    model, v = _init(2)
    x = jax.random.normal(jax.random.key(3), (8, 8, 8, 3))
    y = jnp.arange(8) % 2
    grad = _loss_fn(model, v["batch_stats"], x, y)
    tx = transfer.make_optimizer(tx, **kw)

    @jax.jit
    def step(params, opt_state):
        updates, opt_state = tx.update(grad(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = v["params"], tx.init(v["params"])
    history, states = [], []
    for _ in range(steps):
        params, opt_state = step(params, opt_state)
        history.append(params)
        states.append(opt_state)
    return v["params"], history, states


def _backbone_head(tree):
    flat = _leaves(tree)
    return ({k: v for k, v in flat.items() if not k.startswith("head/")},
            {k: v for k, v in flat.items() if k.startswith("head/")})


def _bits(x):
    return np.asarray(x).view(np.uint32)


def test_frozen_backbone_is_bitwise_unchanged():
    tx = optax.chain(optax.add_decayed_weights(1e-2), optax.adam(1e-2))
    start, history, _ = _run(tx, freeze=transfer.BACKBONE_PATTERN)
    back0, head0 = _backbone_head(start)
    back, head = _backbone_head(history[-1])
    for k in back0:
        np.testing.assert_array_equal(_bits(back[k]), _bits(back0[k]))
    assert all(not np.array_equal(head[k], head0[k]) for k in head0)


def test_unfreeze_after_keeps_state_structure():
    start, history, states = _run(optax.adam(1e-2), steps=5, freeze=transfer.BACKBONE_PATTERN, unfreeze_after=3,
                                  backbone_lr_factor=0.5)
    back0, _ = _backbone_head(start)
    for step, params in enumerate(history):  # history[i] is after step i + 1
        back, _ = _backbone_head(params)
        frozen = all(np.array_equal(_bits(back[k]), _bits(back0[k])) for k in back0)
        assert frozen == (step < 3), step
    structures = {jax.tree.structure(s) for s in states}
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(s)) for s in states}
    assert len(structures) == 1 and len(shapes) == 1


def test_smaller_backbone_lr_changes_backbone_less():
    def backbone_change(factor):
        start, history, _ = _run(optax.sgd(0.05), steps=3, freeze=transfer.BACKBONE_PATTERN,
                                 unfreeze_after=0, backbone_lr_factor=factor)
        b0, _ = _backbone_head(start)
        b, _ = _backbone_head(history[-1])
        return sum(float(np.sum((b[k] - b0[k]) ** 2)) for k in b0) ** 0.5

    full, small = backbone_change(1.0), backbone_change(0.1)
    assert 0 < small < 0.2 * full


def test_trainable_mask():
    _, v = _init(2)
    mask = transfer._flat(transfer.trainable_mask(v["params"], transfer.BACKBONE_PATTERN))
    assert {k for k, t in mask.items() if t} == {"head/kernel", "head/bias"}
    assert all(transfer._flat(transfer.trainable_mask(v["params"], None)).values())


def test_frozen_batch_norm_keeps_statistics_and_dropout():
    kw = dict(widths=(4, 4, 4, 4, 8), hidden=(32, 32), pool_size=1)
    model, v = _init(3, name="vgg11_bn", side=32, **kw)
    v["batch_stats"] = jax.tree.map(lambda s: s * 0.5 + 0.1, v["batch_stats"])  # not the identity
    x = jax.random.normal(jax.random.key(4), (4, 32, 32, 3))
    frozen = transfer.freeze_batch_norm(model)

    def run(m, key):
        return m.apply(v, x, train=True, rngs={"dropout": jax.random.key(key)}, mutable=["batch_stats"])

    out1, new1 = run(frozen, 0)
    out2, _ = run(frozen, 1)
    jax.tree.map(np.testing.assert_array_equal, new1["batch_stats"], v["batch_stats"])
    assert not np.allclose(out1, out2)  # dropout still trains
    _, updated = run(model, 0)
    assert not np.allclose(updated["batch_stats"]["ConvNormAct_0"]["norm"]["mean"],
                           v["batch_stats"]["ConvNormAct_0"]["norm"]["mean"])
    # Without dropout (hidden layers' dropout off) frozen-BN training equals evaluation.
    nodrop = models.create("vgg11_bn", num_classes=3, dropout_rate=0.0, **kw)
    train_out, _ = transfer.freeze_batch_norm(nodrop).apply(v, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(train_out, nodrop.apply(v, x, train=False), rtol=1e-5, atol=1e-6)


def test_load_params_and_initialize(tmp_path):
    from jaxclf import convert

    _, source = _init(10, seed=1)
    convert.write_checkpoint(str(tmp_path / "run" / "checkpoints"), jax.device_get(source["params"]),
                             jax.device_get(source["batch_stats"]))
    params, model_state = checkpoint.load_params(tmp_path / "run")  # a workdir
    jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(source["params"]))
    assert set(model_state) == {"batch_stats"}
    model = models.create("resnet20", num_classes=2, **SMALL)
    state = steps_lib.init_state(model, optax.adam(1e-3), jnp.zeros((1, 8, 8, 3)), jax.random.key(5))
    new = transfer.initialize(state, checkpoint.load_params(tmp_path / "run" / "checkpoints"))
    np.testing.assert_array_equal(new.params["stem"]["conv"]["kernel"], source["params"]["stem"]["conv"]["kernel"])
    np.testing.assert_array_equal(new.params["head"]["kernel"], state.params["head"]["kernel"])
    np.testing.assert_array_equal(new.model_state["batch_stats"]["stem"]["norm"]["var"],
                                  source["batch_stats"]["stem"]["norm"]["var"])
    with pytest.raises(FileNotFoundError):
        checkpoint.load_params(tmp_path / "missing")


def _loop_wires_transfer() -> bool:
    from jaxclf.config import base_config

    c = base_config()
    return "transfer" in c and "image_folder" in c.dataset


@pytest.mark.slow
@pytest.mark.skipif(not _loop_wires_transfer(), reason="the loop does not wire jaxclf.transfer / image folders yet")
def test_not_hotdog_fine_tunes_a_frozen_backbone_end_to_end(tmp_path, capsys):
    """Pretrain on an image folder, transfer with a frozen backbone and BN, then predict."""
    from conftest import REPO

    from jaxclf import config as config_lib, predict
    from jaxclf.data.image_folder import write_synthetic_folder
    from jaxclf.run import train_and_evaluate
    folder = write_synthetic_folder(tmp_path / "images", per_class=6)

    def config():
        c = config_lib.load(f"{REPO}/configs/not_hotdog.py", "smoke")
        c.dataset.data_dir = str(folder)
        c.train.progress = False
        c.eval.report = False  # plots of the results: not what this test checks
        return c

    train_and_evaluate(config(), tmp_path / "pre", devices=jax.devices()[:1])
    c = config()
    c.transfer.init_from = str(tmp_path / "pre")
    c.transfer.freeze = transfer.BACKBONE_PATTERN
    c.transfer.freeze_batch_stats = True
    c.optim.lr = 0.1
    train_and_evaluate(c, tmp_path / "ft", devices=jax.devices()[:1])
    (pre, pre_state), (ft, ft_state) = checkpoint.load_params(tmp_path / "pre"), checkpoint.load_params(tmp_path / "ft")
    pre_back, pre_head = _backbone_head(pre)
    ft_back, ft_head = _backbone_head(ft)
    for k in pre_back:
        np.testing.assert_array_equal(_bits(ft_back[k]), _bits(pre_back[k]))
    assert any(not np.array_equal(ft_head[k], pre_head[k]) for k in pre_head)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(ft_state), jax.device_get(pre_state))
    files = sorted(str(p) for p in folder.rglob("*.png"))[:3]
    assert predict.main(["--workdir", str(tmp_path / "ft"), "--json", *files]) == 0
    assert all("class" in line for line in capsys.readouterr().out.splitlines())
