"""TFDS builders for data that needs no download.

Importing this package registers the builders with TFDS, so ``tfds.builder('digits')``
finds them by name exactly as it finds catalog datasets such as ``mnist``.
"""

from jaxclf.data import strokes
from jaxclf.data.builders import digits, first_symbol, mnist1d, tabular

BUILDERS = {
    "digits": digits.Digits,
    "mnist1d": mnist1d.Mnist1d,
    "breast_cancer": tabular.BreastCancer,
    "wine": tabular.Wine,
    "first_symbol": first_symbol.FirstSymbol,
    "sketch_shapes": strokes.SketchShapes,
    "sketch_quickdraw": strokes.SketchQuickdraw,
}
