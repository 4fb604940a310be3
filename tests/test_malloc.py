"""jaxclf.malloc: XLA:CPU's large temporaries are served from memory the process already has
instead of being mapped and faulted in afresh at every call."""

import os
import subprocess
import sys

import pytest

from jaxclf import malloc

# A jitted step whose loop carries a 160 MB array (a temporary, like a train step's
# activations). With glibc's defaults every call maps it anew: about 39,000 page faults of
# 4 KiB. Tuned, calls reuse freed heap memory (now and then a call lands part of it on pages
# not touched before, so the test takes the fewest faults of any call).
PROBE = """
import resource, jax, jax.numpy as jnp, jaxclf
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
print(jaxclf.malloc.APPLIED, min(faults[4:]))
"""


def _probe(**env) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, "XLA_FLAGS": "", **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(malloc._glibc() is None, reason="the settings are glibc's")
def test_large_temporaries_reuse_freed_memory_unless_opted_out():
    tuned, tuned_faults = _probe()
    system, system_faults = _probe(**{malloc.OPT_OUT: "1"})
    assert tuned and not system
    assert system_faults > 30_000  # the probe measures what it should: 160 MB mapped per call
    assert tuned_faults < 1_000


def test_importing_jaxclf_after_jax_ran_warns():
    code = "import jax; jax.numpy.ones(1).block_until_ready(); import jaxclf"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert ("imported after JAX ran" in err) == (malloc._glibc() is not None)
    err = subprocess.run([sys.executable, "-c", "import jaxclf, jax; jax.numpy.ones(1)"], capture_output=True,
                         text=True, check=True).stderr
    assert "imported after JAX ran" not in err
