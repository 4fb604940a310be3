# Two commands do all set-up on a fresh machine with Python 3.11 and make:
#   make demo   train LeNet-5 on the bundled digits (offline) and print the test accuracy
#   make test   install the test extras and run the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/lenet5_digits

.PHONY: demo test test-interop bench bench-gpu install install-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(PY) -m jaxclf.main --config=configs/lenet5_digits.py --workdir=$(RUN)

test: install-test
	$(PY) -m pytest -n 2 --dist=worksteal -q --ignore=tests/interop

# torch + torchvision (large): checks converted torchvision weights give torchvision's logits.
test-interop: install-test
	$(PY) -m pip install --quiet -e '.[interop]'
	$(PY) -m pytest -q tests/interop

# jaxclf vs PyTorch eager (CPU torch; models and conv layers), full loop vs bare step, metrics vs
# sklearn (~6 min on 2 cores):
# writes benchmarks/RESULTS.md and benchmarks/results.json. BENCH_ARGS=--quick for a smoke run.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	nice -n 5 $(PY) -m benchmarks.run $(BENCH_ARGS)

# jaxclf vs PyTorch eager and torch.compile (and ResNet-50 vs a plain Flax ResNet-50) on a CUDA
# GPU, with the bf16 matmul peak, compile times, peak memory and the loop vs its bare step:
# writes benchmarks/RESULTS_gpu.md and benchmarks/results_gpu.json. Runs with $(PYTHON) as it
# is (no venv, no install: it needs jax with CUDA, flax, optax, orbax, torch and torchvision,
# no TensorFlow). BENCH_GPU_ARGS=--quick: a dry run at tiny sizes that also works on a CPU.
# On the lent device machine (no make there, no pip install -e): bring the wheels it lacks with
# `bash ../shared/device/wheels.sh`, carry .whl, and run
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 -m benchmarks.gpu --out $OUT
bench-gpu:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m benchmarks.gpu $(BENCH_GPU_ARGS)

clean:
	rm -rf $(VENV) runs
