"""jaxclf: classification with deep networks in JAX."""

__version__ = "0.1.0"

from jaxclf import malloc  # noqa: F401,E402  (glibc settings, before JAX starts its threads)
