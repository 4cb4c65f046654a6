from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.utils import create_feature_extractor

from experiments.config import FidConfig
from experiments.evaluation.fid import INCEPTION, compute_fid, generate_images, prepare_reference
from experiments.tiny.coco import CocoFixture, build_coco_fixture
from experiments.tiny.feature_extractor import TINY_EXTRACTOR, TinyFeatureExtractor, save_random_inception
from experiments.training.checkpoints import UnsafeCheckpointError

RESOLUTION = 32


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> CocoFixture:
    return build_coco_fixture(tmp_path_factory.mktemp("coco"), n_train=64, n_val=64, size=RESOLUTION)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_inception(tmp_path_factory.mktemp("weights") / "inception.pt")


def config(coco: CocoFixture, weights: Path | None = None, extractor: str = INCEPTION) -> FidConfig:
    return FidConfig(
        captions=str(coco.val_captions),
        images=str(coco.val_images),
        resolution=RESOLUTION,
        feature_extractor=extractor,
        inception_weights=None if weights is None else str(weights),
    )


def copy_images(sources: list[Path], folder: Path, change=lambda a: a) -> Path:
    """`sources` into `folder`, each passed through `change` (an HxWx3 uint8 array map)."""
    folder.mkdir(parents=True)
    for source in sources:
        with Image.open(source) as img:
            Image.fromarray(change(np.asarray(img.convert("RGB")))).save(folder / f"{source.stem}.png")
    return folder


def noise_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def count_extracted_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    forward = TinyFeatureExtractor.forward

    def counting(self, x: torch.Tensor):
        seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(TinyFeatureExtractor, "forward", counting)
    return seen


def test_prepare_reference_takes_the_captioned_images_once(tmp_path: Path, coco: CocoFixture) -> None:
    images = copy_images(sorted(coco.val_images.iterdir())[:8], tmp_path / "images")
    captioned = sorted(images.iterdir())[:6]
    Image.new("RGB", (50, 30)).save(images / "not-captioned.png")
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(f'{{"caption": "x", "image": "{p.name}"}}\n' for p in captioned))
    fid = FidConfig(captions=str(captions), images=str(images), resolution=16)
    cache = tmp_path / "cache"

    reference = prepare_reference(fid, cache)
    assert sorted(p.name for p in reference.iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert all(Image.open(p).size == (16, 16) for p in reference.iterdir())
    stamps = [p.stat().st_mtime_ns for p in sorted(reference.iterdir())]
    assert prepare_reference(fid, cache) == reference
    assert [p.stat().st_mtime_ns for p in sorted(reference.iterdir())] == stamps  # reused, not rewritten

    assert prepare_reference(replace(fid, resolution=8), cache) != reference
    captioned[0].write_bytes((images / "not-captioned.png").read_bytes())
    assert prepare_reference(fid, cache) != reference  # a changed source image makes a new set

    caption_only = tmp_path / "caption-only.jsonl"
    caption_only.write_text('{"caption": "x"}\n')
    whole_folder = prepare_reference(replace(fid, captions=str(caption_only)), cache)
    assert len(list(whole_folder.iterdir())) == 9


def test_generate_images_resumes_after_a_crash(tmp_path: Path) -> None:
    captions = [f"caption {i}" for i in range(10)]
    calls: list[int] = []
    crash = True

    def generate(batch: list[str], batch_index: int) -> list[Image.Image]:
        calls.append(batch_index)
        if crash and batch_index == 2:
            raise RuntimeError("killed")
        # Non-square and larger than the target: the output must be cropped like the reference.
        return [Image.new("RGB", (48, 24), (int(c.split()[1]) * 20, 0, 0)) for c in batch]

    def run(captions: list[str]) -> Path:
        out = tmp_path / "gen"
        return generate_images(generate, captions, out, batch_size=3, resolution=RESOLUTION, progress=False,
                               antialias=False)

    with pytest.raises(RuntimeError):
        run(captions)
    assert sorted(p.name for p in (tmp_path / "gen").glob("*.png")) == [f"{i:06d}.png" for i in range(6)]

    crash, calls[:] = False, []
    written = sorted(run(captions).glob("*.png"))
    assert calls == [2, 3]
    assert [p.name for p in written] == [f"{i:06d}.png" for i in range(10)]
    for i, path in enumerate(written):
        with Image.open(path) as img:
            assert img.size == (RESOLUTION, RESOLUTION) and img.getpixel((16, 16)) == (i * 20, 0, 0)

    calls[:] = []
    run(captions)
    assert calls == []
    with pytest.raises(ValueError, match="other captions"):
        run(captions[::-1])


def test_generate_images_shows_progress_only_when_asked(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    def generate(batch: list[str], batch_index: int) -> list[Image.Image]:
        return [Image.new("RGB", (8, 8)) for _ in batch]

    options = dict(batch_size=1, resolution=8, antialias=False)
    generate_images(generate, ["a", "b"], tmp_path / "quiet", progress=False, **options)
    assert capfd.readouterr().err == ""
    generate_images(generate, ["a", "b"], tmp_path / "loud", progress=True, **options)
    assert "2/2" in capfd.readouterr().err


def test_tiny_extractor_fid_separates_distributions(tmp_path: Path, coco: CocoFixture) -> None:
    fid, cache = config(coco, extractor=TINY_EXTRACTOR), tmp_path / "cache"
    reference = prepare_reference(fid, cache)
    train = sorted(coco.train_images.iterdir())
    same = compute_fid(copy_images(train, tmp_path / "same"), reference, fid, cache)
    swapped = copy_images(train, tmp_path / "swapped", lambda a: a[..., ::-1])  # colours changed, shapes kept
    shifted = compute_fid(swapped, reference, fid, cache)
    noise = compute_fid(noise_images(tmp_path / "noise", 64), reference, fid, cache)
    assert 0 < same and 2 * same < shifted < noise


def test_reference_statistics_are_cached_per_reference_set(
    tmp_path: Path, coco: CocoFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    fid, cache = config(coco, extractor=TINY_EXTRACTOR), tmp_path / "cache"
    reference = prepare_reference(fid, cache)
    generated = copy_images(sorted(coco.train_images.iterdir())[:16], tmp_path / "generated")
    extracted = count_extracted_images(monkeypatch)

    first = compute_fid(generated, reference, fid, cache)
    assert sum(extracted) == 16 + 64
    statistics = sorted(p.name for p in cache.glob("*stat-fid*"))
    assert len(statistics) == 1 and TINY_EXTRACTOR in statistics[0]

    extracted[:] = []
    assert compute_fid(generated, reference, fid, cache) == pytest.approx(first)
    assert sum(extracted) == 16  # only the generated set, every time

    changed = tmp_path / "changed"
    shutil.copytree(reference, changed)
    next(changed.iterdir()).unlink()
    extracted[:] = []
    compute_fid(generated, changed, fid, cache)
    assert sum(extracted) == 16 + 63
    assert len(list(cache.glob("*stat-fid*"))) == 2


def test_inception_fid_needs_local_weights(tmp_path: Path, coco: CocoFixture) -> None:
    args = (coco.train_images, coco.val_images)
    with pytest.raises(ValueError, match="fid.inception_weights"):
        compute_fid(*args, config(coco), tmp_path)
    with pytest.raises(FileNotFoundError, match="fid.inception_weights"):
        compute_fid(*args, config(coco, tmp_path / "missing.pt"), tmp_path)


def test_random_inception_loads_in_torch_fidelity_and_tells_images_apart(weights: Path, coco: CocoFixture):
    # torch-fidelity loads the state dict strictly: every parameter name and shape must match.
    extractor = create_feature_extractor(
        INCEPTION, ["2048"], cuda=False, feature_extractor_weights_path=str(weights), verbose=False
    )
    images = [np.asarray(Image.open(p)) for p in sorted(coco.val_images.iterdir())[:4]]
    with torch.no_grad():
        (features,) = extractor(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous())
    assert features.shape == (4, 2048)
    # Default-initialised convolutions give near-identical features for any input.
    assert features.std(dim=0).mean() > 0.05 * features.mean(dim=0).abs().mean()
    again = torch.load(save_random_inception(weights.with_name("again.pt")))
    assert all(torch.equal(again[k], v) for k, v in torch.load(weights).items())


def test_random_inception_fid_separates_distributions(tmp_path: Path, coco: CocoFixture, weights: Path):
    n = 8  # Inception at 299px: ~0.3 s per image on this CPU
    fid = config(coco, weights)
    reference = copy_images(sorted(coco.val_images.iterdir())[:n], tmp_path / "reference")
    same = copy_images(sorted(coco.train_images.iterdir())[:n], tmp_path / "same")
    noise = noise_images(tmp_path / "noise", n)
    assert 0 < 5 * compute_fid(same, reference, fid, tmp_path) < compute_fid(noise, reference, fid, tmp_path)


def test_shards_split_the_batches_between_them(tmp_path: Path) -> None:
    made: list[int] = []

    def generate(batch: list[str], batch_index: int) -> list[Image.Image]:
        made.append(batch_index)
        return [Image.new("RGB", (8, 8)) for _ in batch]

    captions = [f"caption {i}" for i in range(7)]
    generate_images(generate, captions, tmp_path, batch_size=2, resolution=8, progress=False, shard=(1, 3),
                    antialias=False)
    assert made == [1]  # batches 0..3; every third from batch 1
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["000002.png", "000003.png"]
    with pytest.raises(ValueError, match="shard 3 of 3"):
        generate_images(generate, captions, tmp_path, batch_size=2, resolution=8, progress=False,
                        shard=(3, 3), antialias=False)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_files_torch_fidelity_unpickles_are_checked_first(tmp_path: Path, coco: CocoFixture) -> None:
    """Its statistics cache and the Inception weights: a planted payload is refused, never run."""
    fid, cache = config(coco, extractor=TINY_EXTRACTOR), tmp_path / "cache"
    reference = prepare_reference(fid, cache)
    generated = copy_images(sorted(coco.train_images.iterdir())[:8], tmp_path / "generated")
    compute_fid(generated, reference, fid, cache)
    (statistics,) = cache.glob("*stat-fid*")
    marker = tmp_path / "payload-ran"
    torch.save({"mu": _Payload(marker)}, statistics)
    with pytest.raises(UnsafeCheckpointError, match=f"{statistics}: refused"):
        compute_fid(generated, reference, fid, cache)
    weights = tmp_path / "inception.pt"
    torch.save({"conv": _Payload(marker)}, weights)
    with pytest.raises(UnsafeCheckpointError, match=f"{weights}: refused"):
        compute_fid(generated, reference, config(coco, weights), tmp_path / "other")
    assert not marker.exists()
