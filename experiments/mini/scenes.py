"""The mini world's scenes: one or two objects, each a shape, colour, size and position, on a
background colour; how they are drawn, and the structured labels every image keeps.

The attribute vocabularies below are the world's one spelling of its choices: captions, the
attribute classifier's heads and attribute accuracy all read them from here
(experiments/mini/version.py hashes them into WORLD_VERSION).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from PIL import Image, ImageDraw

from experiments.tiny.coco import draw_shape

# Rendered sheets at 32 and 64 px were compared: the small (8 px) circle, square, triangle and
# cross stay distinct at 32, so the world needs no more pixels than that.
IMAGE_SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
}
SIZES = {"small": 0.25, "large": 0.44}  # object extent as a share of the image side
# Object centre as a share of the image side; two objects stand on opposite sides.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.23, 0.5),
    "right": (0.77, 0.5),
    "top": (0.5, 0.23),
    "bottom": (0.5, 0.77),
    "centre": (0.5, 0.5),
}
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
COUNTS = (1, 2)
MAX_OBJECTS = max(COUNTS)
JITTER = 0.03  # share of the side an object's centre may move, so equal labels give distinct images
# Bump when drawing changes in a way the parameters below do not show.
DRAWING_REVISION = 1


@dataclass(frozen=True)
class WorldObject:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """Objects in canonical order (left before right, top before bottom), the order the
    classifier's slots follow whatever order a caption names them in."""

    objects: tuple[WorldObject, ...]
    background: str

    def labels(self) -> dict:
        return {"background": self.background, "objects": [asdict(obj) for obj in self.objects]}

    @staticmethod
    def from_labels(labels: dict) -> Scene:
        try:
            objects = tuple(WorldObject(**obj) for obj in labels["objects"])
            scene = Scene(objects, labels["background"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a mini-world label record ({error}): {labels!r}") from None
        scene.check()
        return scene

    def check(self) -> None:
        if len(self.objects) not in COUNTS:
            raise ValueError(f"a scene has {' or '.join(map(str, COUNTS))} objects, got {len(self.objects)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} is not one of {sorted(BACKGROUNDS)}")
        for obj in self.objects:
            for field, known in (
                ("shape", SHAPES),
                ("colour", OBJECT_COLOURS),
                ("size", SIZES),
                ("position", POSITIONS),
            ):
                if getattr(obj, field) not in known:
                    raise ValueError(f"object {field} {getattr(obj, field)!r} is not one of {sorted(known)}")
        if len(self.objects) == 2:
            first, second = (obj.position for obj in self.objects)
            if first not in ("left", "top") or OPPOSITE[first] != second:
                raise ValueError(
                    f"two objects stand left/right or top/bottom in that order, got {first}/{second}"
                )


def random_scene(rng: random.Random, count: int | None = None) -> Scene:
    count = count if count is not None else rng.choice(COUNTS)
    positions = (
        [rng.choice(sorted(POSITIONS))]
        if count == 1
        else list(rng.choice((("left", "right"), ("top", "bottom"))))
    )
    objects = tuple(
        WorldObject(
            rng.choice(SHAPES), rng.choice(sorted(OBJECT_COLOURS)), rng.choice(sorted(SIZES)), position
        )
        for position in positions
    )
    return Scene(objects, rng.choice(sorted(BACKGROUNDS)))


def object_box(obj: WorldObject, size: int, rng: random.Random) -> tuple[int, int, int]:
    """(left, top, extent) of the object's square, jittered, kept inside the frame."""
    extent = max(3, round(SIZES[obj.size] * size))
    centre_x, centre_y = POSITIONS[obj.position]
    jitter = max(1, round(JITTER * size))

    def corner(centre: float) -> int:
        start = round(centre * size - extent / 2) + rng.randint(-jitter, jitter)
        return min(max(start, 0), size - extent)

    return corner(centre_x), corner(centre_y), extent


def object_mask(obj: WorldObject, box: tuple[int, int, int], size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(mask), obj.shape, *box, 255)
    return mask


def render(
    scene: Scene, size: int, rng: random.Random, fills: dict[int, Image.Image] | None = None
) -> tuple[Image.Image, list[Image.Image]]:
    """The scene's image and one mask per object. `fills` replaces an object's flat colour with
    an image of the same size (a texture), by object index."""
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    masks = []
    for index, obj in enumerate(scene.objects):
        mask = object_mask(obj, object_box(obj, size, rng), size)
        fill = (fills or {}).get(index) or Image.new("RGB", (size, size), OBJECT_COLOURS[obj.colour])
        image.paste(fill, mask=mask)
        masks.append(mask)
    return image, masks
