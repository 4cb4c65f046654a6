"""`repro data build` over many input shards: one task per input manifest (a job-array task on
SLURM), each writing its own output shard `part-NNNNN/` (compositional.jsonl + segments/), so
tasks never share a file and a build resumes shard by shard: a part whose manifest exists is
finished (build_compositional renames it into place only at the end) and is not built again.
Stage 3 reads the parts back as one source: `data.compositional = "OUT/part-*/compositional.jsonl"`."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.build import (
    DEFAULT_SEGMENT_SIZE,
    DEFAULT_THRESHOLD,
    MANIFEST_NAME,
    BuildStats,
    build_compositional,
)
from experiments.data.manifest import ManifestError


@dataclass(frozen=True)
class BuildPart:
    """One task: an input manifest and the output shard it becomes. Small and picklable."""

    captioned: Path
    out_dir: Path
    clipseg: Path | None
    device: str
    threshold: float
    segment_size: int
    max_image_pixels: int

    @property
    def done(self) -> bool:
        return (self.out_dir / MANIFEST_NAME).is_file()


def build_parts(
    captioned: str, out: Path, clipseg: Path | None, device: str, *, threshold: float | None = None,
    segment_size: int | None = None, max_image_pixels: int | None = None,
) -> list[BuildPart]:
    """One part per input manifest `captioned` names (a file or a glob), in sorted order;
    threshold and segment_size default to the official build's (experiments/data/build.py),
    max_image_pixels to data.max_image_pixels's."""
    is_pattern = any(c in captioned for c in "*?[")
    inputs = sorted(Path(p) for p in glob.glob(captioned)) if is_pattern else [Path(captioned)]
    if not inputs:
        raise ManifestError(f"--captioned {captioned}: the pattern matches no manifest")
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    segment_size = DEFAULT_SEGMENT_SIZE if segment_size is None else segment_size
    max_image_pixels = MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels
    return [BuildPart(path, Path(out) / f"part-{k:05d}", clipseg, device, threshold, segment_size,
                      max_image_pixels)
            for k, path in enumerate(inputs)]


def build_part(part: BuildPart) -> BuildStats:
    """Builds one part (the segmenter loads in the task, where it runs)."""
    segmenter = None
    if part.clipseg is not None:
        from experiments.data.clipseg import ClipSegSegmenter

        segmenter = ClipSegSegmenter.from_pretrained(part.clipseg, device=part.device)
    return build_compositional(part.captioned, part.out_dir, segmenter, part.threshold, part.segment_size,
                               part.max_image_pixels)
