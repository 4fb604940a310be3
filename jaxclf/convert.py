"""torchvision <-> jaxclf weight conversion for ResNet-18..152, VGG-11..19 (+BN), AlexNet, GoogLeNet.

One table per family lists the layers as ``(kind, flax path, torch prefix)``; both directions
walk the same table, so a conversion and its inverse cannot disagree about names. Layouts:

* conv kernels: torch OIHW <-> flax HWIO;
* dense kernels: torch (out, in) <-> flax (in, out);
* the first dense layer after a flatten (AlexNet/VGG classifier, GoogLeNet aux heads): torch
  flattens NCHW feature maps in (c, h, w) order, flax NHWC ones in (h, w, c) order, so the
  input axis is permuted as well;
* batch norm: weight/bias -> params scale/bias, running_mean/var -> batch_stats mean/var
  (``num_batches_tracked`` is dropped, and written as 0 on the way back).

Numerics: GoogLeNet's pretrained torchvision model sets ``transform_input=True``, which maps
ImageNet-standardised inputs to (x - 0.5) / 0.5. The flax model has no such step: feed it
inputs normalised with mean = std = 0.5 (``dataset.normalize='unit'``) and it computes what
torchvision's does. GoogLeNet's BN eps is 1e-3 in both.

CLI: ``python -m jaxclf.convert --model=resnet50 --pth=resnet50.pth --out=DIR`` writes an orbax
checkpoint that :func:`jaxclf.train.checkpoint.load_params` (and ``transfer.init_from``) reads.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import numpy as np

from jaxclf import models

CONV, CONV_BIAS, BN, DENSE, DENSE_FLAT = "conv", "conv_bias", "bn", "dense", "dense_flat"


class Layer(NamedTuple):
    kind: str
    flax: str  # '/'-joined path inside params (and batch_stats for BN)
    torch: str  # state_dict key prefix
    channels: int = 0  # DENSE_FLAT: channels of the flattened feature map


# --------------------------------------------------------------------------- layer tables


def _conv_bn(flax: str, torch_conv: str, torch_bn: str) -> Iterator[Layer]:
    yield Layer(CONV, f"{flax}/conv", torch_conv)
    yield Layer(BN, f"{flax}/norm", torch_bn)


def _resnet_layers(m) -> Iterator[Layer]:
    if m.stem != "imagenet" or m.shortcut != "projection" or m.norm != "batch":
        raise ValueError("only the ImageNet ResNets (resnet18..152) have torchvision counterparts")
    yield from _conv_bn("stem", "conv1", "bn1")
    convs, expansion = (2, 1) if m.block == "basic" else (3, 4)
    channels = m.widths[0]
    for i, (size, width) in enumerate(zip(m.stage_sizes, m.widths)):
        for j in range(size):
            block, torch = f"stage{i + 1}_block{j + 1}", f"layer{i + 1}.{j}"
            for k in range(convs):
                yield from _conv_bn(f"{block}/ConvNormAct_{k}", f"{torch}.conv{k + 1}", f"{torch}.bn{k + 1}")
            if (i > 0 and j == 0) or channels != width * expansion:
                yield from _conv_bn(f"{block}/downsample", f"{torch}.downsample.0", f"{torch}.downsample.1")
            channels = width * expansion
    yield Layer(DENSE, "head", "fc")


def _sequential_convs(m, specs) -> Iterator[Layer]:
    """torchvision's ``features`` Sequential: conv [bn] relu [pool]; ``specs`` says where pools are."""
    index = 0
    for n, pooled in enumerate(specs):
        yield Layer(CONV_BIAS, f"ConvNormAct_{n}/conv", f"features.{index}")
        if m.norm == "batch":
            yield Layer(BN, f"ConvNormAct_{n}/norm", f"features.{index + 1}")
        index += (3 if m.norm == "batch" else 2) + int(pooled)


def _classifier(m, torch_indices) -> Iterator[Layer]:
    if len(m.hidden) != 2:
        raise ValueError("torchvision's classifier has two hidden layers")
    first, second, head = torch_indices
    yield Layer(DENSE_FLAT, "fc1", f"classifier.{first}", m.widths[-1])
    yield Layer(DENSE, "fc2", f"classifier.{second}")
    yield Layer(DENSE, "head", f"classifier.{head}")


def _vgg_layers(m) -> Iterator[Layer]:
    pools = [k == depth - 1 for depth in m.stage_depths for k in range(depth)]
    yield from _sequential_convs(m, pools)
    yield from _classifier(m, (0, 3, 6))


def _alexnet_layers(m) -> Iterator[Layer]:
    if m.norm != "none":
        raise ValueError("torchvision's AlexNet has no normalisation layers")
    yield from _sequential_convs(m, (True, True, False, False, True))
    yield from _classifier(m, (1, 4, 6))


def _googlenet_layers(m, aux: bool) -> Iterator[Layer]:
    from jaxclf.models.googlenet import INCEPTION

    if m.norm != "batch" or m.wide_kernel != 3:
        raise ValueError("torchvision's GoogLeNet has batch norm and a 3x3 'wide' branch")
    for name in ("conv1", "conv2", "conv3"):
        yield from _conv_bn(name, f"{name}.conv", f"{name}.bn")
    # flax names modules in construction order: for conv(c3, 3)(conv(r3, 1)(x)) the outer
    # 3x3 conv is built (and numbered) before the inner 1x1 reduction.
    branches = ("branch1", "branch2.1", "branch2.0", "branch3.1", "branch3.0", "branch4.1")
    for block in INCEPTION:
        for k, branch in enumerate(branches):
            prefix = f"inception{block}.{branch}"
            yield from _conv_bn(f"inception{block}/ConvNormAct_{k}", f"{prefix}.conv", f"{prefix}.bn")
    if aux:
        channels = max(1, round(128 * m.width_mult))
        for head in ("aux1", "aux2"):
            yield from _conv_bn(f"{head}/ConvNormAct_0", f"{head}.conv.conv", f"{head}.conv.bn")
            yield Layer(DENSE_FLAT, f"{head}/Dense_0", f"{head}.fc1", channels)
            yield Layer(DENSE, f"{head}/Dense_1", f"{head}.fc2")
    yield Layer(DENSE, "fc", "fc")


SUPPORTED = (
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
    *(f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")),
    "alexnet",
    "googlenet",
)


def layers(model_name: str, *, aux: bool = False, **model_kwargs) -> list[Layer]:
    """The conversion table of ``model_name`` (built with ``model_kwargs``, e.g. smaller widths).

    ``aux`` includes GoogLeNet's auxiliary heads.
    """
    if model_name not in SUPPORTED:
        raise ValueError(f"no torchvision conversion for {model_name!r}; supported: {', '.join(SUPPORTED)}")
    m = models.create(model_name, num_classes=1000, **model_kwargs)
    if model_name.startswith("resnet"):
        return list(_resnet_layers(m))
    if model_name.startswith("vgg"):
        return list(_vgg_layers(m))
    if model_name == "alexnet":
        return list(_alexnet_layers(m))
    return list(_googlenet_layers(m, aux))


# --------------------------------------------------------------------------- array layouts


def _flat_to_flax(w: np.ndarray, channels: int) -> np.ndarray:
    """torch (out, C*H*W) in (c, h, w) order -> flax (H*W*C, out) in (h, w, c) order."""
    out, n = w.shape
    side = math.isqrt(n // channels)
    if channels * side * side != n:
        raise ValueError(f"cannot split {n} flattened inputs into {channels} channels of a square map")
    return w.reshape(out, channels, side, side).transpose(2, 3, 1, 0).reshape(n, out)


def _flat_to_torch(k: np.ndarray, channels: int) -> np.ndarray:
    n, out = k.shape
    side = math.isqrt(n // channels)
    return k.reshape(side, side, channels, out).transpose(3, 2, 0, 1).reshape(out, n)


def _get(tree: dict, path: str):
    for key in path.split("/"):
        tree = tree[key]
    return tree


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _has_aux(model_name: str, keys) -> bool:
    return model_name == "googlenet" and any(k.startswith("aux1.") for k in keys)


def from_torchvision(model_name: str, state_dict: dict[str, Any], **model_kwargs) -> tuple[dict, dict]:
    """(params, batch_stats) for jaxclf's ``model_name`` from a torchvision state_dict.

    Values may be numpy arrays or torch tensors. Every key must be used (except
    ``num_batches_tracked``) and every expected key present; the error names the
    differences, which catches a wrong ``model_name``.
    """
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in state_dict.items()}
    table = layers(model_name, aux=_has_aux(model_name, sd), **model_kwargs)
    params: dict = {}
    stats: dict = {}
    used = set()

    def take(key):
        if key not in sd:
            raise KeyError(f"{model_name}: state_dict has no {key!r}")
        used.add(key)
        return sd[key]

    for layer in table:
        t, f = layer.torch, layer.flax
        if layer.kind in (CONV, CONV_BIAS):
            _set(params, f"{f}/kernel", take(f"{t}.weight").transpose(2, 3, 1, 0))
            if layer.kind == CONV_BIAS:
                _set(params, f"{f}/bias", take(f"{t}.bias"))
        elif layer.kind == BN:
            _set(params, f"{f}/scale", take(f"{t}.weight"))
            _set(params, f"{f}/bias", take(f"{t}.bias"))
            _set(stats, f"{f}/mean", take(f"{t}.running_mean"))
            _set(stats, f"{f}/var", take(f"{t}.running_var"))
            used.add(f"{t}.num_batches_tracked")
        else:
            w = take(f"{t}.weight")
            kernel = _flat_to_flax(w, layer.channels) if layer.kind == DENSE_FLAT else w.T
            _set(params, f"{f}/kernel", kernel)
            _set(params, f"{f}/bias", take(f"{t}.bias"))
    unused = sorted(set(sd) - used)
    if unused:
        raise KeyError(f"{model_name}: {len(unused)} state_dict keys not converted, e.g. {unused[:5]}")
    return _float32(params), _float32(stats)


def _float32(tree: dict) -> dict:
    return {k: _float32(v) if isinstance(v, dict) else np.asarray(v, np.float32) for k, v in tree.items()}


def to_torchvision(model_name: str, params: dict, batch_stats: dict | None = None, **model_kwargs) -> dict[str, np.ndarray]:
    """The torchvision state_dict (numpy arrays, torchvision's key names) of jaxclf params.

    GoogLeNet's aux heads are written when ``params`` has them.
    """
    batch_stats = batch_stats or {}
    table = layers(model_name, aux=model_name == "googlenet" and "aux1" in params, **model_kwargs)
    sd: dict[str, np.ndarray] = {}
    for layer in table:
        t, f = layer.torch, layer.flax
        if layer.kind in (CONV, CONV_BIAS):
            sd[f"{t}.weight"] = np.asarray(_get(params, f"{f}/kernel")).transpose(3, 2, 0, 1)
            if layer.kind == CONV_BIAS:
                sd[f"{t}.bias"] = np.asarray(_get(params, f"{f}/bias"))
        elif layer.kind == BN:
            sd[f"{t}.weight"] = np.asarray(_get(params, f"{f}/scale"))
            sd[f"{t}.bias"] = np.asarray(_get(params, f"{f}/bias"))
            sd[f"{t}.running_mean"] = np.asarray(_get(batch_stats, f"{f}/mean"))
            sd[f"{t}.running_var"] = np.asarray(_get(batch_stats, f"{f}/var"))
            sd[f"{t}.num_batches_tracked"] = np.zeros((), np.int64)
        else:
            kernel = np.asarray(_get(params, f"{f}/kernel"))
            sd[f"{t}.weight"] = _flat_to_torch(kernel, layer.channels) if layer.kind == DENSE_FLAT else kernel.T
            sd[f"{t}.bias"] = np.asarray(_get(params, f"{f}/bias"))
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


# --------------------------------------------------------------------------- files and CLI


def read_pth(path: str) -> dict[str, np.ndarray]:
    """A state_dict from a ``.pth`` file (needs torch), or from an ``.npz`` of the same keys."""
    if str(path).endswith(".npz"):
        with np.load(path) as f:
            return dict(f)
    try:
        import torch
    except ImportError:
        raise ImportError(
            "reading .pth files needs torch (pip install 'jaxclf[interop]'); or save the "
            "state_dict as .npz: np.savez(f, **{k: v.numpy() for k, v in sd.items()})"
        ) from None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    return {k: v.numpy() for k, v in sd.items()}


def write_checkpoint(out: str, params: dict, batch_stats: dict) -> None:
    """An orbax checkpoint (step 0) in the layout the training loop saves: {'state': {...}}."""
    from jaxclf.train import checkpoint

    model_state = {"batch_stats": batch_stats} if batch_stats else {}
    mngr = checkpoint.manager(out, keep=1)
    checkpoint.save(mngr, 0, {"state": {"params": params, "model_state": model_state}})
    mngr.wait_until_finished()
    mngr.close()


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jaxclf.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=SUPPORTED)
    parser.add_argument("--pth", required=True, help="torchvision state_dict (.pth, or .npz of numpy arrays)")
    parser.add_argument("--out", required=True, help="directory for the orbax checkpoint")
    args = parser.parse_args(argv)
    params, stats = from_torchvision(args.model, read_pth(args.pth))
    write_checkpoint(args.out, params, stats)
    count = sum(int(np.prod(v.shape)) for v in _leaves(params))
    print(f"wrote {args.model} ({count:,} parameters) to {args.out}")


def _leaves(tree):
    for v in tree.values():
        yield from _leaves(v) if isinstance(v, dict) else (v,)


if __name__ == "__main__":
    main()
