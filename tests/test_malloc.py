"""jaxclf.cpu.configure_process: XLA:CPU's large temporaries are served from memory the process
already has; and importing jaxclf changes nothing in the importing process."""

import json
import os
import subprocess
import sys

import pytest

from jaxclf.cpu import malloc

# A jitted step whose loop carries a 160 MB array (a temporary, like a train step's
# activations). With glibc's defaults every call maps it anew: about 39,000 page faults of
# 4 KiB. Tuned, calls reuse freed heap memory (now and then a call lands part of it on pages
# not touched before, so the test takes the fewest faults of any call).
PROBE = """
import resource, sys
import jaxclf, jaxclf.cpu
applied = jaxclf.cpu.configure_process()["malloc"] if sys.argv[1] == "configure" else False
import jax, jax.numpy as jnp
@jax.jit
def step(s):
    big = jax.lax.fori_loop(0, 2, lambda i, a: jnp.sin(a) + i, jnp.full(40_000_000, s[0]))
    return s + big[::4_000_000].sum()
s = jnp.ones(4)
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    s = step(s).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, min(faults[4:]))
"""


def _probe(mode: str, **env) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**os.environ, "XLA_FLAGS": "", **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(malloc._glibc() is None, reason="the settings are glibc's")
def test_configured_process_reuses_freed_memory_and_a_bare_import_does_not_touch_malloc():
    tuned, tuned_faults = _probe("configure")
    _, imported_faults = _probe("import")
    opted_out, opted_out_faults = _probe("configure", **{malloc.OPT_OUT: "1"})
    assert tuned and not opted_out
    assert imported_faults > 30_000 and opted_out_faults > 30_000  # glibc's defaults: 160 MB mapped per call
    assert tuned_faults < 1_000


IMPORT_ALL = """
import io, json, logging, os, sys
stream = io.StringIO()
logging.basicConfig(stream=stream, level=logging.DEBUG, format="%(name)s|%(message)s")
import jax; jax.numpy.ones(1).block_until_ready()  # JAX ran before jaxclf was imported
before = dict(os.environ)
import jaxclf, jaxclf.cpu, jaxclf.models, jaxclf.metrics, jaxclf.ops, jaxclf.train, jaxclf.data
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
root = [line for line in stream.getvalue().splitlines() if line.startswith(("root|", "jaxclf"))]
print(json.dumps({"changed": changed, "jaxclf_log_lines": root}))
"""


def test_importing_jaxclf_changes_no_process_state():
    """No environment variable, no log line (malloc: see the page-fault probe above)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",)}
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"changed": [], "jaxclf_log_lines": []}
