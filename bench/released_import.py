"""(g) `repro import stage1` on a released-layout checkpoint: seconds to build and write it (what
`repro fixtures full` would spend on a stand-in) and the writer's peak RSS, seconds to read the fairseq pickle
safely (torch's weights_only unpickler with stand-ins, memory-mapped), seconds for the whole
import (renaming, float32 copy, tokenizer, safetensors), the import's peak RSS (Linux's VmHWM), and the sizes.

The checkpoint is an official-named MLLM (experiments/fixtures/kosmos_g_official.py) at the
paper's widths with random weights, saved as fairseq saves it (fp16); --layers shrinks the depth
of both towers for a box without the memory. The vocabulary is the official repository's data/
when --vocabulary names it, else a stand-in SentencePiece model (about 1,000 pieces, so the
embedding has about 1,000 rows, not 64,007).

    python -m bench.released_import --layers 2
    python -m bench.released_import --vocabulary /path/to/Kosmos-G/data     # full size: ~20 GB RAM
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from bench._common import parse_args, report
from experiments.fixtures.kosmos_g_official import (
    OfficialKosmosGMLLM,
    save_fairseq_checkpoint,
    save_official_vocabulary,
)
from experiments.fixtures.xlmr_tokenizer import SPM_FILE
from experiments.released.fairseq_pickle import read_fairseq_checkpoint
from experiments.released.import_stage1 import import_stage1
from experiments.released.official_dictionary import official_vocabulary_size


def _import(checkpoint: Path, spm_file: Path, dict_file: Path, out: Path, seconds) -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    read_fairseq_checkpoint(checkpoint)
    seconds["read_s"] = time.perf_counter() - started
    started = time.perf_counter()
    import_stage1(checkpoint, spm_file, dict_file, out)
    seconds["import_s"] = time.perf_counter() - started
    # VmHWM starts afresh at exec, unlike ru_maxrss, which a spawned child inherits from its parent.
    status = Path("/proc/self/status").read_text()
    high_water = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    seconds["peak_mb"] = int(high_water.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="text and vision layers (paper: 24 each)")
    parser.add_argument("--vocabulary", type=Path, default=None, help="the official data/ folder")
    args = parse_args(parser)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        if args.vocabulary:
            spm_file, dict_file = args.vocabulary / SPM_FILE, args.vocabulary / "dict.txt"
        else:
            spm_file, dict_file = save_official_vocabulary(scratch)
        started = time.perf_counter()
        official = OfficialKosmosGMLLM(
            vocabulary=official_vocabulary_size(spm_file, dict_file), width=2048, layers=args.layers,
            heads=32,
            ffn=8192, vision_width=1024, vision_layers=args.layers, vision_heads=16, image_size=224, patch=14,
            queries=64)
        parameters = sum(p.numel() for p in official.parameters())
        checkpoint = save_fairseq_checkpoint(official.state_dict(), 32, scratch / "checkpoint_stage1.pt")
        del official
        write_s = time.perf_counter() - started
        write_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with multiprocessing.Manager() as manager:
            seconds = manager.dict()
            child = multiprocessing.get_context("spawn").Process(
                target=_import, args=(checkpoint, spm_file, dict_file, scratch / "imported", seconds))
            child.start()
            child.join()
            figures = dict(seconds)
        out_bytes = sum(f.stat().st_size for f in (scratch / "imported").rglob("*") if f.is_file())
        report("released_import", {
            "layers": args.layers, "parameters": parameters,
            "vocabulary": "official" if args.vocabulary else "stand-in",
            "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 1),
            "imported_mb": round(out_bytes / 2**20, 1),
            "write_s": round(write_s, 2), "write_peak_rss_mb": round(write_peak_mb, 1),
            "read_s": round(figures["read_s"], 2), "import_s": round(figures["import_s"], 2),
            "import_peak_rss_mb": round(figures["peak_mb"], 1),
        }, load)


if __name__ == "__main__":
    main()
