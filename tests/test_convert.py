"""torchvision <-> jaxclf conversion without torch: round trips and torchvision's key names.

(Numerical agreement with torchvision itself is checked in tests/interop/, which needs torch.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import convert, models
from jaxclf.train import checkpoint

# Small widths: the key names and layouts do not depend on them.
SMALL = {
    "resnet18": dict(widths=(4, 8, 8, 8)),
    "resnet50": dict(widths=(2, 2, 4, 4)),
    "vgg11": dict(widths=(2, 2, 4, 4, 4), hidden=(8, 8), pool_size=7),  # torchvision reads 7x7
    "vgg16_bn": dict(widths=(2, 2, 4, 4, 4), hidden=(8, 8), pool_size=7),
    "alexnet": dict(widths=(2, 4, 4, 4, 3), hidden=(8, 8), pool_size=6),  # and 6x6
    "googlenet": dict(width_mult=0.0625, aux_logits=True),
}
# torchvision's state_dict sizes (num_batches_tracked included) and some of its keys.
EXPECTED = {
    "resnet18": (122, ["conv1.weight", "bn1.running_var", "layer1.1.conv2.weight", "layer2.0.downsample.0.weight",
                       "layer4.1.bn2.num_batches_tracked", "fc.bias"]),
    "resnet50": (320, ["layer1.0.downsample.1.running_mean", "layer3.5.conv3.weight", "layer4.2.bn3.bias"]),
    "vgg11": (22, ["features.0.weight", "features.3.bias", "features.18.weight", "classifier.0.weight", "classifier.6.bias"]),
    "vgg16_bn": (97, ["features.1.running_mean", "features.40.weight", "features.41.running_var", "classifier.3.weight"]),
    "alexnet": (16, ["features.0.weight", "features.3.weight", "features.6.bias", "features.8.weight",
                     "features.10.weight", "classifier.1.weight", "classifier.4.bias", "classifier.6.weight"]),
    "googlenet": (364, ["conv1.conv.weight", "conv3.bn.running_mean", "inception3a.branch2.0.conv.weight",
                        "inception3a.branch3.1.bn.weight", "inception4e.branch4.1.conv.weight",
                        "aux1.conv.conv.weight", "aux2.fc1.weight", "aux1.fc2.bias", "fc.weight"]),
}
UNEXPECTED = {"resnet18": ["layer1.0.downsample.0.weight"], "vgg11": ["features.1.running_mean"]}


def random_variables(name, side=64, seed=0):
    """(params, batch_stats) of the small model as numpy arrays, without running it."""
    model = models.create(name, num_classes=7, **SMALL[name])
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                                               jnp.zeros((1, side, side, 3)), train=False))
    rng = np.random.default_rng(seed)
    values = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    return values["params"], values.get("batch_stats", {})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_round_trip_and_torchvision_keys(name):
    params, stats = random_variables(name)
    sd = convert.to_torchvision(name, params, stats, **SMALL[name])
    count, keys = EXPECTED[name]
    assert len(sd) == count
    assert set(keys) <= set(sd) and not set(UNEXPECTED.get(name, [])) & set(sd)
    assert all(k.endswith(("weight", "bias", "running_mean", "running_var", "num_batches_tracked")) for k in sd)
    back_params, back_stats = convert.from_torchvision(name, sd, **SMALL[name])
    jax.tree.map(np.testing.assert_array_equal, (back_params, back_stats), (params, stats))


def test_layouts():
    params, stats = random_variables("alexnet")
    sd = convert.to_torchvision("alexnet", params, stats, **SMALL["alexnet"])
    kernel = params["ConvNormAct_1"]["conv"]["kernel"]  # (5, 5, 2, 4) HWIO
    np.testing.assert_array_equal(sd["features.3.weight"], kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(sd["classifier.4.weight"], params["fc2"]["kernel"].T)
    # fc1 sees a 6x6x3 map: flax row (h, w, c) is torch column (c, h, w).
    fc1 = params["fc1"]["kernel"]
    h, w, c = 2, 5, 1
    np.testing.assert_array_equal(sd["classifier.1.weight"][:, c * 36 + h * 6 + w], fc1[(h * 6 + w) * 3 + c])


def test_googlenet_without_aux_heads():
    params, stats = random_variables("googlenet")
    sd = convert.to_torchvision("googlenet", params, stats, **SMALL["googlenet"])
    without = {k: v for k, v in sd.items() if not k.startswith("aux")}
    p, s = convert.from_torchvision("googlenet", without, **SMALL["googlenet"])
    assert "aux1" not in p and len(without) == 344


def test_mismatched_state_dicts_are_errors():
    params, stats = random_variables("resnet18")
    sd = convert.to_torchvision("resnet18", params, stats, **SMALL["resnet18"])
    with pytest.raises(KeyError, match="not converted"):
        convert.from_torchvision("resnet18", {**sd, "extra.weight": np.zeros(3)}, **SMALL["resnet18"])
    with pytest.raises(KeyError, match="layer3.1.conv3.weight|no 'layer"):
        convert.from_torchvision("resnet50", sd)
    with pytest.raises(ValueError, match="no torchvision conversion"):
        convert.layers("resnet20")


def test_cli_writes_a_checkpoint_load_params_reads(tmp_path, capsys):
    params, stats = random_variables("resnet18")
    sd = convert.to_torchvision("resnet18", params, stats, **SMALL["resnet18"])
    np.savez(tmp_path / "r18.npz", **sd)
    out = tmp_path / "ckpt"
    # The CLI converts full-size models; a small state_dict only converts through the API.
    convert.write_checkpoint(str(out), *convert.from_torchvision("resnet18", sd, **SMALL["resnet18"]))
    loaded_params, model_state = checkpoint.load_params(out)
    jax.tree.map(np.testing.assert_array_equal, (loaded_params, model_state["batch_stats"]), (params, stats))
    with pytest.raises(SystemExit):
        convert.main(["--model=resnet20", f"--pth={tmp_path / 'r18.npz'}", f"--out={tmp_path / 'x'}"])
