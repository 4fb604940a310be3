"""The classic CNN families: exact sizes, shapes, one training step, aux heads, batch norm.

Big models are only traced (``jax.eval_shape``): no ImageNet-size compute runs here.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import fast_init
from jaxclf import models
from jaxclf.models import alexnet, resnet, vgg
from jaxclf.summary import abstract_variables, count_params, layer_macs
from jaxclf.summary import main as summary_main

# torchvision's published parameter counts (1000 classes, 224x224x3; GoogLeNet without
# its aux heads, as torchvision's pretrained model and docs count it).
IMAGENET_PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "googlenet": 6_624_904,
}

# CIFAR ResNets (He et al. 2015, sec. 4.2; 10 classes, 32x32x3), reported as 0.27M, 0.46M,
# 0.66M, 0.85M, 1.7M. With n blocks per stage, 3x3 convs without bias, BN (scale+bias,
# 2 per channel) after each conv, and parameter-free (option A) shortcuts:
#   stem      3*3*3*16 + 2*16                                   =    464
#   stage 1   n * (2 * 3*3*16*16 + 2 * 2*16)                    =   4672 n
#   stage 2   (3*3*16*32 + 3*3*32*32 + 4*32)                    =  13952
#             + (n-1) * (2 * 3*3*32*32 + 4*32)                  +  18560 (n-1)
#   stage 3   (3*3*32*64 + 3*3*64*64 + 4*64)                    =  55552
#             + (n-1) * (2 * 3*3*64*64 + 4*64)                  +  73984 (n-1)
#   head      64*10 + 10                                        =    650
# Total = 97216 n - 21926.
CIFAR_PARAMS = {f"resnet{6 * n + 2}": 97216 * n - 21926 for n in (3, 5, 7, 9, 18)}
assert CIFAR_PARAMS == {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586,
                        "resnet56": 853_018, "resnet110": 1_727_962}


def shapes(model, input_shape, **kwargs):
    """(output shapes, variable shapes) of init + forward, traced only."""
    x = jnp.zeros(input_shape, jnp.float32)
    kwargs.setdefault("train", False)
    return jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, **kwargs))


def test_every_cnn_is_registered():
    assert set(IMAGENET_PARAMS) | set(CIFAR_PARAMS) <= set(models.names())
    for family, cls in ((vgg, vgg.VGG), (resnet, resnet.ResNet)):  # variants of one class
        assert all(f.func is cls for f in family.MODELS.values())


@pytest.mark.parametrize("name", sorted(IMAGENET_PARAMS))
def test_imagenet_params_and_shape(name):
    logits, variables = shapes(models.create(name, num_classes=1000), (2, 224, 224, 3))
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert count_params(variables) == IMAGENET_PARAMS[name]


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS))
def test_cifar_resnet_params_and_shape(name):
    logits, variables = shapes(models.create(name, num_classes=10), (2, 32, 32, 3))
    assert logits.shape == (2, 10)
    assert count_params(variables) == CIFAR_PARAMS[name]


def test_googlenet_aux_params():
    # Each aux head: conv 1x1 -> 128 (+BN), fc 2048 -> 1024, fc 1024 -> 1000.
    aux = lambda c: c * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000  # noqa: E731
    _, variables = shapes(models.create("googlenet", num_classes=1000, aux_logits=True), (1, 224, 224, 3))
    assert count_params(variables) == 6_624_904 + aux(512) + aux(528) == 13_004_888


def test_any_resolution_channels_and_classes():
    # An explicit pool_size keeps AlexNet/VGG's classifier at 6x6/7x7 whatever the input size
    # (torchvision's adaptive pool; the default pool_size=None does not replicate small maps).
    _, v = shapes(models.create("vgg11", num_classes=1000, pool_size=7), (1, 32, 32, 3))
    assert count_params(v) == IMAGENET_PARAMS["vgg11"]
    logits, v = shapes(models.create("alexnet", num_classes=7, pool_size=6), (1, 63, 80, 1))
    assert logits.shape == (1, 7)
    assert count_params(v) == IMAGENET_PARAMS["alexnet"] - 2 * 11 * 11 * 64 - 4096 * 993 - 993
    for name in ("resnet50", "googlenet", "resnet20"):
        logits, _ = shapes(models.create(name, num_classes=5), (1, 40, 56, 2))
        assert logits.shape == (1, 5)


def tree_changed(before, after):
    """Paths of the leaves that did NOT change."""
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), before, after)
    return [jax.tree_util.keystr(p) for p, s in jax.tree_util.tree_leaves_with_path(same) if s]


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# Small members of each family (reduced widths), at inputs where the last feature map is
# still larger than 1x1: batch norm over just 2 values outputs +-1 whatever its input, so
# it would pass no gradient back to the conv before it.
TRAIN_CASES = {
    "alexnet": (functools.partial(alexnet.AlexNet, widths=(8, 8, 8, 8, 8), hidden=(16, 16), pool_size=2), 64),
    "vgg11_bn": (functools.partial(vgg.VGG, stage_depths=(1, 1, 2, 2, 2), widths=(4, 8, 8, 8, 8),
                                   hidden=(16, 16), pool_size=1, norm="batch"), 32),
    "vgg11": (functools.partial(vgg.VGG, stage_depths=(1, 1, 2, 2, 2), widths=(8, 8, 8, 8, 8),
                                hidden=(16, 16), pool_size=1), 32),
    "resnet18": (functools.partial(models.create, "resnet18", widths=(4, 8, 8, 8)), 64),
    "resnet50": (functools.partial(models.create, "resnet50", widths=(4, 4, 4, 4)), 64),
    "resnet20": (functools.partial(models.create, "resnet20"), 32),
    "googlenet": (functools.partial(models.create, "googlenet", aux_logits=True, width_mult=1 / 16), 64),
}


@pytest.mark.parametrize("name", sorted(TRAIN_CASES))
def test_one_sgd_step_changes_every_parameter(name):
    factory, size = TRAIN_CASES[name]
    model = factory(num_classes=3)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    labels = jnp.array([0, 2])
    variables = fast_init(model, x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def loss_fn(params):
        out, new_state = model.apply({"params": params, **state}, x, train=True,
                                     rngs={"dropout": jax.random.key(2)}, mutable=[*state, "intermediates"])
        new_state = dict(new_state)
        aux = new_state.pop("intermediates", {}).get("aux_logits", ())
        # GoogLeNet: main + 0.3 * each aux loss, as in the paper
        return cross_entropy(out, labels) + 0.3 * sum(cross_entropy(a, labels) for a in aux), new_state

    @jax.jit
    def step(params):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), new_state, loss

    new_params, new_state, loss = step(params)
    assert np.isfinite(loss)
    assert tree_changed(params, new_params) == []
    if state:  # batch statistics moved towards this batch's
        assert tree_changed(state, new_state) == []


def test_googlenet_returns_logits_in_both_modes_and_sows_aux_logits_in_training():
    model = models.create("googlenet", num_classes=4, aux_logits=True)
    x = jnp.ones((2, 32, 32, 3))
    variables = fast_init(model, x)
    rngs = {"dropout": jax.random.key(1)}
    logits, state = jax.eval_shape(
        functools.partial(model.apply, train=True, mutable=["batch_stats", "intermediates"], rngs=rngs), variables, x)
    aux1, aux2 = state["intermediates"]["aux_logits"]
    assert logits.shape == aux1.shape == aux2.shape == (2, 4)
    _, state = jax.eval_shape(functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, x)
    assert jax.eval_shape(functools.partial(model.apply, train=False), variables, x).shape == (2, 4)
    assert "aux_logits" not in state.get("intermediates", {})  # eval: the aux heads do not run
    plain = models.create("googlenet", num_classes=4)
    out, _ = jax.eval_shape(functools.partial(plain.apply, train=True, mutable=["batch_stats"], rngs=rngs),
                            fast_init(plain, x), x)
    assert out.shape == (2, 4)


def test_batch_norm_train_updates_stats_eval_uses_them():
    model = models.create("resnet20", num_classes=10)
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    variables = fast_init(model, x)
    train = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
    evaluate = jax.jit(functools.partial(model.apply, train=False))
    _, new_state = train(variables, x)
    stem_before = variables["batch_stats"]["stem"]["norm"]
    stem_after = new_state["batch_stats"]["stem"]["norm"]
    # Running mean starts at 0 and moves 10% of the way (PyTorch momentum 0.1) to the batch mean.
    assert jnp.allclose(stem_before["mean"], 0) and not jnp.allclose(stem_after["mean"], 0)
    # Eval normalises with the running statistics: an example's output is independent of
    # the rest of the batch, and it changes when the statistics do.
    trained = {**variables, **new_state}
    full, other = evaluate(trained, x), evaluate(trained, x.at[1:].set(-x[1:]))
    np.testing.assert_allclose(full[:1], other[:1], rtol=1e-4, atol=1e-5)
    assert not jnp.allclose(evaluate(variables, x)[:1], full[:1])
    # Training normalises with the batch's statistics: the rest of the batch changes the output.
    train_full, _ = train(trained, x)
    train_other, _ = train(trained, x.at[1:].set(-x[1:]))
    assert not jnp.allclose(train_full[:1], train_other[:1])


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_norm_choice(norm):
    logits, variables = shapes(models.create("resnet20", num_classes=10, norm=norm), (2, 32, 32, 3))
    assert logits.shape == (2, 10) and "batch_stats" not in variables


def test_zero_init_residual_starts_blocks_as_identity():
    model = models.create("resnet20", num_classes=10, zero_init_residual=True)
    # An RBG key: the scales checked are constants, and threefry's init compiles for seconds.
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0, impl="rbg"), jnp.zeros((1, 32, 32, 3)))
    block = variables["params"]["stage1_block1"]
    scales = [block[k]["norm"]["scale"] for k in sorted(block)]
    assert not jnp.allclose(scales[0], 0) and jnp.allclose(scales[-1], 0)


def test_bf16_compute_keeps_float32_params_and_logits():
    model = models.create("resnet20", num_classes=10, dtype=jnp.bfloat16)
    logits, variables = shapes(model, (2, 32, 32, 3))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    assert logits.dtype == jnp.float32
    # The convolutions really compute in bfloat16.
    hlo = jax.jit(functools.partial(model.apply, train=False)).lower(variables, jnp.ones((2, 32, 32, 3))).as_text()
    assert "bf16" in hlo
    half = models.create("resnet20", num_classes=10, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    _, v = shapes(half, (2, 32, 32, 3))
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(v["params"]))


def test_unknown_choices_raise():
    with pytest.raises(ValueError, match="valid: batch"):
        shapes(models.create("resnet20", num_classes=10, norm="instance"), (1, 32, 32, 3))
    with pytest.raises(TypeError, match="resnet20"):
        models.create("resnet20", num_classes=10, depth=3)


# torchvision's "GFLOPS" column (multiply-accumulates of conv and linear layers, 224x224).
TORCHVISION_GMACS = {"alexnet": 0.71, "googlenet": 1.50, "vgg16": 15.47, "resnet18": 1.81, "resnet50": 4.09}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_layer_macs_match_torchvision(name):
    model = models.create(name, num_classes=1000)
    variables = abstract_variables(model, (1, 224, 224, 3))
    assert round(layer_macs(model, variables, (1, 224, 224, 3)) / 1e9, 2) == TORCHVISION_GMACS[name]


def test_summary_cli(capsys):
    summary_main(["--model=resnet20", "--input=32,32,3", "--num_classes=10", "--no_table"])
    out = capsys.readouterr().out
    assert "parameters: 269,722" in out
    # He et al. (2015) give ResNet-20 about 41M MACs ("FLOPs" in the paper's sense).
    assert "conv + dense layers: 0.041 GMACs" in out
