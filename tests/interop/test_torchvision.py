"""jaxclf models with converted torchvision weights compute torchvision's logits.

Not part of ``make test``: needs torch + torchvision (``make test-interop`` installs them).
torchvision's models are built with random weights (``weights=None``: nothing is downloaded),
batch-norm statistics are randomised so that they matter, and both run in eval mode.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jax.numpy as jnp  # noqa: E402

from jaxclf import convert, models  # noqa: E402
from jaxclf.train import checkpoint  # noqa: E402

TOLERANCE = 1e-4
# (model, input side): small inputs keep the CPU time down; VGG/AlexNet still flatten a
# non-trivial map because the adaptive pool (pool_size 7 / 6) brings it to 7x7 / 6x6.
CASES = [("resnet18", 96), ("resnet50", 64), ("vgg16_bn", 64), ("alexnet", 96), ("googlenet", 96)]


def _torch_model(name):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(1.0, 2.0)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _state_dict(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@functools.cache
def _inputs(side):
    return np.random.default_rng(0).standard_normal((2, 3, side, side)).astype(np.float32)


@pytest.mark.parametrize("name,side", CASES)
def test_logits_match(name, side):
    tmodel = _torch_model(name)
    params, stats = convert.from_torchvision(name, _state_dict(tmodel))
    # torchvision's classifier reads a 7x7 (VGG) / 6x6 (AlexNet) map at every input size.
    kwargs = {"googlenet": {"aux_logits": True}, "vgg16_bn": {"pool_size": 7}, "alexnet": {"pool_size": 6}}.get(name, {})
    fmodel = models.create(name, num_classes=1000, **kwargs)
    x = _inputs(side)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    got = np.asarray(fmodel.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
    diff = float(np.max(np.abs(got - expected)))
    print(f"{name}: max |logit diff| = {diff:.2e} (logit scale {np.abs(expected).max():.2f})")
    assert diff <= TOLERANCE


def test_googlenet_aux_heads_match():
    """The aux heads only run in training; compare them as modules on the same features."""
    from jaxclf.models.googlenet import GOOGLENET_BN_EPSILON, AuxHead
    from jaxclf.models.layers import ConvNormAct

    tmodel = _torch_model("googlenet")
    params, stats = convert.from_torchvision("googlenet", _state_dict(tmodel))
    conv = functools.partial(ConvNormAct, norm="batch", norm_epsilon=GOOGLENET_BN_EPSILON)
    features = np.random.default_rng(1).standard_normal((2, 512, 14, 14)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel.aux1(torch.from_numpy(features)).numpy()
    head = AuxHead(1000, conv=conv)
    variables = {"params": params["aux1"], "batch_stats": stats["aux1"]}
    got = np.asarray(head.apply(variables, jnp.asarray(features.transpose(0, 2, 3, 1)), train=False))
    diff = float(np.max(np.abs(got - expected)))
    print(f"googlenet aux1: max |logit diff| = {diff:.2e}")
    assert diff <= TOLERANCE


def test_round_trip_loads_into_torchvision():
    """to_torchvision's dict loads strictly into torchvision's model (every key, every shape)."""
    tmodel = _torch_model("resnet18")
    params, stats = convert.from_torchvision("resnet18", _state_dict(tmodel))
    back = convert.to_torchvision("resnet18", params, stats)
    fresh = torchvision.models.resnet18(weights=None)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    for k, v in tmodel.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v.numpy())


def test_cli_converts_a_pth_file(tmp_path):
    """``python -m jaxclf.convert`` on a torch.save'd state_dict -> a checkpoint load_params reads."""

    tmodel = _torch_model("resnet18")
    torch.save(tmodel.state_dict(), tmp_path / "resnet18.pth")
    convert.main(["--model=resnet18", f"--pth={tmp_path / 'resnet18.pth'}", f"--out={tmp_path / 'ckpt'}"])
    params, model_state = checkpoint.load_params(tmp_path / "ckpt")
    np.testing.assert_array_equal(np.asarray(params["stem"]["conv"]["kernel"]),
                                  tmodel.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(model_state["batch_stats"]["stem"]["norm"]["var"]),
                                  tmodel.bn1.running_var.numpy())


def test_googlenet_transform_input_equals_unit_normalisation():
    """Pretrained GoogLeNet (transform_input=True) on ImageNet-standardised pixels computes
    what the flax model computes on (pixels - 0.5) / 0.5 (``dataset.normalize='unit'``)."""
    torch.manual_seed(0)
    tmodel = torchvision.models.googlenet(weights=None, init_weights=True, transform_input=True).eval()
    params, stats = convert.from_torchvision("googlenet", _state_dict(tmodel))
    pixels = np.random.default_rng(2).uniform(0, 1, (2, 3, 96, 96)).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    with torch.no_grad():
        expected = tmodel(torch.from_numpy((pixels - mean) / std)).numpy()
    fmodel = models.create("googlenet", num_classes=1000, aux_logits=True)
    unit = ((pixels - 0.5) / 0.5).transpose(0, 2, 3, 1)
    got = np.asarray(fmodel.apply({"params": params, "batch_stats": stats}, jnp.asarray(unit), train=False))
    assert float(np.max(np.abs(got - expected))) <= TOLERANCE
