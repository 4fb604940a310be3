"""jaxclf: classification with deep networks in JAX."""

__version__ = "0.1.0"
