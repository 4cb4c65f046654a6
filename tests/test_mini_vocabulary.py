"""The mini models' tokenizers, built from the world's words, read every caption of the world and
every DreamBench caption word for word: no word is split or unknown."""

from __future__ import annotations

import random
import re

from transformers import CLIPTokenizer

from experiments.data.dreambench_layout import read_prompts_file
from experiments.mini.captions import EDIT_TEMPLATES, captions_of
from experiments.mini.scenes import random_scene
from experiments.mini.vocabulary import MINI_WORDS
from experiments.tiny.dreambench_subjects import PROMPTS_FILE
from experiments.tiny.models import kosmos2_word_tokenizer, save_clip_tokenizer


def _texts() -> list[str]:
    rng = random.Random(0)
    texts = [text for _ in range(200) for text in captions_of(random_scene(rng), rng, 4)]
    texts += [template.format(shape="cross", colour="red", new_colour="blue") for template in EDIT_TEMPLATES]
    prompts = read_prompts_file(PROMPTS_FILE)
    texts += [
        template.caption(name)
        for template in prompts.object_templates + prompts.live_templates
        for name in prompts.classes.values()
    ]
    return texts


def test_mini_tokenizers_keep_every_world_and_dreambench_word_whole(tmp_path):
    save_clip_tokenizer(tmp_path, MINI_WORDS)
    clip = CLIPTokenizer.from_pretrained(tmp_path)
    kosmos2 = kosmos2_word_tokenizer(MINI_WORDS)
    for text in _texts():
        words = re.findall(r"[a-z]+", text.lower())
        assert [token.removesuffix("</w>") for token in clip.tokenize(text) if token[0].isalpha()] == words
        ids = kosmos2(text, add_special_tokens=False).input_ids
        assert kosmos2.unk_token_id not in ids, text
        assert [token for token in kosmos2.convert_ids_to_tokens(ids) if token[0].isalpha()] == words
