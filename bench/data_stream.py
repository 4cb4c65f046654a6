"""(f) The streaming data path at two sizes: synthetic LAION-like parquet (the published columns,
row groups of 10k) at 20k and 2M captions, and webdataset image shards. Per case and worker
count: time from nothing to the first batch, peak RSS and items/s, each in a fresh process (so
peaks do not carry over); and the stage-2 tiny run itself (5 steps, no FID) on each caption
folder: wall time and peak RSS of the whole `repro run`."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench._common import CACHE, ROOT, TINY_ASSETS, parse_args, report

ROWS_PER_FILE = 200_000
ROW_GROUP = 10_000
WORDS = (
    "a", "red", "blue", "dog", "cat", "on", "the", "beach", "in", "snow", "photo", "of", "small", "large",
)


def laion_folder(captions: int) -> Path:
    """`captions` LAION metadata rows in part files of at most 200k, written once under .cache."""
    folder = CACHE / "bench-laion" / str(captions)
    if (folder / "COMPLETE").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for part, first in enumerate(range(0, captions, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, captions - first)
        texts = [
            " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 2 + i % 9))
            for i in range(first, first + n)
        ]
        table = pa.table({
            "URL": [f"https://example.invalid/{i}.jpg" for i in range(first, first + n)],
            "TEXT": texts,
            "WIDTH": pa.array([512] * n, pa.int32()), "HEIGHT": pa.array([512] * n, pa.int32()),
            "similarity": pa.array([0.3] * n, pa.float64()),
        })
        pq.write_table(table, folder / f"part-{part:05d}.snappy.parquet", row_group_size=ROW_GROUP)
    (folder / "COMPLETE").write_text("1")
    return folder


def measure_loader(spec: str, kind: str, workers: int, steps: int, batch: int) -> dict:
    """In this (fresh) process: open the source, stream `steps` batches, report."""
    started = time.perf_counter()
    from transformers import CLIPTokenizer

    from experiments.config import MAX_IMAGE_PIXELS, DataConfig
    from experiments.data.batches import WHOLE
    from experiments.data.items import CaptionItem, ImageCaptionItem
    from experiments.data.shards import open_shards
    from experiments.data.stream import StepRows, StepStream

    captions = CaptionItem(CLIPTokenizer.from_pretrained(TINY_ASSETS / "sd" / "tokenizer"), 75)
    convert = captions if kind == "captions" else ImageCaptionItem(captions, None, 256, MAX_IMAGE_PIXELS)
    rows = StepRows(open_shards(spec, cache_dir=CACHE), convert, batch, seed=0)
    stream = StepStream(rows, DataConfig(train=spec, heldout="", num_workers=workers), pin_memory=False)
    with stream.streaming(0, [WHOLE]):
        stream.take(0, WHOLE)
        first = time.perf_counter() - started
        tick = time.perf_counter()
        for step in range(1, steps + 1):
            stream.take(step, WHOLE)
        rate = steps * batch / (time.perf_counter() - tick)
    return {"first_batch_s": round(first, 2), "items_per_s": round(rate, 1), "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's resident high-water mark. Read from /proc (VmHWM), which exec resets; Linux
    carries getrusage's ru_maxrss over from the parent that forked us."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


# `repro run` in a process that reports its own peak memory and its workers' when it ends.
_MEASURED_RUN = (
    "import json, sys\n"
    "from bench.data_stream import peak_rss_mib\n"
    "from repro.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps({'code': code, 'peak_rss_mib': peak_rss_mib()}))\n"
)


def stage2_run(folder: Path, workdir: Path) -> dict:
    """`repro run` of the tiny 12-layer AlignerNet for 5 steps on `folder`, debug executor."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "experiments.toml").write_bytes((ROOT / "experiments.toml").read_bytes())
    argv = ["--workdir", str(workdir), "run", "--tier", "tiny", "--only", "aligner-12", "--seeds", "0",
            "--executor", "debug", "--no-report", "--force", "--set", f"data.train={folder}",
            "--set", "train.steps=5", "--set", "train.optim.warmup_steps=1", "--set", "fid.enabled=false",
            "--set", "train.cache_encoder_outputs=false"]
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _MEASURED_RUN, *argv], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    if figures.pop("code"):
        raise RuntimeError(f"repro run failed on {folder}: see {workdir}")
    return {"wall_s": round(time.perf_counter() - started, 1), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=5, metavar=("SPEC", "KIND", "WORKERS", "STEPS", "BATCH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--skip-runs", action="store_true", help="loader figures only")
    args = parse_args(parser)
    if args.child:
        spec, kind, workers, steps, batch = args.child
        print(json.dumps(measure_loader(spec, kind, int(workers), int(steps), int(batch))))
        return
    load = os.getloadavg()
    from experiments.tiny.assets import ensure_tiny_assets
    from experiments.tiny.paper_formats import write_webdataset

    ensure_tiny_assets(TINY_ASSETS)
    images = CACHE / "bench-wds"
    if not (images / "00000.tar").is_file():
        write_webdataset(TINY_ASSETS / "coco" / "captions_train.json", TINY_ASSETS / "coco" / "train", images)
    cases = {f"laion-{n}": (str(laion_folder(n)), "captions", 20, 256) for n in (20_000, 2_000_000)}
    cases["webdataset-images"] = (str(images), "images", 10, 16)
    figures: dict = {}
    for name, (spec, kind, steps, batch) in cases.items():
        for workers in (0, 1, 2):
            out = subprocess.run([sys.executable, "-m", "bench.data_stream", "--threads", str(args.threads),
                                  "--child", spec, kind, str(workers), str(steps), str(batch)],
                                 check=True, capture_output=True, text=True, cwd=ROOT).stdout
            figures[f"{name}/workers={workers}"] = json.loads(out.strip().splitlines()[-1])
    if not args.skip_runs:
        for n in (20_000, 2_000_000):
            figures[f"stage2-run/laion-{n}"] = stage2_run(laion_folder(n), CACHE / "bench-data-run" / str(n))
    report("data_stream", figures, load)


if __name__ == "__main__":
    main()
