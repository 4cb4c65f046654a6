"""The published formats, read a group of rows at a time: parquet (LAION, COYO), CC's TSVs,
JSONL and COCO caption files, img2dataset's webdataset shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.items import CaptionItem, ImageCaptionItem
from experiments.data.shards import GROUP_ROWS, DataError, open_shards
from experiments.data.stream import Skip
from experiments.tiny.paper_formats import write_webdataset


def rows(spec: str, **options) -> list:
    return [record for shard in open_shards(spec, **options)
            for group in range(len(shard.group_sizes())) for record in shard.read_group(group)]


def write_parquet(path: Path, column: str, texts: list[str], row_group: int = 3) -> Path:
    pq.write_table(pa.table({"URL": [f"u{i}" for i in range(len(texts))], column: texts}), path,
                   row_group_size=row_group)
    return path


def test_parquet_folder_reads_laion_and_coyo_columns_by_row_group(tmp_path):
    write_parquet(tmp_path / "part-00000.snappy.parquet", "TEXT", ["a", "b", "c", "d"])
    write_parquet(tmp_path / "part-00001.snappy.parquet", "TEXT", ["e"])
    shards = open_shards(str(tmp_path))
    assert [s.group_sizes() for s in shards] == [[3, 1], [1]]  # from the footers alone
    assert [r.caption for r in rows(str(tmp_path))] == list("abcde")
    coyo = write_parquet(tmp_path / "coyo.parquet", "text", ["x", "y"])
    assert [r.caption for r in rows(str(coyo))] == ["x", "y"]
    assert [r.caption for r in rows(str(tmp_path / "part-*.parquet"))] == list("abcde")


def test_parquet_without_a_caption_column_names_the_columns_and_the_key(tmp_path):
    path = write_parquet(tmp_path / "odd.parquet", "caption_en", ["a"])
    with pytest.raises(DataError, match=r"odd.parquet: no caption column TEXT or text or caption among URL, "
                                        r"caption_en; set data.text_column"):
        open_shards(str(path))
    assert [r.caption for r in rows(str(path), text_column="caption_en")] == ["a"]


def test_cc3m_and_cc12m_tsvs_find_their_caption_column(tmp_path):
    cc3m, cc12m = tmp_path / "cc3m.tsv", tmp_path / "cc12m.tsv"
    cc3m.write_text("a dog\thttps://x/1.jpg\n\na cat\thttps://x/2.jpg\n")
    cc12m.write_text("https://x/1.jpg\ta bird\nhttps://x/2.jpg\ta fish\n")
    assert [r.caption for r in rows(str(cc3m), cache_dir=tmp_path)] == ["a dog", "a cat"]
    assert [r.caption for r in rows(str(cc12m), cache_dir=tmp_path)] == ["a bird", "a fish"]
    assert list((tmp_path / "line-index").glob("*.npy"))  # indexed once, read from cache next time


def test_line_files_span_groups_and_a_bad_line_is_a_row_to_skip(tmp_path):
    manifest = tmp_path / "captions.jsonl"
    lines = [json.dumps({"caption": f"c{i}"}) for i in range(GROUP_ROWS + 5)]
    lines[7] = "not json"
    manifest.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe broken\n")
    (shard,) = open_shards(str(manifest))
    assert shard.group_sizes() == [GROUP_ROWS, 6]
    records = rows(str(manifest))
    assert records[1].caption == "c1" and records[GROUP_ROWS + 4].caption == f"c{GROUP_ROWS + 4}"
    assert records[7].caption is None and "not JSON" in records[7].key
    assert records[-1].caption is None and "not UTF-8" in records[-1].key
    assert CaptionItem(_words(), 75)(records[7]) == Skip("no_caption")


def test_webdataset_shards_carry_captions_and_images_and_a_corrupt_image_is_skipped(tiny_assets, tmp_path):
    coco = tiny_assets / "coco"
    shards_dir = write_webdataset(coco / "captions_train.json", coco / "train", tmp_path / "wds",
                                  per_shard=10)
    spec = str(shards_dir / "00000.tar")
    records = rows(spec)
    assert len(records) == 10 and all(r.caption and isinstance(r.image, bytes) for r in records)
    with Image.open(io.BytesIO(records[0].image)) as image:
        assert image.format == "JPEG"
    # A shard without img2dataset's stats file is counted from its tar headers.
    (shards_dir / "00000_stats.json").unlink()
    assert open_shards(spec)[0].group_sizes() == [10]
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        for name, data in (("k0.jpg", b"not a jpeg"), ("k0.txt", b"a red circle")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (record,) = rows(str(broken))
    item = ImageCaptionItem(CaptionItem(_words(), 75), None, 32, MAX_IMAGE_PIXELS)
    assert item(record) == Skip("corrupt_image")


def test_a_spec_that_names_nothing_usable_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        open_shards(str(tmp_path / "missing.parquet"))
    with pytest.raises(DataError, match="matches no file"):
        open_shards(str(tmp_path / "*.parquet"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unknown data format '.txt'"):
        open_shards(str(tmp_path / "notes.txt"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable parquet file"):
        open_shards(str(tmp_path / "bad.parquet"))


class _words:
    """A stand-in tokenizer: one token per word."""

    def __call__(self, text: str, **_: object):
        return type("Encoded", (), {"input_ids": text.split()})()
