"""Vector-sketch datasets: normalising and padding stroke-3 sketches to stroke-5, the
generated shapes, the QuickDraw categories, and augmentation (formats: ``jaxclf.ops.strokes``).

Normalisation divides the offsets by one scale (the standard deviation of all training
offsets, dx and dy pooled), so the model's Gaussians see unit-scale data whatever the
drawing resolution. Augmentation (random per-axis scaling, random dropping of points inside
strokes) works on padded stroke-5 batches in JAX, so it runs inside a jitted train step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.ops.strokes import END_ROW, stroke5_length, to_stroke5  # noqa: F401  (stroke5_length: imported from here too)

SHAPES = ("circle", "square", "triangle", "star", "spiral")
SHAPES_PER_CLASS = {"train": 1000, "test": 50}  # the shapes dataset (TFDS and shapes_data)
_TEST_SEED_OFFSET = 1_000_003  # test sketches come from seed + this: disjoint from train
# QuickDraw's 345 categories in its categories.txt order (googlecreativelab/quickdraw-dataset):
# the sketch-rnn files are named <category>.npz, and a category's label is its position here.
QUICKDRAW_CLASSES = (
    "aircraft carrier", "airplane", "alarm clock", "ambulance", "angel", "animal migration",
    "ant", "anvil", "apple", "arm", "asparagus", "axe", "backpack", "banana", "bandage", "barn",
    "baseball", "baseball bat", "basket", "basketball", "bat", "bathtub", "beach", "bear",
    "beard", "bed", "bee", "belt", "bench", "bicycle", "binoculars", "bird", "birthday cake",
    "blackberry", "blueberry", "book", "boomerang", "bottlecap", "bowtie", "bracelet", "brain",
    "bread", "bridge", "broccoli", "broom", "bucket", "bulldozer", "bus", "bush", "butterfly",
    "cactus", "cake", "calculator", "calendar", "camel", "camera", "camouflage", "campfire",
    "candle", "cannon", "canoe", "car", "carrot", "castle", "cat", "ceiling fan", "cello",
    "cell phone", "chair", "chandelier", "church", "circle", "clarinet", "clock", "cloud",
    "coffee cup", "compass", "computer", "cookie", "cooler", "couch", "cow", "crab", "crayon",
    "crocodile", "crown", "cruise ship", "cup", "diamond", "dishwasher", "diving board", "dog",
    "dolphin", "donut", "door", "dragon", "dresser", "drill", "drums", "duck", "dumbbell",
    "ear", "elbow", "elephant", "envelope", "eraser", "eye", "eyeglasses", "face", "fan",
    "feather", "fence", "finger", "fire hydrant", "fireplace", "firetruck", "fish", "flamingo",
    "flashlight", "flip flops", "floor lamp", "flower", "flying saucer", "foot", "fork", "frog",
    "frying pan", "garden", "garden hose", "giraffe", "goatee", "golf club", "grapes", "grass",
    "guitar", "hamburger", "hammer", "hand", "harp", "hat", "headphones", "hedgehog",
    "helicopter", "helmet", "hexagon", "hockey puck", "hockey stick", "horse", "hospital",
    "hot air balloon", "hot dog", "hot tub", "hourglass", "house", "house plant", "hurricane",
    "ice cream", "jacket", "jail", "kangaroo", "key", "keyboard", "knee", "knife", "ladder",
    "lantern", "laptop", "leaf", "leg", "light bulb", "lighter", "lighthouse", "lightning",
    "line", "lion", "lipstick", "lobster", "lollipop", "mailbox", "map", "marker", "matches",
    "megaphone", "mermaid", "microphone", "microwave", "monkey", "moon", "mosquito",
    "motorbike", "mountain", "mouse", "moustache", "mouth", "mug", "mushroom", "nail",
    "necklace", "nose", "ocean", "octagon", "octopus", "onion", "oven", "owl", "paintbrush",
    "paint can", "palm tree", "panda", "pants", "paper clip", "parachute", "parrot", "passport",
    "peanut", "pear", "peas", "pencil", "penguin", "piano", "pickup truck", "picture frame",
    "pig", "pillow", "pineapple", "pizza", "pliers", "police car", "pond", "pool", "popsicle",
    "postcard", "potato", "power outlet", "purse", "rabbit", "raccoon", "radio", "rain",
    "rainbow", "rake", "remote control", "rhinoceros", "rifle", "river", "roller coaster",
    "rollerskates", "sailboat", "sandwich", "saw", "saxophone", "school bus", "scissors",
    "scorpion", "screwdriver", "sea turtle", "see saw", "shark", "sheep", "shoe", "shorts",
    "shovel", "sink", "skateboard", "skull", "skyscraper", "sleeping bag", "smiley face",
    "snail", "snake", "snorkel", "snowflake", "snowman", "soccer ball", "sock", "speedboat",
    "spider", "spoon", "spreadsheet", "square", "squiggle", "squirrel", "stairs", "star",
    "steak", "stereo", "stethoscope", "stitches", "stop sign", "stove", "strawberry",
    "streetlight", "string bean", "submarine", "suitcase", "sun", "swan", "sweater",
    "swing set", "sword", "syringe", "table", "teapot", "teddy-bear", "telephone", "television",
    "tennis racquet", "tent", "The Eiffel Tower", "The Great Wall of China", "The Mona Lisa",
    "tiger", "toaster", "toe", "toilet", "tooth", "toothbrush", "toothpaste", "tornado",
    "tractor", "traffic light", "train", "tree", "triangle", "trombone", "truck", "trumpet",
    "t-shirt", "umbrella", "underwear", "van", "vase", "violin", "washing machine",
    "watermelon", "waterslide", "whale", "wheel", "windmill", "wine bottle", "wine glass",
    "wristwatch", "yoga", "zebra", "zigzag",
)

# ----------------------------------------------------------------------------- datasets


def scale_factor(sketches: Sequence[np.ndarray]) -> float:
    """The standard deviation of all offsets (dx and dy pooled): the normalising scale."""
    offsets = np.concatenate([s[:, :2].reshape(-1) for s in sketches])
    return float(np.std(offsets))


def normalize(sketches: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
    """Offsets divided by ``scale``; pen states unchanged; float32."""
    return [np.concatenate([s[:, :2] / scale, s[:, 2:3]], -1).astype(np.float32) for s in sketches]


@dataclasses.dataclass(frozen=True)
class StrokeSplit:
    strokes: np.ndarray  # (n, max_len, 5) float32, normalised, padded with end rows
    lengths: np.ndarray  # (n,) int32 points per sketch
    labels: np.ndarray  # (n,) int32 class ids

    @property
    def num_examples(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class StrokeData:
    splits: dict[str, StrokeSplit]
    class_names: tuple[str, ...]
    scale: float  # offsets were divided by this (multiply back to draw at the original size)
    max_len: int


def build(
    raw: dict[str, tuple[Sequence[np.ndarray], np.ndarray]],
    class_names: Sequence[str],
    max_len: int,
    *,
    train_split: str = "train",
) -> StrokeData:
    """Filters by length (``<= max_len`` points), normalises with the *training* split's scale
    and pads to stroke-5. ``raw`` maps split -> (stroke-3 sketches, labels)."""
    kept = {}
    for name, (sketches, labels) in raw.items():
        keep = [i for i, s in enumerate(sketches) if 0 < len(s) <= max_len]
        kept[name] = ([sketches[i] for i in keep], np.asarray(labels, np.int32)[keep])
    scale = scale_factor(kept[train_split][0])
    splits = {}
    for name, (sketches, labels) in kept.items():
        normed = normalize(sketches, scale)
        strokes = np.stack([to_stroke5(s, max_len) for s in normed]).astype(np.float32)
        lengths = np.array([len(s) for s in normed], np.int32)
        splits[name] = StrokeSplit(strokes, lengths, labels)
    return StrokeData(splits, tuple(class_names), scale, max_len)


# ----------------------------------------------------------------------------- shapes


def _closed(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points, points[:1]], axis=0)


def _polygon(corners: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A closed polygon starting at a random corner, each side split into 1-3 segments."""
    corners = np.roll(corners, -rng.integers(len(corners)), axis=0)
    ends = np.roll(corners, -1, axis=0)
    pieces = []
    for a, b in zip(corners, ends):
        k = rng.integers(1, 4)
        t = np.arange(k)[:, None] / k
        pieces.append(a + t * (b - a))
    return _closed(np.concatenate(pieces))


def _regular(n: int, radius=1.0, phase=0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], -1)


def _circle(rng):
    n = rng.integers(12, 21)
    return _closed(_regular(n, phase=rng.uniform(0, 2 * np.pi)))


def _square(rng):
    return _polygon(_regular(4, phase=np.pi / 4), rng)


def _triangle(rng):
    return _polygon(_regular(3, phase=np.pi / 2), rng)


def _star(rng):
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.4)[:, None]
    return _closed(np.roll(radii * _regular(10, phase=np.pi / 2), -2 * rng.integers(5), axis=0))


def _spiral(rng):
    turns = rng.uniform(1.5, 2.5)
    n = rng.integers(20, 31)
    theta = np.linspace(0, 2 * np.pi * turns, n)
    r = theta / theta[-1]
    return np.stack([r * np.cos(theta), r * np.sin(theta)], -1)


_SHAPE_POINTS = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star, "spiral": _spiral}


def shape_sketch(name: str, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """One stroke-3 sketch of shape ``name``: random size (radius 15-40 units), rotation,
    mirror image, start point (built into each shape), and Gaussian jitter of ``noise``
    times the radius on every point. The shape is centred on the origin, where the pen
    starts, so row 0 is the offset to the start point. One stroke: the pen lifts after the
    last point."""
    points = _SHAPE_POINTS[name](rng)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mirror = np.diag([1.0, rng.choice([-1.0, 1.0])])  # drawing direction: clockwise or not
    size = rng.uniform(15, 40)
    points = size * (points @ mirror @ rot.T)
    points = points + rng.normal(0, noise * size, points.shape)
    offsets = np.diff(points, axis=0, prepend=np.zeros((1, 2)))  # row 0: centre -> start
    pen = np.zeros((len(points), 1))
    pen[-1] = 1
    return np.concatenate([offsets, pen], -1).astype(np.float32)


def make_shapes(
    num_per_class: int, seed: int = 0, classes: Sequence[str] = SHAPES, noise: float = 0.03
) -> tuple[list[np.ndarray], np.ndarray]:
    """``num_per_class`` stroke-3 sketches of each shape (interleaved by class) and labels;
    the same ``seed`` gives the same sketches."""
    rng = np.random.default_rng(seed)
    sketches, labels = [], []
    for _ in range(num_per_class):
        for label, name in enumerate(classes):
            sketches.append(shape_sketch(name, rng, noise))
            labels.append(label)
    return sketches, np.asarray(labels, np.int32)


def shapes_data(
    num_train: int = SHAPES_PER_CLASS["train"], num_test: int = SHAPES_PER_CLASS["test"],
    max_len: int = 32, seed: int = 0, noise: float = 0.03,
) -> StrokeData:
    """The offline shapes dataset, normalised and padded: train/test splits (per class
    counts) from disjoint seeds; the defaults give the ``sketch_shapes`` TFDS dataset."""
    raw = {
        "train": make_shapes(num_train, seed, noise=noise),
        "test": make_shapes(num_test, seed + _TEST_SEED_OFFSET, noise=noise),
    }
    return build(raw, SHAPES, max_len)


# ----------------------------------------------------------------------------- augmentation


def drop_points(key, s5: jax.Array, prob: float) -> jax.Array:
    """Drops each point inside a stroke with probability ``prob`` (one stroke-5 sketch).

    A point is droppable when the pen is down both before and after it (not the first or
    last point of a stroke), so strokes keep their ends and no stroke vanishes. Dropping a
    point merges its offset into the next one: every kept point stays where it was. Dropped
    rows leave the sequence and end rows fill in at the back.
    """
    down = s5[:, 2] > 0.5
    droppable = down & jnp.concatenate([jnp.zeros((1,), bool), down[:-1]])
    drop = droppable & jax.random.bernoulli(key, prob, down.shape)
    order = jnp.argsort(drop, stable=True)  # kept rows first, in order
    positions = jnp.cumsum(s5[:, :2], axis=0)[order]
    offsets = jnp.diff(positions, axis=0, prepend=jnp.zeros((1, 2), s5.dtype))
    rows = jnp.concatenate([offsets, s5[order, 2:]], axis=-1)
    tail = jnp.arange(len(s5)) >= len(s5) - jnp.sum(drop)
    return jnp.where(tail[:, None], jnp.asarray(END_ROW), rows)


def scale_offsets(key, strokes: jax.Array, amount: float) -> jax.Array:
    """A padded stroke-5 batch ``(B, T, 5)`` with offsets scaled by independent factors in
    ``[1 - amount, 1 + amount]`` per sketch and axis (a random aspect ratio); end rows stay
    end rows."""
    factors = jax.random.uniform(key, (strokes.shape[0], 1, 2), minval=1 - amount, maxval=1 + amount)
    return strokes.at[..., :2].multiply(factors)


def drop_points_batch(key, strokes: jax.Array, prob: float) -> jax.Array:
    """``drop_points`` on each sketch of a padded stroke-5 batch ``(B, T, 5)``."""
    keys = jax.random.split(key, strokes.shape[0])
    return jax.vmap(drop_points, in_axes=(0, 0, None))(keys, strokes, prob)
