"""Captions of mini-world scenes, and the inverse: the scene a caption names, which attribute
accuracy compares a generated image with. Every template names every label (each object's
size, colour and shape, where it stands, and the background), so the inverse is exact."""

from __future__ import annotations

import random
import re

from experiments.mini.scenes import (
    BACKGROUNDS,
    OBJECT_COLOURS,
    OPPOSITE,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    WorldObject,
)

WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
# Where the object named first stands relative to the one named second.
RELATIONS = {"left": "left of", "right": "right of", "top": "above", "bottom": "below"}
ONE_OBJECT_TEMPLATES = (
    "a {size} {colour} {shape} {where} on a {background} background",
    "a {background} background with a {size} {colour} {shape} {where}",
    "{where}, a {size} {colour} {shape}, {background} background",
)
TWO_OBJECT_TEMPLATES = (
    "a {size} {colour} {shape} {relation} a {size2} {colour2} {shape2} on a {background} background",
    "a {background} background with a {size} {colour} {shape} {relation} a {size2} {colour2} {shape2}",
    "{size} {colour} {shape} {relation} {size2} {colour2} {shape2}, {background} background",
)
EDIT_TEMPLATES = (
    "make the {shape} {new_colour}",
    "turn the {colour} {shape} {new_colour}",
    "paint the {shape} {new_colour}",
)

_OBJECT = re.compile(rf"\b({'|'.join(SIZES)}) ({'|'.join(OBJECT_COLOURS)}) ({'|'.join(SHAPES)})\b")
_BACKGROUND = re.compile(rf"\b({'|'.join(BACKGROUNDS)}) background\b")


def caption(scene: Scene, template: int, first: int = 0) -> str:
    """The scene in words, by template index; `first` is the index of the object named first."""
    words = {"background": scene.background}
    if len(scene.objects) == 1:
        (obj,) = scene.objects
        return ONE_OBJECT_TEMPLATES[template].format(**words, **_words(obj), where=WHERE[obj.position])
    named, other = scene.objects[first], scene.objects[1 - first]
    second = {f"{key}2": value for key, value in _words(other).items()}
    return TWO_OBJECT_TEMPLATES[template].format(
        **words, **_words(named), **second, relation=RELATIONS[named.position]
    )


def captions_of(scene: Scene, rng: random.Random, n: int) -> list[str]:
    """`n` distinct captions of the scene (fewer if the templates run out), objects in either order."""
    templates = ONE_OBJECT_TEMPLATES if len(scene.objects) == 1 else TWO_OBJECT_TEMPLATES
    orders = range(len(scene.objects))
    choices = [(t, first) for t in range(len(templates)) for first in orders]
    return [caption(scene, t, first) for t, first in rng.sample(choices, min(n, len(choices)))]


def scene_of(text: str) -> Scene:
    """The scene a caption of the world names; ValueError naming what it lacks otherwise."""
    found = _OBJECT.findall(text)
    background = _BACKGROUND.search(text)
    if not found or len(found) > 2 or background is None:
        raise ValueError(
            f"not a mini-world caption (needs one or two 'SIZE COLOUR SHAPE' and "
            f"'COLOUR background'): {text!r}"
        )
    if len(found) == 1:
        where = [position for position, phrase in WHERE.items() if re.search(rf"\b{phrase}\b", text)]
        if len(where) != 1:
            raise ValueError(f"a one-object caption names one of {sorted(WHERE.values())}: {text!r}")
        positions = where
    else:
        relation = [position for position, phrase in RELATIONS.items() if f" {phrase} " in text]
        if len(relation) != 1:
            raise ValueError(f"a two-object caption names one of {sorted(RELATIONS.values())}: {text!r}")
        positions = [relation[0], OPPOSITE[relation[0]]]
    objects = [
        WorldObject(shape, colour, size, position)
        for (size, colour, shape), position in zip(found, positions)
    ]
    order = list(POSITIONS)
    scene = Scene(tuple(sorted(objects, key=lambda obj: order.index(obj.position))), background.group(1))
    scene.check()
    return scene


def _words(obj: WorldObject) -> dict[str, str]:
    return {"size": obj.size, "colour": obj.colour, "shape": obj.shape}
