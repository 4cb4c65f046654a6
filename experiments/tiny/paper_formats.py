"""The tiny COCO set again in the formats paper-scale data ships in, so the tiny tier streams
through the same readers as the full one: LAION-style metadata parquet (`part-*.snappy.parquet`,
caption column TEXT, several row groups each) and img2dataset-style webdataset shards
(`NNNNN.tar` of `KEY.jpg` + `KEY.txt` + `KEY.json`, with `NNNNN_stats.json`)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from experiments.data.captions import load_captions

ROW_GROUP = 100  # small, so that every tiny run reads across row-group and file boundaries


def write_laion_parquet(captions_file: Path, out: Path, files: int = 2, size: int = 32) -> Path:
    """Every caption of a COCO captions file as LAION metadata rows (of `size`-px images), split
    over `files` parts."""
    captions = load_captions(captions_file)
    out.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(captions) // files)
    for part in range(files):
        chunk = captions[part * per_file:(part + 1) * per_file]
        table = pa.table({
            "URL": [f"https://example.invalid/{c.image_file}" for c in chunk],
            "TEXT": [c.caption for c in chunk],
            "WIDTH": pa.array([size] * len(chunk), pa.int32()),
            "HEIGHT": pa.array([size] * len(chunk), pa.int32()),
            "similarity": pa.array([0.3] * len(chunk), pa.float64()),
        })
        pq.write_table(table, out / f"part-{part:05d}-tiny.snappy.parquet", row_group_size=ROW_GROUP)
    return out


def write_webdataset(captions_file: Path, images: Path, out: Path, per_shard: int = 100) -> Path:
    """One sample per image (its first caption), as img2dataset writes them."""
    firsts: dict[str, str] = {}
    for caption in load_captions(captions_file):
        if caption.image_file is not None:
            firsts.setdefault(caption.image_file, caption.caption)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(firsts)
    for shard, start in enumerate(range(0, len(names), per_shard)):
        chunk = names[start:start + per_shard]
        with tarfile.open(out / f"{shard:05d}.tar", "w") as tar:
            for k, name in enumerate(chunk):
                key = f"{shard:05d}{k:04d}"
                with Image.open(images / name) as image:
                    jpeg = io.BytesIO()
                    image.convert("RGB").save(jpeg, format="JPEG", quality=95)
                meta = {"url": f"https://example.invalid/{name}", "caption": firsts[name], "key": key}
                for extension, data in (("jpg", jpeg.getvalue()), ("txt", firsts[name].encode()),
                                        ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        stats = {"count": len(chunk), "successes": len(chunk), "failed_to_download": 0}
        (out / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    return out
