"""MINI_WORDS: every word the mini world's captions and edit instructions can use, plus the words
of DreamBooth's prompts and classes (DreamBench's CLIP-T captions and Kosmos-G's prompts), from
which the mini models' tokenizers are built (experiments/tiny/models.py's builders)."""

from __future__ import annotations

import re

from experiments.data.dreambench_layout import read_prompts_file
from experiments.mini import captions, scenes
from experiments.tiny.dreambench_subjects import PROMPTS_FILE


def _words(text: str) -> set[str]:
    # Template slots ("{colour}") are not words; tokenizers split punctuation off and lowercase,
    # so only runs of letters become words.
    return set(re.findall(r"[a-z]+", re.sub(r"\{\w*\}", " ", text).lower()))


def _mini_words() -> tuple[str, ...]:
    texts = [
        *captions.ONE_OBJECT_TEMPLATES,
        *captions.TWO_OBJECT_TEMPLATES,
        *captions.EDIT_TEMPLATES,
        *captions.WHERE.values(),
        *captions.RELATIONS.values(),
        *scenes.SHAPES,
        *scenes.OBJECT_COLOURS,
        *scenes.BACKGROUNDS,
        *scenes.SIZES,
    ]
    prompts = read_prompts_file(PROMPTS_FILE)
    texts += [template.caption(name) for template in prompts.object_templates + prompts.live_templates
              for name in set(prompts.classes.values())]
    return tuple(sorted(set().union(*map(_words, texts))))


MINI_WORDS = _mini_words()
