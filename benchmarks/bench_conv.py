"""Single convolution layers, jaxclf vs PyTorch eager: where the CNN train steps lose.

    python -m benchmarks.bench_conv [--quick]

For each 3x3 layer shape of ResNet-20 (and one VGG layer) at batch 128: the forward
convolution, the input gradient and the kernel gradient, each timed alone (jit for JAX,
``aten.convolution_backward`` with one output for PyTorch), median ms over alternating
blocks. jaxclf's layer is a plain ``lax.conv_general_dilated`` (what ``nn.Conv`` calls) in a
program through ``jaxclf.cpu.optimize``, timed twice: as it runs on one CPU device, on oneDNN
(``jaxclf.cpu.onednn``), and on XLA's convolutions (``JAXCLF_CONV=xla``, as on several
devices: gradients in the channels-last layout, ``jaxclf.cpu.conv``).

Then the reason those XLA gradients are rewritten: the kernel gradient inside a ``lax.scan``
body (how ``train.steps_per_call > 1`` runs steps), JAX's own gradient vs jaxclf's, against
the same gradient at top level.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.bench_train import THREADS, Runner, comparison, measure, time_block

BATCH = 128
PARTS = ("forward", "input gradient", "kernel gradient")
PADS = ((1, 1), (1, 1))  # every layer here is a 3x3 conv padded by 1


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    size: int  # input height = width
    cin: int
    cout: int
    stride: int = 1


LAYERS = (
    Layer("ResNet-20 stage 1, 32x32, 16->16", 32, 16, 16),
    Layer("ResNet-20 stage 2 entry, 32x32, 16->32, stride 2", 32, 16, 32, 2),
    Layer("ResNet-20 stage 2, 16x16, 32->32", 16, 32, 32),
    Layer("ResNet-20 stage 3, 8x8, 64->64", 8, 64, 64),
    Layer("VGG-11 8x8, 256->256", 8, 256, 256),
)


def _data(layer: Layer, batch: int):
    x = jax.random.normal(jax.random.key(0), (batch, layer.size, layer.size, layer.cin))
    return x, jax.random.normal(jax.random.key(1), (3, 3, layer.cin, layer.cout)) / np.sqrt(9 * layer.cin)


@contextlib.contextmanager
def conv_setting(value: str):
    """``JAXCLF_CONV`` while lowering (it is read when a program is lowered)."""
    from jaxclf.cpu import onednn

    old = os.environ.get(onednn.SETTING)
    os.environ[onednn.SETTING] = value
    try:
        yield
    finally:
        os.environ.pop(onednn.SETTING) if old is None else os.environ.update({onednn.SETTING: old})


def compiled_parts(layer: Layer, batch: int = BATCH, setting: str = "auto") -> dict[str, tuple]:
    """(compiled program, its arguments) for the forward / input-gradient / kernel-gradient
    of a convolution through ``jaxclf.cpu.optimize`` on fixed data, under ``JAXCLF_CONV=setting``."""
    from jaxclf import cpu

    strides = (layer.stride, layer.stride)
    x, w = _data(layer, batch)
    dims = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return lax.conv_general_dilated(x, w, strides, PADS, dimension_numbers=dims)

    g = jnp.ones(jax.eval_shape(conv, x, w).shape)
    fns = {
        "forward": cpu.optimize(conv),
        "input gradient": cpu.optimize(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0]),
        "kernel gradient": cpu.optimize(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1]),
    }
    args = {"forward": (x, w), "input gradient": (x, w, g), "kernel gradient": (x, w, g)}
    with conv_setting(setting):
        return {k: (jax.jit(f).lower(*args[k]).compile(), args[k]) for k, f in fns.items()}


def jax_parts(layer: Layer, batch: int = BATCH, setting: str = "auto") -> dict[str, Callable[[], None]]:
    """``compiled_parts`` as calls that block until ready."""
    return {k: (lambda f=f, a=a: jax.block_until_ready(f(*a)))
            for k, (f, a) in compiled_parts(layer, batch, setting).items()}


def torch_parts(layer: Layer, batch: int = BATCH) -> dict[str, Callable[[], None]]:
    """The same three computations in PyTorch eager (NCHW, its native layout)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_train.torch_runner
    import torch

    torch.set_num_threads(THREADS)
    x = torch.randn(batch, layer.cin, layer.size, layer.size)
    w = torch.randn(layer.cout, layer.cin, 3, 3) / np.sqrt(9 * layer.cin)
    stride, pad = [layer.stride] * 2, [1, 1]
    with torch.no_grad():
        g = torch.ones_like(torch.nn.functional.conv2d(x, w, stride=stride, padding=pad))

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(g, x, w, None, stride, pad, [1, 1], False, [0, 0], 1, mask)

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)

    return {"forward": forward, "input gradient": backward([True, False, False]),
            "kernel gradient": backward([False, True, False])}


def _runner(call: Callable[[], None]) -> Runner:
    """A bench_train Runner for one synchronous call (the JAX parts block until ready)."""
    return Runner(call, lambda: None, 0)


def layer_entries(layer: Layer, *, baseline: bool, repeats: int, block_s: float, batch: int = BATCH) -> list[dict]:
    """One entry per part: calls/s of jaxclf (as it runs, and on XLA) and PyTorch, and the
    ratio of the first to PyTorch (no target: these explain the train-step table, they are
    not goals of their own)."""
    ours, xla = jax_parts(layer, batch), jax_parts(layer, batch, "xla")
    theirs = torch_parts(layer, batch) if baseline else {}
    entries = []
    for part in PARTS:
        runners = {"ours": _runner(ours[part]), "xla": _runner(xla[part])}
        runners |= {"theirs": _runner(theirs[part])} if theirs else {}
        per_s = measure(runners, 1, repeats=repeats, block_s=block_s)  # calls/s, alternating blocks
        e = comparison(f"{layer.name}: {part}", per_s["ours"], per_s.get("theirs"), target=None, units="calls/s",
                       kind="conv_layer", layer=dataclasses.asdict(layer), part=part, batch=batch,
                       xla=statistics.median(per_s["xla"]))
        entries.append(e)
    return entries


def scan_entry(layer: Layer, *, length: int = 4, repeats: int = 3, batch: int = BATCH) -> dict:
    """The kernel gradient computed ``length`` times in a ``lax.scan`` body: JAX's own
    gradient (plain ``lax.conv_general_dilated``) vs jaxclf's on XLA, ms per gradient, with
    the top-level time of jaxclf's for reference."""
    from jaxclf import cpu

    strides, dims = (layer.stride, layer.stride), ("NHWC", "HWIO", "NHWC")
    x, w = _data(layer, batch)
    conv = lambda x, w: lax.conv_general_dilated(x, w, strides, PADS, dimension_numbers=dims)  # noqa: E731

    def body(w, _):
        return w - 1e-3 * jax.grad(lambda w: jnp.sum(conv(x, w) ** 2))(w), None

    scanned = lambda w: lax.scan(body, w, None, length=length)[0]  # noqa: E731
    top = lambda w: jax.grad(lambda w: jnp.sum(conv(x, w) ** 2))(w)  # noqa: E731
    ms = {}
    for name, f, n in (("plain", scanned, length), ("ours", cpu.optimize(scanned), length),
                       ("top", cpu.optimize(top), 1)):
        with conv_setting("xla"):  # XLA's convolutions, as jaxclf's CPU pass rewrites them
            f = jax.jit(f).lower(w).compile()
        jax.block_until_ready(f(w))
        call = _runner(lambda: jax.block_until_ready(f(w)))
        ms[name] = statistics.median(time_block(call, 1) * 1e3 / n for _ in range(repeats))
    return {"name": f"{layer.name}: kernel gradient in a lax.scan body", "kind": "conv_scan", "units": "ms",
            "layer": dataclasses.asdict(layer), "batch": batch, "scan_length": length, "jax_grad_in_scan_ms": ms["plain"],
            "jaxclf_grad_in_scan_ms": ms["ours"], "jaxclf_grad_top_level_ms": ms["top"],
            "ours": 1e3 / ms["ours"], "theirs": 1e3 / ms["plain"], "ratio": ms["plain"] / ms["ours"],
            "baseline": "jax_own_gradient_in_scan", "target": None, "met": None}


def run(*, quick: bool = False, baseline: bool = True, log=print) -> list[dict]:
    repeats, block_s = (3, 0.1) if quick else (7, 0.5)
    entries = []
    for layer in LAYERS[:2] if quick else LAYERS:
        log(f"[conv] {layer.name} ...")
        entries += layer_entries(layer, baseline=baseline, repeats=repeats, block_s=block_s)
    log("[conv] kernel gradient in a scan body ...")
    entries.append(scan_entry(LAYERS[0], length=2 if quick else 4, repeats=1 if quick else 3))
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=1, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
