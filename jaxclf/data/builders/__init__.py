"""TFDS builders for data that needs no download.

Importing this package registers the builders with TFDS, so ``tfds.builder('digits')``
finds them by name exactly as it finds catalog datasets such as ``mnist``. Their features are
plain tensors and class labels, which TFDS encodes and decodes without TensorFlow: they are
prepared as ArrayRecord and read through ``tfds.data_source`` (``jaxclf.data.sources``).
"""

from jaxclf.data.builders import digits, first_symbol, mnist1d, sequence_tasks, sketches, tabular

BUILDERS = {
    "digits": digits.Digits,
    "mnist1d": mnist1d.Mnist1d,
    "breast_cancer": tabular.BreastCancer,
    "wine": tabular.Wine,
    "first_symbol": first_symbol.FirstSymbol,
    "sketch_shapes": sketches.SketchShapes,
    "sketch_quickdraw": sketches.SketchQuickdraw,
    "token_order": sequence_tasks.TokenOrder,
    "running_parity": sequence_tasks.RunningParity,
    "class_sequences": sequence_tasks.ClassSequences,
}
