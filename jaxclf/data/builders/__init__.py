"""TFDS builders for data that needs no download.

Importing this package registers the builders with TFDS, so ``tfds.builder('digits')``
finds them by name exactly as it finds catalog datasets such as ``mnist``.
"""

from jaxclf.data.builders import digits

BUILDERS = {"digits": digits.Digits}
