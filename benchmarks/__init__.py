"""Speed comparisons (not part of the test run): ``python -m benchmarks.run`` or ``make bench``.

jaxclf is imported first, before anything starts JAX's threads, so that its malloc settings
(``jaxclf.malloc``) apply to this process as they do to a training run. PyTorch, in the same
process, runs under them too.
"""

import jaxclf  # noqa: F401
