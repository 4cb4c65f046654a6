"""`repro generate`: images from a trained run, named by its directory, config hash, MLflow run
id or one of its checkpoint files."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image, UnidentifiedImageError

from repro import tags
from repro.config.load import ConfigError
from repro.config.stored import stored_config


def find_run(reference: str, workdir: Path, tracking_uri: str) -> tuple[Path, Path]:
    """(run directory, weights) for a run directory, a checkpoint file in one, a config hash
    under WORKDIR/runs, or an MLflow run id."""
    path = Path(reference).expanduser()
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, path
    if path.is_dir():
        return path, path
    by_hash = workdir / "runs" / reference
    if by_hash.is_dir():
        return by_hash, by_hash
    try:
        run = MlflowClient(tracking_uri).get_run(reference)
    except MlflowException:
        raise ConfigError(f"--checkpoint {reference!r}: not a file, a run directory, a config hash "
                          f"under {workdir / 'runs'} or an MLflow run id at {tracking_uri}") from None
    config_hash = run.data.tags.get(tags.CONFIG_HASH)
    run_dir = workdir / "runs" / str(config_hash)
    if not run_dir.is_dir():
        raise ConfigError(f"--checkpoint {reference!r}: MLflow run of config {config_hash}, but "
                          f"{run_dir} is not here; pass --workdir of the machine that trained it")
    return run_dir, run_dir


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
    run_dir, weights = find_run(reference, workdir, tracking_uri)
    config = stored_config(run_dir)
    images = read_images(image_paths)
    from experiments.recipes.generation import generate, load_kosmos_g

    try:
        conditioner, decoder = load_kosmos_g(config, weights)
        made = generate(conditioner, decoder, prompt, images, count=count, guidance=guidance,
                        steps=steps, sampler=sampler, size=size or config.fid.generate_size, seed=seed)
    except ValueError as bad:  # e.g. placeholders that do not match the images given
        raise ConfigError(str(bad)) from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, image in enumerate(made):
        path = out / f"{seed}-{k}.png"
        image.save(path)
        written.append(path)
    return written
