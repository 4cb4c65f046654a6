"""`repro generate`: images from a trained run, named by its directory, config hash, MLflow run
id or one of its checkpoints, or from a folder `repro export` wrote."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from repro.config.load import ConfigError
from repro.config.stored import stored_config
from repro.sharing.run_reference import find_run


def read_images(paths: list[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as bad:
            raise ConfigError(f"--image {path}: cannot read it as an image: {bad}") from None
    return images


def generate_to_folder(
    reference: str, prompt: str, image_paths: list[Path], out: Path, *, workdir: Path,
    tracking_uri: str, count: int, guidance: float, steps: int, sampler: str, size: int | None,
    seed: int,
) -> list[Path]:
    folder, weights = find_run(reference, workdir, tracking_uri)
    images = read_images(image_paths)
    from experiments.recipes.generation import generate, load_exported, load_kosmos_g
    from models.conditioning import saved_config

    exported = saved_config(folder)
    try:
        if exported is not None:
            conditioner, decoder = load_exported(folder)
            size = size or exported["sample_size"]
        else:
            config = stored_config(folder)
            conditioner, decoder = load_kosmos_g(config, weights)
            size = size or config.fid.generate_size
        made = generate(conditioner, decoder, prompt, images, count=count, guidance=guidance,
                        steps=steps, sampler=sampler, size=size, seed=seed)
    except ValueError as bad:  # a refused checkpoint, placeholders that do not match the images...
        raise ConfigError(str(bad)) from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, image in enumerate(made):
        path = out / f"{seed}-{k}.png"
        image.save(path)
        written.append(path)
    return written
