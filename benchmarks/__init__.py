"""Speed comparisons (not part of the test run): ``python -m benchmarks.run`` or ``make bench``.

The CPU process settings (``jaxclf.cpu.configure_process``: malloc keeps freed buffers,
oneDNN's OpenMP threads wait passively) are applied first, before anything starts JAX's
threads, as ``jaxclf.main`` applies them to a training run. PyTorch, in the same process, runs
under them too.
"""

from jaxclf import cpu

cpu.configure_process()
