"""jaxclf on a GPU against PyTorch (eager and ``torch.compile``) and a plain Flax ResNet-50,
side by side in one process (issue #19).

    python -m benchmarks.gpu [--quick] [--cases resnet50,lstm] [--no-loop] [--out DIR]
    make bench-gpu                        # BENCH_GPU_ARGS="--quick" for the dry run

Writes ``DIR/RESULTS_gpu.md`` and ``DIR/results_gpu.json`` (default DIR: ``benchmarks/``),
rewritten after every case so that a run cut short keeps what it measured.

Cases (train steps: forward + backward + SGD momentum 0.9, synthetic data, the batch on the
device): ResNet-50 (bf16, batch 256, 224x224; PyTorch: channels_last + autocast bf16), ResNet-20,
VGG-11 (CIFAR head), LSTM and GRU (128 units, 40 steps) at batch 128, and Sketch-RNN at the
paper's size (bi-LSTM 256 encoder, LSTM 512 decoder, z 128, 20 mixtures, Nmax 250, batch 100).
The jaxclf step is ``benchmarks.bench_train``'s (the library's ``make_steps``, jitted with
``cpu.optimize`` and the state donated, as the training loop jits it: on a GPU that lowers to
XLA's own convolutions). Each is timed against ``bench_train``'s PyTorch twins (torchvision's
ResNet-50) in eager mode and under ``torch.compile`` (``mode="reduce-overhead"``, CUDA graphs,
for the small models; the default mode for ResNet-50), and ResNet-50 also against
``flax_resnet()`` below, written as flax's ImageNet example writes it. The parameter counts are
asserted equal. Both frameworks share the GPU: XLA's allocator gets 45% of it
(``XLA_PYTHON_CLIENT_MEM_FRACTION``, unless set); PyTorch may use TF32 for float32 matmuls and
convolutions, as XLA does by default.

Figures: throughput medians over alternating blocks (``bench_train.measure``) and paired ratios
(``bench_train.comparison``); the step's FLOPs (XLA's cost analysis of the jaxclf step, the
same model for every framework) over its time as TFLOP/s, and as a fraction of the bf16 matmul
peak measured in the same run (an 8192^3 ``jnp.dot``); compile times (JAX: lower + compile;
``torch.compile``: its first steps); peak device memory (XLA's ``memory_analysis`` of the
compiled step; PyTorch: ``torch.cuda.max_memory_allocated``). The full training loop against
its bare step (``benchmarks.bench_loop``, LeNet-5 on the in-memory digits) closes the run; it
is skipped, with the reason written out, where the data path cannot load (e.g. it needs a
package the machine lacks).

``--quick`` is a dry run that also works on a CPU: tiny sizes (ResNet-50 with one block per
stage at 32x32, batch 2; small recurrent sizes), 1-2 steps per block; PyTorch on the CPU if it
is installed (``torch.compile`` only on CUDA), else those columns are marked unavailable. Its
figures are not GPU figures and the report says so.

On the lent device machine (see ``../shared/device/README.md``): the image has jax, flax,
optax, orbax, torch and torchvision but not ml-collections or TFDS, which jaxclf imports; run
``bash ../shared/device/wheels.sh`` once in the checkout (wheels into ``.whl/``), then one
device call with ``carry=['.whl']`` and (no ``pip install -e``: the machine's jax is used)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 -m benchmarks.gpu --out $OUT

Not yet timed on a GPU; estimated at about 10 minutes on an H200 (mostly compiling), more than one
device call allows (600 s): split it, e.g. ``--cases resnet50,resnet20,vgg11 --no-loop`` in one
call, then ``--cases lstm,gru,sketch_rnn --merge <the first call's results_gpu.json, copied into
the checkout>`` in the next.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

# JAX and PyTorch share the GPU in this process: XLA's allocator takes 45% of it, not 75%.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import bench_train  # noqa: E402
from benchmarks.bench_train import Case, Runner, comparison, count_params, example_batch, measure, memory_summary  # noqa: E402

HERE = Path(__file__).resolve().parent
PAPER_SKETCH = dict(enc_hidden=256, dec_hidden=512, z_size=128, num_mixtures=20)
QUICK_SKETCH = dict(enc_hidden=8, dec_hidden=16, z_size=4, num_mixtures=2)


@dataclasses.dataclass(frozen=True)
class GpuCase:
    """A ``bench_train.Case`` with its batch, the PyTorch side's settings, and what the dry run
    uses instead (``quick``: a smaller Case and batch)."""

    key: str
    case: Case
    batch: int
    quick: Case
    quick_batch: int
    compile_mode: str | None = "reduce-overhead"  # torch.compile mode; None: the default mode
    bf16: bool = False  # PyTorch: channels_last + autocast bf16 (jaxclf: the model's dtype)
    flax_plain: bool = False  # also time FlaxResNet below


def _resnet50(name: str, shape: tuple, stages: tuple | None = None) -> Case:
    kwargs = (("dtype", "bfloat16"),) + ((("stage_sizes", stages),) if stages else ())
    return Case(name, "resnet50", kwargs, shape, 1000)


CIFAR_VGG = (("hidden", ()), ("pool_size", 1), ("dropout_rate", 0.0))  # as in bench_train
GRU = (("cell", "gru_reset_after"),)
CASES = (
    GpuCase("resnet50", _resnet50("ResNet-50 bf16 224x224x3", (224, 224, 3)), 256,
            _resnet50("ResNet-50 bf16, 1 block per stage, 32x32x3 (dry run)", (32, 32, 3), (1, 1, 1, 1)), 2,
            compile_mode=None, bf16=True, flax_plain=True),
    GpuCase("resnet20", Case("ResNet-20 32x32x3", "resnet20", input_shape=(32, 32, 3)), 128,
            Case("ResNet-20 32x32x3", "resnet20", input_shape=(32, 32, 3)), 2),
    GpuCase("vgg11", Case("VGG-11 32x32x3", "vgg11", CIFAR_VGG, (32, 32, 3)), 128,
            Case("VGG-11 32x32x3", "vgg11", CIFAR_VGG, (32, 32, 3)), 2),
    GpuCase("lstm", Case("LSTM 128, 40 steps", "lstm", (("hidden", 128),), (40, 1)), 128,
            Case("LSTM 128, 5 steps", "lstm", (("hidden", 128),), (5, 1)), 2),
    GpuCase("gru", Case("GRU 128, 40 steps", "rnn_classifier", GRU + (("hidden", 128),), (40, 1)), 128,
            Case("GRU 128, 5 steps", "rnn_classifier", GRU + (("hidden", 128),), (5, 1)), 2),
    GpuCase("sketch_rnn", Case("Sketch-RNN 256/512/z128/M20, Nmax 250 (paper)", "sketch_rnn",
                               tuple(PAPER_SKETCH.items()), (250, 5), 1, "sketch"), 100,
            Case("Sketch-RNN 8/16/z4/M2, Nmax 12", "sketch_rnn", tuple(QUICK_SKETCH.items()), (12, 5), 1, "sketch"), 2),
)


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


# ----------------------------------------------------------------------------- JAX sides


def _timed_compile(step, state, data, info: dict):
    t0 = time.perf_counter()
    lowered = step.lower(state, data)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    info.update(lower_s=t1 - t0, compile_s=time.perf_counter() - t1, memory=memory_summary(compiled),
                flops=_flops(compiled))
    return compiled


def _flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and cost.get("flops") else None


def jaxclf_runner(case: Case, batch: int) -> Runner:
    """``bench_train``'s jaxclf step (the library's own path), compiled ahead of time."""
    from jaxclf import cpu, models
    from jaxclf.train import steps as steps_lib

    classes = {"num_classes": case.num_classes} if "num_classes" in models.describe(case.model) else {}
    model = models.create(case.model, **classes, **case.model_kwargs)
    if jax.default_backend() == "cpu":
        model = cpu.tune(model)
    tx = bench_train._optimizer()
    init_key, step_key = jax.random.split(jax.random.key(0))
    example = jnp.zeros((1, *case.input_shape), jnp.float32)
    state = jax.jit(functools.partial(steps_lib.init_state, model, tx, example, init_key))()
    data = jax.device_put(example_batch(case, batch))
    step = jax.jit(cpu.optimize(bench_train.jax_step_fn(case, model, tx, step_key)), donate_argnums=0)
    info: dict = {}
    compiled = _timed_compile(step, state, data, info)
    return _jax_loop(compiled, state, data, count_params(state.params), info)


def _jax_loop(compiled, state, data, num_params: int, info: dict) -> Runner:
    holder = {"state": state}

    def run():
        holder["state"], _ = compiled(holder["state"], data)

    return Runner(run, lambda: jax.block_until_ready(holder["state"]), num_params, info)


def flax_resnet():
    """ResNet-v1.5 as flax's examples/imagenet/models.py writes it (nn.Conv, nn.BatchNorm with
    momentum 0.9 and epsilon 1e-5, a 7x7 stem and 3x3 max pool, bottleneck blocks with the stride
    on the 3x3 conv, projection shortcuts), built on first use."""
    import flax.linen as nn

    class Bottleneck(nn.Module):
        filters: int
        conv: Any
        norm: Any
        strides: tuple = (1, 1)

        @nn.compact
        def __call__(self, x):
            residual = x
            y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
            y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
            y = self.norm(scale_init=nn.initializers.zeros_init())(self.conv(self.filters * 4, (1, 1))(y))
            if residual.shape != y.shape:
                residual = self.norm(name="norm_proj")(self.conv(self.filters * 4, (1, 1), self.strides,
                                                                 name="conv_proj")(residual))
            return nn.relu(residual + y)

    class ResNet(nn.Module):
        stage_sizes: Sequence[int]
        num_classes: int
        num_filters: int = 64
        dtype: Any = jnp.float32

        @nn.compact
        def __call__(self, x, train: bool = True):
            conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
            norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                     dtype=self.dtype)
            x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            for i, block_size in enumerate(self.stage_sizes):
                for j in range(block_size):
                    strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                    x = Bottleneck(self.num_filters * 2**i, conv, norm, strides)(x)
            x = jnp.mean(x, axis=(1, 2))
            x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
            return jnp.asarray(x, self.dtype)

    return ResNet


def flax_plain_runner(case: Case, batch: int) -> Runner:
    """The plain Flax ResNet-50 trained as the flax example trains it: softmax cross-entropy in
    float32, optax SGD with momentum, batch statistics updated, jitted with the state donated."""
    import optax

    stages = case.model_kwargs.get("stage_sizes", (3, 4, 6, 3))
    model = flax_resnet()(stage_sizes=stages, num_classes=case.num_classes, dtype=jnp.bfloat16)
    tx = optax.sgd(bench_train.LR, momentum=bench_train.MOMENTUM)
    variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, *case.input_shape)), train=False))()
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"],
             "opt": jax.jit(tx.init)(variables["params"])}
    host = example_batch(case, batch)
    data = jax.device_put({"inputs": host["inputs"], "labels": host["labels"]})

    def step(state, batch):
        def loss_fn(params):
            logits, new = model.apply({"params": params, "batch_stats": state["batch_stats"]}, batch["inputs"],
                                      train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["labels"])
            return loss.mean(), new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "batch_stats": stats, "opt": opt}, loss

    info: dict = {}
    compiled = _timed_compile(jax.jit(step, donate_argnums=0), state, data, info)
    return _jax_loop(compiled, state, data, count_params(state["params"]), info)


# ----------------------------------------------------------------------------- PyTorch sides


def torch_available() -> str | None:
    """None if PyTorch can run here, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"torch is not installed ({e})"
    return None


def _torch_model(gcase: GpuCase, case: Case):
    """(module, loss_fn(model, x, y, step)) for ``case``: ``bench_train``'s twins, torchvision's
    ResNet-50 (bottleneck ResNet with ``case``'s stage sizes for the dry run)."""
    if case.model != "resnet50":
        return bench_train.torch_twins()[case.model](case)
    from torch.nn import functional as F
    from torchvision.models import resnet

    stages = list(case.model_kwargs.get("stage_sizes", (3, 4, 6, 3)))
    model = resnet.ResNet(resnet.Bottleneck, stages, num_classes=case.num_classes)
    return model, lambda model, x, y, step: F.cross_entropy(model(x), y)


def torch_runner(gcase: GpuCase, case: Case, batch: int, *, compiled: bool) -> Runner:
    """PyTorch eager (or ``torch.compile``d) steps on the device: ``zero_grad``, forward (under
    bf16 autocast for ``gcase.bf16``) and loss, ``backward``, ``SGD.step`` (foreach). A compiled
    runner's first 3 steps (compiling, CUDA graph recording) are timed as its compile time.
    float32 matmuls and convolutions may use TF32 on CUDA, as XLA's default precision does."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(min(bench_train.THREADS, os.cpu_count() or 1))
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
        allocated = torch.cuda.memory_allocated(device)
    torch.manual_seed(0)
    model, loss_fn = _torch_model(gcase, case)
    x, y = bench_train.to_torch_layout(case, example_batch(case, batch))
    layout = torch.channels_last if x.ndim == 4 else torch.contiguous_format
    model = model.to(device, memory_format=layout)
    x, y = x.to(device, memory_format=layout), y.to(device)
    model.train()
    with torch.no_grad():
        model(x)  # materialises lazy layers
    num_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=bench_train.LR, momentum=bench_train.MOMENTUM, foreach=True)
    forward = torch.compile(model, mode=gcase.compile_mode) if compiled else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if gcase.bf16 else contextlib.nullcontext
    counter = [0]

    def run():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(forward, x, y, counter[0])
        loss.backward()
        opt.step()
        counter[0] += 1

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    info = {"device": str(device), "compiled": compiled, "mode": gcase.compile_mode if compiled else None,
            "channels_last": x.ndim == 4, "autocast_bf16": gcase.bf16, "tf32": device.type == "cuda"}
    t0 = time.perf_counter()
    for _ in range(3):  # compiling and CUDA graph recording under torch.compile; cuDNN autotuning
        run()
    sync()
    info["first_steps_s" if not compiled else "compile_s"] = time.perf_counter() - t0
    if device.type == "cuda":  # what this runner added to what was allocated before it was built
        info["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device) - allocated
    return Runner(run, sync, num_params, info)


# ----------------------------------------------------------------------------- measuring


def matmul_peak(n: int, *, repeats: int = 5, block: int = 10) -> dict:
    """TFLOP/s of an n^3 bf16 matmul (the peak the models' TFLOP/s are compared with): the
    median over ``repeats`` blocks of ``block`` products after a compiling call."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [dot(a, b) for _ in range(block)]
        jax.block_until_ready(out)
        seconds.append((time.perf_counter() - t0) / block)
    s = statistics.median(seconds)
    return {"n": n, "dtype": "bfloat16", "seconds": s, "tflops": 2 * n**3 / s / 1e12, "samples_s": seconds}


def run_case(gcase: GpuCase, *, quick: bool, peak_tflops: float | None, log=print) -> dict:
    """One model: every side's runner, interleaved blocks, the paired ratios against jaxclf."""
    case, batch = (gcase.quick, gcase.quick_batch) if quick else (gcase.case, gcase.batch)
    repeats, block_s = (2, 0.05) if quick else (5, 1.0)
    runners: dict[str, Runner] = {"jaxclf": jaxclf_runner(case, batch)}
    unavailable: dict[str, str] = {}
    if gcase.flax_plain:
        runners["flax_plain"] = flax_plain_runner(case, batch)
    why = torch_available()
    for key, compiled in (("torch_eager", False), ("torch_compile", True)):
        if why is None and case.model == "resnet50" and importlib.util.find_spec("torchvision") is None:
            why = "torchvision is not installed"
        if why is not None:
            unavailable[key] = why
        elif compiled and not on_gpu():
            unavailable[key] = "torch.compile is measured on CUDA only (a CPU dry run would spend minutes compiling)"
        else:
            runners[key] = torch_runner(gcase, case, batch, compiled=compiled)
    ours = runners["jaxclf"]
    for key, r in runners.items():
        if r.num_params != ours.num_params:
            raise AssertionError(f"{case.name}: jaxclf has {ours.num_params:,} parameters, {key} {r.num_params:,}")
    samples = measure(runners, batch, repeats=repeats, block_s=block_s, budget_s=10 if quick else 60)
    flops = ours.info.get("flops")
    sides = {}
    for key, r in runners.items():
        median = statistics.median(samples[key])
        sides[key] = {"examples_per_s": median, "ms_per_step": 1e3 * batch / median,
                      "tflops": flops * median / batch / 1e12 if flops else None,
                      "info": dict(r.info), "samples": samples[key]}
        if peak_tflops and sides[key]["tflops"]:
            sides[key]["fraction_of_matmul_peak"] = sides[key]["tflops"] / peak_tflops
    ratios = {key: comparison(f"{case.name}: jaxclf vs {key}", samples["jaxclf"], samples[key], target=1.0,
                              baseline=key) for key in runners if key != "jaxclf"}
    entry = {"key": gcase.key, "name": case.name, "model": case.model, "batch": batch, "params": ours.num_params,
             "flops_per_step": flops, "sides": sides, "unavailable": unavailable,
             "ratios": {k: {f: v[f] for f in ("ratio", "ratio_of_medians", "target", "met")} for k, v in ratios.items()}}
    log(f"[gpu] {case.name}: " + ", ".join(f"{k} {s['ms_per_step']:.2f} ms" for k, s in sides.items()))
    return entry


def run_loop(*, quick: bool, log=print) -> list[dict]:
    """``bench_loop``'s LeNet-5 cases (the loop's in-memory data path) on this device; an entry
    marked skipped, with the reason, if the data path cannot load here."""
    try:
        from benchmarks import bench_loop
        from jaxclf.train import loop  # noqa: F401  (its imports: config, data)
    except ImportError as e:
        return [{"kind": "loop", "skipped": f"the training loop cannot be imported here: {e!r}"}]
    cases = bench_loop.CASES[:1] if quick else bench_loop.CASES[:2]
    out = []
    with tempfile.TemporaryDirectory(prefix="jaxclf-bench-gpu-loop-") as tmp:
        for case in cases:
            log(f"[gpu] loop: {case.name} ...")
            try:
                entry = bench_loop.compare_case(case, Path(tmp), quick=quick, repeats=1 if quick else 5)
            except ImportError as e:  # e.g. the dataset's builder needs TensorFlow
                entry = {"name": case.name, "kind": "loop", "skipped": f"its dataset cannot load here: {e!r}"}
            entry["target"] = 0.97
            entry["met"] = None if entry.get("ratio") is None else entry["ratio"] >= 0.97
            out.append(entry)
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    device = jax.devices()[0]
    versions = {d: _version(d) for d in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "torchvision")}
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": device.platform, "device": getattr(device, "device_kind", str(device)),
            "num_devices": jax.device_count(), "python": platform.python_version(), "host": platform.node(),
            "cpu_count": os.cpu_count(), "versions": versions, "argv": sys.argv[1:]}


# ----------------------------------------------------------------------------- report


def _fmt(x, spec: str = ".2f", none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def _mib(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:,.0f}"


def markdown(results: dict) -> str:
    env, quick = results["environment"], results["quick"]
    gpu = env["platform"] == "gpu" and not quick
    lines = ["# jaxclf on a GPU: train steps vs PyTorch and plain Flax (`make bench-gpu`)", ""]
    if not gpu:
        lines += [f"**Dry run ({'--quick, ' if quick else ''}{env['platform']}): tiny sizes, 1-2 steps per block. These "
                  "are not GPU figures; the GPU figures are still to be measured with `make bench-gpu` on a CUDA "
                  "machine.**", ""]
    v = env["versions"]
    lines += [f"{env['date']}, {env['device']} ({env['platform']}), jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, "
              f"orbax {v['orbax-checkpoint']}, torch {v['torch']}, torchvision {v['torchvision']}.", ""]
    mm = results.get("matmul")
    if mm:
        lines += [f"bf16 matmul peak ({mm['n']}^3, same run): {mm['tflops']:.3g} TFLOP/s.", ""]
    lines += ["Medians of alternating blocks; a ratio is the median of paired per-block ratios jaxclf / other "
              "(> 1: jaxclf faster). TFLOP/s from XLA's cost analysis of the jaxclf step; % peak of the matmul above.",
              "", "| model | batch | jaxclf ms | jaxclf ex/s | TFLOP/s | % peak | compile s | peak MiB "
              "| flax plain ms (ratio) | torch eager ms (ratio) | torch.compile ms (ratio) | torch.compile s | torch peak MiB (eager / compile) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in results["cases"]:
        s, r, u = e["sides"], e["ratios"], e["unavailable"]
        ours = s["jaxclf"]
        mem = (ours["info"].get("memory") or {}).get("peak_bytes")
        frac = ours.get("fraction_of_matmul_peak")

        def other(key):
            if key in s:
                return f"{s[key]['ms_per_step']:.2f} ({r[key]['ratio']:.2f}x)"
            return "unavailable" if key in u else "-"

        tc = s.get("torch_compile", {}).get("info", {})
        te = s.get("torch_eager", {}).get("info", {})
        lines.append(f"| {e['name']} | {e['batch']} | {ours['ms_per_step']:.2f} | {ours['examples_per_s']:,.0f} | "
                     f"{_fmt(ours['tflops'], '.3g')} | {_fmt(None if frac is None else 100 * frac, '.0f')} | "
                     f"{ours['info']['compile_s']:.1f} | {_mib(mem)} | {other('flax_plain')} | {other('torch_eager')} | "
                     f"{other('torch_compile')} | {_fmt(tc.get('compile_s'), '.1f')} | "
                     f"{_mib(te.get('peak_memory_bytes'))} / {_mib(tc.get('peak_memory_bytes'))} |")
    notes = sorted({f"{k}: {why}" for e in results["cases"] for k, why in e["unavailable"].items()})
    if notes:
        lines += ["", "Unavailable here: " + "; ".join(notes) + "."]
    loop = results.get("loop") or []
    if loop:
        lines += ["", "| training loop vs its bare step | loop ex/s | bare ex/s | ratio (target 0.97) |", "|---|---:|---:|---:|"]
        for e in loop:
            if "skipped" in e:
                lines.append(f"| {e.get('name', 'loop')} | skipped | | {e['skipped']} |")
            else:
                lines.append(f"| {e['name']} | {e['ours']:,.0f} | {e['theirs']:,.0f} | {e['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results_gpu.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "RESULTS_gpu.md").write_text(markdown(results))


def run(*, quick: bool, cases: Sequence[str] | None, loop: bool, out: Path, merge: str | None = None,
        log=print) -> dict:
    """Measures the matmul peak, then each case, then the loop; writes after each. ``merge``: a
    results_gpu.json whose other cases are kept (a run split over several calls)."""
    unknown = set(cases or ()) - {c.key for c in CASES}
    if unknown:
        raise ValueError(f"unknown case(s) {sorted(unknown)}; valid: {', '.join(c.key for c in CASES)}")
    results: dict[str, Any] = {"environment": environment(), "quick": quick, "cases": [], "loop": []}
    earlier = json.loads(Path(merge).read_text()) if merge else {}
    if earlier:  # an earlier call's cases (the run split over calls); re-measured ones are replaced
        results["cases"] = [e for e in earlier["cases"] if not cases or e["key"] not in cases]
    results["matmul"] = matmul_peak(256 if quick else 8192, repeats=2 if quick else 5)
    log(f"[gpu] bf16 matmul {results['matmul']['n']}^3: {results['matmul']['tflops']:.3g} TFLOP/s")
    write(results, out)
    for gcase in CASES:
        if cases and gcase.key not in cases:
            continue
        results["cases"].append(run_case(gcase, quick=quick, peak_tflops=results["matmul"]["tflops"], log=log))
        write(results, out)
    if loop:
        results["loop"] = run_loop(quick=quick, log=log)
    else:
        results["loop"] = earlier.get("loop") or [{"kind": "loop", "skipped": "not requested (--no-loop)"}]
    write(results, out)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="dry run: tiny sizes, 1-2 steps (works on a CPU)")
    parser.add_argument("--cases", default="", help=f"comma-separated subset of {','.join(c.key for c in CASES)}")
    parser.add_argument("--no-loop", action="store_true", help="skip the training loop vs bare step comparison")
    parser.add_argument("--out", default=str(HERE), help="directory for RESULTS_gpu.md and results_gpu.json")
    parser.add_argument("--merge", default=None, help="an earlier results_gpu.json whose other cases are kept")
    args = parser.parse_args(argv)
    if not args.quick and not on_gpu():
        parser.error(f"no GPU here (JAX's backend is {jax.default_backend()!r}); use --quick for a dry run")
    results = run(quick=args.quick, cases=[c for c in args.cases.split(",") if c] or None, loop=not args.no_loop,
                  out=Path(args.out), merge=args.merge)
    print(markdown(results))


if __name__ == "__main__":
    main()
