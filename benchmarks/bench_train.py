"""jaxclf's jitted train step vs the same architecture in PyTorch eager, side by side.

    python -m benchmarks.bench_train [--quick] [--models lenet5,lstm]

One training step = forward + backward + SGD with momentum 0.9 at batch 128. The JAX side is
the library's own path: ``jaxclf.models.create`` -> ``jaxclf.train.optim.optimizer`` ->
``jaxclf.train.steps.init_state`` + ``make_steps`` (its train step also computes the batch's
metric state and the global gradient norm, as in every training run), jitted
with the state donated, as the training loop does. Sketch-RNN trains with its own loss
(``jaxclf.models.sketch_rnn.loss_fn``, task 'generative' in ``make_steps``), with the same
optimizer. The PyTorch twins are written below with the same layer shapes (the parameter
counts are asserted equal) and trained the way a PyTorch user would: ``zero_grad``,
``loss.backward()``, ``SGD.step()``.

Throughput is examples/s, the median over repeats of a block of steps (about ``block_s``
seconds) after warm-up; the two frameworks alternate block by block in one process on the
same 2 cores, so machine load hits both alike. The ratio is the median of the per-repeat
ratios (each repeat times both sides back to back; see ``comparison``). That process runs
under jaxclf's CPU process settings (``jaxclf.cpu.configure_process``, see ``benchmarks/__init__.py``), which
speed up PyTorch's eager steps as well (Sketch-RNN 773 -> 968 ex/s, LSTM 5,692 -> 7,205): the
baseline is not run with glibc's defaults, which would favour jaxclf. Threads: ``torch.set_num_threads(2)`` with
``OMP_WAIT_POLICY=PASSIVE`` unless set (see ``torch_runner``); XLA's
CPU client runs each program on its own intra-op thread pool sized to the machine's cores
(2 here), with one host thread dispatching asynchronously; jaxclf's convolutions inside it
run on oneDNN (``jaxclf.cpu.onednn``: OpenMP, one thread per core, passive wait), the library
PyTorch's convolutions use too. The jaxclf step is jitted as the training loop jits it on a
CPU: ``jaxclf.cpu.optimize`` over the step, and the model as ``jaxclf.cpu.tune`` sets it.

Also measured: JAX compile time (``jit(step).lower(...)`` and ``.compile()``, timed
separately; ResNet-50 at 224x224 is compiled but not run), the compiled executable's
``memory_analysis()`` (arguments + outputs - donated aliases + temporaries: the XLA buffer
peak) and, for PyTorch, in a fresh subprocess per model, the growth of the resident set's
high-water mark (``VmHWM``, reset after the first step) over the RSS before the model was
built, across 3 more steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

BATCH = 128
LR, MOMENTUM = 0.01, 0.9
THREADS = 2  # PyTorch intra-op threads; XLA's CPU pool also has one thread per core (2 here)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model to compare: the registry name and kwargs, per-example input shape (NHWC
    images, (time, features) sequences), and whether it is a classifier or Sketch-RNN."""

    name: str
    model: str
    kwargs: tuple = ()
    input_shape: tuple = ()
    num_classes: int = 10
    kind: str = "classify"  # classify | sketch
    run: bool = True  # False: compile only (ResNet-50)

    @property
    def model_kwargs(self) -> dict:
        return dict(self.kwargs)


SKETCH = dict(enc_hidden=128, dec_hidden=256, z_size=32, num_mixtures=10)
CASES = (
    Case("LeNet-5 28x28x1", "lenet5", input_shape=(28, 28, 1)),
    Case("ResNet-20 32x32x3", "resnet20", input_shape=(32, 32, 3)),
    # No CIFAR-size VGG is registered: vgg11 with the CIFAR head of configs/vgg16_bn_cifar10.py
    # (1x1x512 features -> one 512 -> 10 layer, no 4096-4096 block, no dropout).
    Case("VGG-11 32x32x3", "vgg11", (("hidden", ()), ("pool_size", 1), ("dropout_rate", 0.0)), (32, 32, 3)),
    Case("LSTM 128, 40 steps", "lstm", (("hidden", 128),), (40, 1)),
    # PyTorch's GRU convention (reset gate after the product), as configs/mnist1d_gru.py uses.
    Case("GRU 128, 40 steps", "rnn_classifier", (("cell", "gru_reset_after"), ("hidden", 128)), (40, 1)),
    Case("Sketch-RNN 128/256/z32/M10, Nmax 64", "sketch_rnn", tuple(SKETCH.items()), (64, 5), 1, "sketch"),
    Case("ResNet-50 224x224x3 (compile only)", "resnet50", input_shape=(224, 224, 3), num_classes=1000, run=False),
)


@dataclasses.dataclass
class Runner:
    """A framework-neutral handle on one model's training: ``step()`` runs one step (may be
    asynchronous), ``sync()`` waits for it; ``info`` holds compile times and memory."""

    step: Callable[[], None]
    sync: Callable[[], None]
    num_params: int
    info: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- data


def example_batch(case: Case, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed random batch in JAX layout; Sketch-RNN gets stroke-5 sketches of random
    lengths in [Nmax/2, Nmax) followed by end rows (so the length logic is exercised)."""
    rng = np.random.default_rng(seed)
    if case.kind == "sketch":
        nmax = case.input_shape[0]
        x = np.zeros((batch, nmax, 5), np.float32)
        x[..., :2] = rng.normal(size=(batch, nmax, 2))
        pen = rng.choice(2, size=(batch, nmax), p=(0.8, 0.2))
        x[..., 2], x[..., 3] = pen == 0, pen == 1
        lengths = rng.integers(nmax // 2, nmax, batch)
        ended = np.arange(nmax)[None] >= lengths[:, None]
        x[ended] = (0, 0, 0, 0, 1)
        return {"inputs": x, "labels": np.zeros(batch, np.int32), "mask": np.ones(batch, np.float32)}
    return {
        "inputs": rng.normal(size=(batch, *case.input_shape)).astype(np.float32),
        "labels": rng.integers(0, case.num_classes, batch).astype(np.int32),
        "mask": np.ones(batch, np.float32),
    }


# ----------------------------------------------------------------------------- JAX side


def _optimizer():
    """SGD + momentum through the library's optimizer factory (constant lr, no decay)."""
    from jaxclf.config import base_config
    from jaxclf.train import optim

    cfg = base_config().optim
    cfg.name, cfg.lr, cfg.momentum, cfg.schedule = "momentum", LR, MOMENTUM, "constant"
    return optim.optimizer(cfg, num_steps=1)


def jax_step_fn(case: Case, model, tx, key) -> Callable:
    """The pure ``(state, batch) -> (state, stats)`` the library trains ``case`` with."""
    from jaxclf import metrics, models
    from jaxclf.train import steps as steps_lib

    if case.kind == "sketch":  # the loop's task 'generative': the model's own loss
        family_loss = models.loss(case.model, model)
        return steps_lib.make_steps(model, tx, metrics.means(models.loss_scalars(case.model)), task="generative",
                                    key=key, family_loss=family_loss)[0]
    metric_set = metrics.collection(("accuracy",), num_classes=case.num_classes)
    return steps_lib.make_steps(model, tx, metric_set, task="multiclass", key=key)[0]


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def memory_summary(compiled) -> dict[str, int] | None:
    """XLA's buffer assignment for the executable; ``peak_bytes`` = arguments + outputs -
    donated aliases + temporaries (what must be live at once)."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp", "generated_code")}
    out["peak_bytes"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def jax_runner(case: Case, batch: int, *, compile_only: bool = False) -> Runner:
    """Builds ``case`` with jaxclf, compiles its step ahead of time (timed) and returns a
    Runner that feeds each step's donated state into the next."""
    from jaxclf import cpu, models
    from jaxclf.train import steps as steps_lib

    classes = {"num_classes": case.num_classes} if "num_classes" in models.describe(case.model) else {}
    model = models.create(case.model, **classes, **case.model_kwargs)
    if jax.default_backend() == "cpu":
        model = cpu.tune(model)
    tx = _optimizer()
    init_key, step_key = jax.random.split(jax.random.key(0))
    host = example_batch(case, batch)
    example = jnp.zeros((1, *case.input_shape), jnp.float32)
    init = functools.partial(steps_lib.init_state, model, tx, example, init_key)
    step = jax.jit(cpu.optimize(jax_step_fn(case, model, tx, step_key)), donate_argnums=0)
    if compile_only:  # shapes only: nothing is allocated
        state = jax.eval_shape(init)
        data = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in host.items()}
    else:
        state = jax.jit(init)()
        data = jax.device_put(host)
    t0 = time.perf_counter()
    lowered = step.lower(state, data)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    info = {"lower_s": t1 - t0, "compile_s": t2 - t1, "memory": memory_summary(compiled)}
    holder = {"state": state}

    def run():
        holder["state"], _ = compiled(holder["state"], data)

    def sync():
        jax.block_until_ready(holder["state"])

    return Runner(run, sync, count_params(state.params), info)


# ----------------------------------------------------------------------------- PyTorch twins


@functools.cache
def torch_twins() -> dict[str, Callable]:
    """PyTorch modules with jaxclf's layer shapes, built on first use so that this file
    imports (and the JAX side runs) without torch installed. Keys are registry names."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def with_ones(x):
        """Appends a constant-1 feature: a bias-free nn.LSTM then has exactly jaxclf's
        parameters (one bias per gate, PyTorch's fused LSTM has two) and the same math."""
        return torch.cat([x, torch.ones_like(x[..., :1])], -1)

    class LeNet5(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.LazyLinear(120), nn.Linear(120, 84), nn.Linear(84, num_classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = F.max_pool2d(F.relu(self.c2(x)), 2)
            return self.f3(F.relu(self.f2(F.relu(self.f1(x.flatten(1))))))

    def conv_bn(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))

    class Block(nn.Module):
        """Basic block with the option-A shortcut (subsample, zero-pad channels)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.a, self.b, self.stride, self.pad = conv_bn(cin, cout, stride), conv_bn(cout, cout), stride, cout - cin

        def forward(self, x):
            y = self.b(F.relu(self.a(x)))
            if self.stride != 1 or self.pad:
                x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
            return F.relu(y + x)

    class ResNet20(nn.Module):
        def __init__(self, num_classes=10, n=3):
            super().__init__()
            layers, cin = [conv_bn(3, 16), nn.ReLU()], 16
            for i, width in enumerate((16, 32, 64)):
                for j in range(n):
                    layers.append(Block(cin, width, 2 if i and not j else 1))
                    cin = width
            self.body, self.head = nn.Sequential(*layers), nn.Linear(64, num_classes)

        def forward(self, x):
            return self.head(self.body(x).mean((2, 3)))

    class VGG11(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            layers, cin = [], 3
            for depth, width in zip((1, 1, 2, 2, 2), (64, 128, 256, 512, 512)):
                for _ in range(depth):
                    layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
                    cin = width
                layers.append(nn.MaxPool2d(2))
            self.features, self.head = nn.Sequential(*layers), nn.Linear(512, num_classes)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))

    class Recurrent(nn.Module):
        """Many-to-one: the last step's state -> linear. GRU: nn.GRU as is (its two
        biases match ``gru_reset_after``); LSTM: bias-free on [x, 1] (see ``with_ones``)."""

        def __init__(self, kind, num_classes=10, features=1, hidden=128):
            super().__init__()
            self.lstm = kind == "lstm"
            cls = nn.LSTM if self.lstm else nn.GRU
            self.rnn = cls(features + self.lstm, hidden, batch_first=True, bias=not self.lstm)
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x):
            y, _ = self.rnn(with_ones(x) if self.lstm else x)
            return self.head(y[:, -1])

    class SketchRNN(nn.Module):
        """jaxclf.models.sketch_rnn's equations: bidirectional LSTM encoder over each
        sketch's valid rows, z = mu + sigma * eps, decoder LSTM from tanh(W z + b) reading
        [S_{t-1}, z], a mixture of M bivariate Gaussians + 3-way pen softmax per step."""

        def __init__(self, enc_hidden, dec_hidden, z_size, num_mixtures):
            super().__init__()
            lstm = lambda i, h: nn.LSTM(i + 1, h, batch_first=True, bias=False)  # noqa: E731
            self.enc_fwd, self.enc_bwd = lstm(5, enc_hidden), lstm(5, enc_hidden)
            self.z_mu, self.z_logvar = nn.Linear(2 * enc_hidden, z_size), nn.Linear(2 * enc_hidden, z_size)
            self.z_to_state, self.dec = nn.Linear(z_size, 2 * dec_hidden), lstm(5 + z_size, dec_hidden)
            self.out, self.m = nn.Linear(dec_hidden, 6 * num_mixtures + 3), num_mixtures

        def forward(self, s):
            b, t, _ = s.shape
            lengths = (torch.cumsum(s[..., 4] > 0.5, 1) == 0).sum(1)
            last = (lengths - 1).clamp(min=0)
            steps = torch.arange(t, device=s.device)[None]
            rev = torch.where(steps <= last[:, None], last[:, None] - steps, steps)
            rows = torch.arange(b, device=s.device)
            h_fwd = self.enc_fwd(with_ones(s))[0][rows, last]
            h_bwd = self.enc_bwd(with_ones(s[rows[:, None], rev]))[0][rows, last]
            summary = torch.cat([h_fwd, h_bwd], -1)
            mu, logvar = self.z_mu(summary), self.z_logvar(summary)
            z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
            c0, h0 = torch.tanh(self.z_to_state(z)).chunk(2, -1)
            start = torch.tensor([0.0, 0, 1, 0, 0], device=s.device).expand(b, 1, 5)
            inputs = torch.cat([start, s[:, :-1], ], 1)
            inputs = torch.cat([inputs, z[:, None].expand(b, t, z.shape[-1])], -1)
            y, _ = self.dec(with_ones(inputs), (h0[None].contiguous(), c0[None].contiguous()))
            return self.out(y), mu, logvar

    def sketch_loss(model, s, step, kl_weight=0.5, kl_start=0.01, kl_decay=0.99995, kl_tolerance=0.2):
        """jaxclf.models.sketch_rnn.loss_fn: L_s + L_p (/ Nmax) + w_KL(step) max(KL, tol)."""
        raw, mu, logvar = model(s)
        m, nmax = model.m, s.shape[1]
        pi, mu_x, mu_y, ls_x, ls_y, rho = raw[..., : 6 * m].chunk(6, -1)
        rho = torch.tanh(rho)
        dx, dy = (s[..., :1] - mu_x) * torch.exp(-ls_x), (s[..., 1:2] - mu_y) * torch.exp(-ls_y)
        one_m_rho2 = (1 - rho**2).clamp(min=1e-6)
        zz = dx**2 + dy**2 - 2 * rho * dx * dy
        log_n = -zz / (2 * one_m_rho2) - math.log(2 * math.pi) - (ls_x + ls_y) - 0.5 * torch.log(one_m_rho2)
        ll = torch.logsumexp(F.log_softmax(pi, -1) + log_n, -1)
        l_s = torch.where(s[..., 4] < 0.5, -ll, torch.zeros_like(ll)).sum(-1) / nmax
        l_p = -(s[..., 2:] * F.log_softmax(raw[..., 6 * m :], -1)).sum((-1, -2)) / nmax
        kl = (-0.5 * (1 + logvar - mu**2 - torch.exp(logvar)).mean(-1)).mean()
        weight = kl_weight * (1 - (1 - kl_start) * kl_decay**step)
        return (l_s + l_p).mean() + weight * torch.clamp(kl, min=kl_tolerance)

    classify = lambda model, x, y, step: F.cross_entropy(model(x), y)  # noqa: E731
    return {
        "lenet5": lambda case: (LeNet5(case.num_classes), classify),
        "resnet20": lambda case: (ResNet20(case.num_classes), classify),
        "vgg11": lambda case: (VGG11(case.num_classes), classify),
        "lstm": lambda case: (Recurrent("lstm", case.num_classes, case.input_shape[-1], case.model_kwargs["hidden"]),
                               classify),
        "rnn_classifier": lambda case: (Recurrent("gru", case.num_classes, case.input_shape[-1],
                                                   case.model_kwargs["hidden"]), classify),
        "sketch_rnn": lambda case: (SketchRNN(**case.model_kwargs), lambda model, x, y, step: sketch_loss(model, x, step)),
    }


def to_torch_layout(case: Case, host: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """NHWC images -> NCHW (PyTorch's native layout); sequences stay (B, T, F)."""
    import torch

    x = host["inputs"]
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x
    y = host.get("labels")
    return torch.from_numpy(x), None if y is None else torch.from_numpy(y.astype(np.int64))


def torch_runner(case: Case, batch: int) -> Runner:
    """The PyTorch eager twin of ``case``: SGD(lr, momentum) steps on the same batch."""
    # libgomp's default spin-waiting makes 2-thread PyTorch 5-20x slower on a loaded machine
    # (barriers wait for descheduled threads): passive waiting, unless the caller chose.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model, loss_fn = torch_twins()[case.model](case)
    x, y = to_torch_layout(case, example_batch(case, batch))
    model.train()
    with torch.no_grad():
        model(x)  # materialises lazy layers
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    counter = [0]

    def run():
        opt.zero_grad(set_to_none=True)
        loss_fn(model, x, y, counter[0]).backward()
        opt.step()
        counter[0] += 1

    info = {"threads": torch.get_num_threads(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    return Runner(run, lambda: None, sum(p.numel() for p in model.parameters()), info)


# ----------------------------------------------------------------------------- measuring


def time_block(runner: Runner, steps: int) -> float:
    """Seconds for ``steps`` steps, ending when the last one has finished."""
    runner.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step()
    runner.sync()
    return time.perf_counter() - t0


def steps_for(runner: Runner, block_s: float, warmup: int) -> int:
    """Warms up, then picks a block length of about ``block_s`` seconds."""
    first = time.perf_counter()
    for _ in range(warmup):
        runner.step()
    runner.sync()
    warm_s = time.perf_counter() - first
    runner.info["warmup_s"] = warm_s
    per_step = runner.info["step_s"] = time_block(runner, 1)
    return max(1, math.ceil(block_s / max(per_step, 1e-6)))


def measure(runners: dict[str, Runner], batch: int, *, repeats: int, block_s: float, warmup: int = 1,
            budget_s: float = 60.0) -> dict[str, list[float]]:
    """Throughputs (examples/s) of each runner over ``repeats`` blocks, interleaved (the
    order alternates each repeat so neither side always runs right after the other). Slow
    models (one step longer than a block) get fewer repeats, at least 3, within ``budget_s``."""
    steps = {k: steps_for(r, block_s, warmup) for k, r in runners.items()}
    names, out = list(runners), {k: [] for k in runners}
    per_repeat = sum(max(block_s, r.info.get("step_s", 0.0)) for r in runners.values())
    for i in range(max(min(repeats, 3), min(repeats, int(budget_s / per_repeat)))):
        for k in names if i % 2 == 0 else names[::-1]:
            out[k].append(batch * steps[k] / time_block(runners[k], steps[k]))
    return out


def comparison(name: str, ours: list[float], theirs: list[float] | None, *, target: float, units: str = "examples/s",
               baseline: str = "pytorch_eager", **extra) -> dict:
    """One results entry: both medians, the ratio and whether it meets ``target``.

    ``ours[i]`` and ``theirs[i]`` were measured back to back, so the ratio is the median of
    the per-repeat ratios: the machine's speed drifts by 10-30% within seconds, which a paired
    ratio cancels and a ratio of the two medians does not (that one is kept as
    ``ratio_of_medians``)."""
    a = statistics.median(ours)
    b = statistics.median(theirs) if theirs else None
    if theirs and len(theirs) != len(ours):
        raise ValueError(f"{name}: {len(ours)} samples of ours but {len(theirs)} of the baseline; they must pair up")
    ratio = statistics.median(x / y for x, y in zip(ours, theirs)) if theirs else None
    return {"name": name, "units": units, "ours": a, "baseline": baseline, "theirs": b, "ratio": ratio,
            "ratio_of_medians": a / b if b else None,
            "target": target, "met": None if ratio is None or target is None else ratio >= target,
            "samples": {"ours": ours, "theirs": theirs}, **extra}


def compare_case(case: Case, baseline: Callable[[Case, int], Runner] | None, *, batch: int, repeats: int,
                 block_s: float) -> dict:
    """Measures ``case`` in JAX and (if given) the baseline; asserts equal parameter counts."""
    ours = jax_runner(case, batch)
    runners = {"ours": ours}
    if baseline is not None:
        runners["theirs"] = baseline(case, batch)
        if runners["theirs"].num_params != ours.num_params:
            raise AssertionError(f"{case.name}: jaxclf has {ours.num_params:,} parameters, "
                                 f"the baseline {runners['theirs'].num_params:,}")
    tp = measure(runners, batch, repeats=repeats, block_s=block_s)
    return comparison(case.name, tp["ours"], tp.get("theirs"), target=1.0, kind="train_step", model=case.model,
                      batch=batch, params=ours.num_params, jax=ours.info,
                      baseline_info=runners["theirs"].info if baseline else None)


def compile_only(case: Case, batch: int) -> dict:
    """Compile time and XLA memory of ``case``'s step without running it."""
    r = jax_runner(case, batch, compile_only=True)
    return {"name": case.name, "kind": "compile_only", "model": case.model, "batch": batch, "params": r.num_params, "jax": r.info}


# ----------------------------------------------------------------------------- memory probe


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def probe_memory(case: Case, framework: str, batch: int, steps: int = 3) -> dict:
    """RSS high-water growth during ``steps`` steps over the RSS before the model was built
    (params, optimizer state, activations, gradients, allocator caches, and for JAX the
    compiled program); meant for a fresh process (``--probe``)."""
    if framework == "torch":
        import torch  # noqa: F401  (imported before the baseline is read)
    before = _rss_bytes("VmRSS")
    runner = (torch_runner if framework == "torch" else jax_runner)(case, batch)
    runner.step()
    runner.sync()  # compile / first-call work done
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    for _ in range(steps):
        runner.step()
    runner.sync()
    return {"framework": framework, "rss_before_build": before, "peak_growth_bytes": _rss_bytes("VmHWM") - before}


def probe_in_subprocess(case: Case, framework: str, batch: int, timeout: float = 600) -> dict | None:
    """``probe_memory`` in a fresh interpreter (so nothing measured earlier is counted)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_train", "--probe", case.model, "--framework", framework,
           "--batch", str(batch)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=timeout)
    if out.returncode:
        print(f"memory probe {case.model}/{framework} failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- entry


def run(*, quick: bool = False, models: list[str] | None = None, baseline: Callable | None = torch_runner,
        batch: int = BATCH, memory: bool = True, log=print) -> list[dict]:
    """Every case: a comparison entry (or a compile-only entry), with the 1-minute load
    average before and after it, and the baseline's RSS probe when it is PyTorch."""
    repeats, block_s = (3, 0.3) if quick else (7, 1.0)
    entries = []
    for case in CASES:
        if (models and case.model not in models) or (quick and not case.run):
            continue
        log(f"[train] {case.name} ...")
        load = os.getloadavg()[0]
        entry = compare_case(case, baseline, batch=batch, repeats=repeats, block_s=block_s) if case.run \
            else compile_only(case, batch)
        if memory and case.run and baseline is torch_runner:
            entry["torch_rss"] = probe_in_subprocess(case, "torch", batch)
        entry["load_avg_1min"] = [load, os.getloadavg()[0]]
        log(f"[train] {case.name}: " + (f"jax {entry['ours']:.0f} vs baseline {entry['theirs'] or 0:.0f} ex/s"
                                       if case.run else f"compile {entry['jax']['compile_s']:.1f} s"))
        entries.append(entry)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats; no ResNet-50, no memory probes")
    parser.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--probe", default="", help=argparse.SUPPRESS)  # internal: memory probe of one model
    parser.add_argument("--framework", default="jax", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        case = next(c for c in CASES if c.model == args.probe)
        print(json.dumps(probe_memory(case, args.framework, args.batch)))
        return
    entries = run(quick=args.quick, models=[m for m in args.models.split(",") if m] or None, batch=args.batch,
                  memory=not args.quick)
    print(json.dumps(entries, indent=1, default=str))


if __name__ == "__main__":
    main()
