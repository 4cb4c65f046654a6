"""DreamBench as DreamBooth ships it: `dataset/<subject>/00.jpg, 01.jpg, ...` and the
`prompts_and_classes.txt` file that lists each subject's class and the two lists of 25 prompt
templates (objects; live subjects), plus the prompts Kosmos-G is given for them.

The file is parsed as it is: a `subject_name,class` CSV block, then the "Object Prompts" and
"Live Subject Prompts" lists of `'a {0} {1} ...'.format(unique_token, class_token)` lines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS, DreamBenchConfig
from experiments.data.untrusted_images import open_untrusted_image

# (code) eval/dreambench_prompts.py: LIVE_OBJECT holds exactly the subjects of these classes
# (cat, cat2, dog, dog2, dog3, dog5-dog8); every other subject takes the object prompts.
LIVE_CLASSES = frozenset({"cat", "dog"})
TEMPLATES_PER_KIND = 25
# (code) drop_object=True: the input photo alone stands for the subject in Kosmos-G's prompt.
SUBJECT_PLACEHOLDER = "<i>"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

_CSV_HEADER = "subject_name,class"
_OBJECT_HEADER = "Object Prompts"
_LIVE_HEADER = "Live Subject Prompts"
_SUBJECT_SLOT = "{0} {1}"  # unique token, then class token
_TEMPLATE_LINE = re.compile(r"^\s*('(?:[^'\\]|\\.)*')\.format\(unique_token,\s*class_token\)\s*,?\s*$")


@dataclass(frozen=True)
class Template:
    """A prompt template split around its subject slot, e.g. "a red " + slot + ""."""

    before: str
    after: str

    def caption(self, class_name: str) -> str:
        """The text CLIP-T compares with: (code) the template filled with the class alone,
        "a dog in the jungle"."""
        return f"{self.before}{class_name}{self.after}"

    def kosmos_prompt(self, subject: str = SUBJECT_PLACEHOLDER) -> str:
        """The paper's rewrite: the leading "a" goes, and an attribute before the subject moves
        behind it ("a red {}" -> "{}, red"), so the prompt opens with the subject's image."""
        attribute = self.before.removeprefix("a ").strip()
        return f"{subject}{self.after}" + (f", {attribute}" if attribute else "")


@dataclass(frozen=True)
class PromptsFile:
    classes: dict[str, str]  # subject -> class, in the file's order
    object_templates: tuple[Template, ...]
    live_templates: tuple[Template, ...]

    def templates_for(self, subject: str) -> tuple[Template, ...]:
        return self.live_templates if self.classes[subject] in LIVE_CLASSES else self.object_templates


@dataclass(frozen=True)
class Subject:
    name: str
    class_name: str
    photos: tuple[Path, ...]  # sorted by file name
    input_photo: Path  # the one photo Kosmos-G sees


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One (subject, template) pair of the benchmark."""

    subject: str
    template_index: int
    input_prompt: str  # what Kosmos-G encodes, e.g. "<i> in the jungle"
    caption: str  # what CLIP-T scores against, e.g. "a dog in the jungle"


def read_prompts_file(path: str | Path) -> PromptsFile:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    classes = _read_classes(lines, path)
    object_templates = _read_templates(lines, _OBJECT_HEADER, path)
    live_templates = _read_templates(lines, _LIVE_HEADER, path)
    return PromptsFile(classes, object_templates, live_templates)


def _section_start(lines: list[str], header: str, path: str | Path) -> int:
    for index, line in enumerate(lines):
        if line.strip() == header:
            return index + 1
    raise ValueError(f"{path}: no {header!r} line; is this DreamBooth's prompts_and_classes.txt?")


def _read_classes(lines: list[str], path: str | Path) -> dict[str, str]:
    classes: dict[str, str] = {}
    for line in lines[_section_start(lines, _CSV_HEADER, path):]:
        if not line.strip():
            break
        subject, _, class_name = line.partition(",")
        if not class_name.strip():
            raise ValueError(f"{path}: {line!r} is not a 'subject,class' row")
        classes[subject.strip()] = class_name.strip()
    if not classes:
        raise ValueError(f"{path}: no subjects under {_CSV_HEADER!r}")
    return classes


def _read_templates(lines: list[str], header: str, path: str | Path) -> tuple[Template, ...]:
    start = _section_start(lines, header, path)
    opening = next((i for i in range(start, len(lines)) if lines[i].strip().endswith("[")), None)
    if opening is None:
        raise ValueError(f"{path}: no 'prompt_list = [' after {header!r}")
    templates = []
    for line in lines[opening + 1:]:
        if line.strip() == "]":
            break
        match = _TEMPLATE_LINE.match(line)
        if match is None:
            raise ValueError(
                f"{path}: {line!r} under {header!r} is not a '...'.format(unique_token, class_token) line"
            )
        text = ast.literal_eval(match.group(1))
        before, slot, after = text.partition(_SUBJECT_SLOT)
        if not slot or _SUBJECT_SLOT in after:
            raise ValueError(f"{path}: template {text!r} needs exactly one {_SUBJECT_SLOT!r}")
        templates.append(Template(before, after))
    if len(templates) != TEMPLATES_PER_KIND:
        raise ValueError(
            f"{path}: {len(templates)} templates under {header!r}, expected {TEMPLATES_PER_KIND}"
        )
    return tuple(templates)


def selected_subjects(prompts: PromptsFile, wanted: Sequence[str]) -> list[str]:
    """`wanted` in its order, or every subject of the file when it is empty."""
    unknown = [name for name in wanted if name not in prompts.classes]
    if unknown:
        raise ValueError(
            f"dreambench.subjects: {unknown} not in the prompts file's subjects {sorted(prompts.classes)}"
        )
    return list(wanted) if wanted else list(prompts.classes)


def selected_templates(wanted: Sequence[int]) -> list[int]:
    """`wanted` template indices, or all of them when it is empty."""
    out_of_range = [index for index in wanted if not 0 <= index < TEMPLATES_PER_KIND]
    if out_of_range:
        raise ValueError(f"dreambench.templates: {out_of_range} outside 0..{TEMPLATES_PER_KIND - 1}")
    return list(wanted) if wanted else list(range(TEMPLATES_PER_KIND))


def subject_photos(root: Path, subject: str) -> tuple[Path, ...]:
    folder = Path(root) / subject
    if not folder.is_dir():
        raise FileNotFoundError(f"DreamBench subject {subject!r}: no folder {folder}")
    photos = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES))
    if not photos:
        raise FileNotFoundError(
            f"DreamBench subject {subject!r}: no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}"
        )
    return photos


def open_photo(path: Path) -> Image.Image:
    """An RGB copy, so the file is closed at once (scoring opens thousands); UnusableImage, naming
    the file and why, for one that cannot be used: a benchmark photo is never skipped."""
    return open_untrusted_image(path, MAX_IMAGE_PIXELS)


def load_subject(root: Path, name: str, class_name: str, input_images: Mapping[str, str]) -> Subject:
    photos = subject_photos(root, name)
    if name not in input_images:
        return Subject(name, class_name, photos, photos[0])
    chosen = Path(root) / name / input_images[name]
    if chosen not in photos:
        raise FileNotFoundError(
            f"dreambench.input_images[{name!r}] = {input_images[name]!r}: no such photo in {chosen.parent}"
        )
    return Subject(name, class_name, photos, chosen)


def load_subjects(cfg: DreamBenchConfig, prompts: PromptsFile) -> list[Subject]:
    if cfg.root is None:
        raise ValueError("dreambench.root is not set: point it at DreamBooth's dataset/ folder")
    stray = sorted(set(cfg.input_images) - set(prompts.classes))
    if stray:
        raise ValueError(f"dreambench.input_images names subjects the prompts file lacks: {stray}")
    return [
        load_subject(Path(cfg.root), name, prompts.classes[name], cfg.input_images)
        for name in selected_subjects(prompts, cfg.subjects)
    ]


def benchmark_prompts(
    prompts: PromptsFile, subjects: Sequence[Subject], template_indices: Sequence[int]
) -> list[BenchmarkPrompt]:
    """Subject-major: every chosen template of the first subject, then the next subject's."""
    out = []
    for subject in subjects:
        templates = prompts.templates_for(subject.name)
        for index in template_indices:
            template = templates[index]
            caption = template.caption(subject.class_name)
            out.append(BenchmarkPrompt(subject.name, index, template.kosmos_prompt(), caption))
    return out
