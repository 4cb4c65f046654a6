"""DreamBench's prompts file, the paper's prompt rewrites, the dataset reader and the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import DreamBenchConfig
from experiments.data.dreambench_layout import (
    TEMPLATES_PER_KIND,
    benchmark_prompts,
    load_subjects,
    read_prompts_file,
    selected_templates,
)
from experiments.tiny.dreambench_subjects import PROMPTS_FILE, build_dreambench_fixture

SHARED_PROMPTS_FILE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "dreambench" / "prompts_and_classes.txt"
)
# (code) eval/dreambench_prompts.py, LIVE_OBJECT
OFFICIAL_LIVE_SUBJECTS = {"cat", "cat2", "dog", "dog2", "dog3", "dog5", "dog6", "dog7", "dog8"}


@pytest.fixture(scope="module")
def prompts():
    return read_prompts_file(PROMPTS_FILE)


def config(root: Path, **overrides) -> DreamBenchConfig:
    return DreamBenchConfig(root=str(root), prompts=str(root / "prompts_and_classes.txt"), **overrides)


@pytest.mark.skipif(not SHARED_PROMPTS_FILE.is_file(), reason="no shared/data checkout next to this one")
def test_the_packaged_prompts_file_is_dreambooths_own():
    assert PROMPTS_FILE.read_bytes() == SHARED_PROMPTS_FILE.read_bytes()


def test_the_real_file_has_30_subjects_15_classes_and_25_templates_per_kind(prompts):
    assert len(prompts.classes) == 30
    assert len(set(prompts.classes.values())) == 15
    assert prompts.classes["bear_plushie"] == "stuffed animal" and prompts.classes["dog8"] == "dog"
    assert len(prompts.object_templates) == len(prompts.live_templates) == TEMPLATES_PER_KIND
    live = {s for s in prompts.classes if prompts.templates_for(s) == prompts.live_templates}
    assert live == OFFICIAL_LIVE_SUBJECTS


def test_kosmos_g_prompts_drop_the_article_and_move_attributes_behind_the_subject(prompts):
    objects, lives = prompts.object_templates, prompts.live_templates
    assert objects[0].kosmos_prompt() == "<i> in the jungle"
    assert objects[12].kosmos_prompt() == "<i> with the Eiffel Tower in the background"
    assert lives[13].kosmos_prompt() == "<i> wearing a black top hat and a monocle"
    rewrites = ["<i>, red", "<i>, purple", "<i>, shiny", "<i>, wet", "<i>, cube shaped"]
    assert [t.kosmos_prompt() for t in objects[20:]] == [t.kosmos_prompt() for t in lives[20:]] == rewrites
    assert all(t.kosmos_prompt().startswith("<i>") for t in objects + lives)


def test_clip_t_captions_are_the_original_templates_filled_with_the_class(prompts):
    assert prompts.object_templates[0].caption("backpack") == "a backpack in the jungle"
    assert prompts.object_templates[24].caption("stuffed animal") == "a cube shaped stuffed animal"
    assert prompts.live_templates[14].caption("dog") == "a dog in a chef outfit"


def test_benchmark_prompts_give_live_subjects_the_live_list(prompts, tmp_path):
    fixture = build_dreambench_fixture(tmp_path, subjects=("backpack", "dog"))
    subjects = load_subjects(config(fixture.root, subjects=("backpack", "dog")), prompts)
    made = benchmark_prompts(prompts, subjects, [10, 20])
    assert [(p.subject, p.template_index, p.input_prompt, p.caption) for p in made] == [
        ("backpack", 10, "<i> with a wheat field in the background",
         "a backpack with a wheat field in the background"),
        ("backpack", 20, "<i>, red", "a red backpack"),
        ("dog", 10, "<i> wearing a red hat", "a dog wearing a red hat"),
        ("dog", 20, "<i>, red", "a red dog"),
    ]


def test_every_template_runs_unless_some_are_chosen():
    assert selected_templates(()) == list(range(25))
    assert selected_templates((3, 1)) == [3, 1]
    with pytest.raises(ValueError, match=r"dreambench.templates: \[25\]"):
        selected_templates((0, 25))


def test_the_input_photo_is_the_first_one_unless_chosen(prompts, tmp_path):
    build_dreambench_fixture(tmp_path, subjects=("backpack", "dog"))
    default, chosen = load_subjects(
        config(tmp_path, subjects=("backpack", "dog"), input_images={"dog": "02.jpg"}), prompts
    )
    assert default.input_photo == tmp_path / "backpack" / "00.jpg"
    assert chosen.input_photo == tmp_path / "dog" / "02.jpg"
    assert [p.name for p in chosen.photos] == ["00.jpg", "01.jpg", "02.jpg"]


def test_every_subject_of_the_file_is_read_unless_some_are_chosen(prompts, tmp_path):
    build_dreambench_fixture(tmp_path, subjects=("backpack", "dog"))
    chosen = load_subjects(config(tmp_path, subjects=("dog", "backpack")), prompts)
    assert [s.name for s in chosen] == ["dog", "backpack"]
    with pytest.raises(FileNotFoundError, match=r"subject 'backpack_dog': no folder .*backpack_dog"):
        load_subjects(config(tmp_path), prompts)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (dict(subjects=("dog", "unicorn")), ValueError, r"dreambench.subjects: \['unicorn'\]"),
        (dict(subjects=("dog",), input_images={"dog": "07.jpg"}), FileNotFoundError, r"\['dog'\] = '07.jpg'"),
        (dict(subjects=("dog",), input_images={"unicorn": "00.jpg"}), ValueError, r"lacks: \['unicorn'\]"),
        (dict(subjects=("teapot",)), FileNotFoundError, r"subject 'teapot': no photos"),
    ],
)
def test_dataset_problems_name_the_subject(prompts, tmp_path, overrides, error, message):
    build_dreambench_fixture(tmp_path, subjects=("backpack", "dog"))
    (tmp_path / "teapot").mkdir()
    with pytest.raises(error, match=message):
        load_subjects(config(tmp_path, **overrides), prompts)


def test_a_file_that_is_not_dreambooths_is_refused(tmp_path):
    broken = tmp_path / "prompts.txt"
    broken.write_text(PROMPTS_FILE.read_text().replace("'a {0} {1} in the snow'", "'a {0} in the snow'", 1))
    with pytest.raises(ValueError, match=r"'a \{0\} in the snow' needs exactly one '\{0\} \{1\}'"):
        read_prompts_file(broken)
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog in the jungle\na red backpack\n")
    with pytest.raises(ValueError, match="no 'subject_name,class' line"):
        read_prompts_file(captions)


def test_the_fixture_is_deterministic_and_in_dreambooths_layout(tmp_path):
    first = build_dreambench_fixture(tmp_path / "a", subjects=("backpack", "dog"))
    build_dreambench_fixture(tmp_path / "b", subjects=("backpack", "dog"))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "backpack/00.jpg", "backpack/01.jpg", "backpack/02.jpg",
        "dog/00.jpg", "dog/01.jpg", "dog/02.jpg", "prompts_and_classes.txt",
    ]  # fmt: skip
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert first.prompts.read_bytes() == PROMPTS_FILE.read_bytes()
