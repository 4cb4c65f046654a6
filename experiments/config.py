"""Typed, frozen configuration of one run, as the recipes consume it.

The harness (repro/) builds a `RunConfig` from experiments.toml; recipes and tests build one
directly. Every field has the paper's value (shared/PAPER.md) as its default where the paper or
the official code pins one, so a full-tier config only needs paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# The aligner's section is the model's own config (models/aligner_config.py), re-exported here.
from models.aligner_config import AlignerConfig

Precision = Literal["no", "bf16", "fp16"]
Parallelism = Literal["ddp", "fsdp"]
Sampler = Literal["ddim", "dpm"]
# Stage 3's data kinds, in the order of `data.mix`; each is a DataConfig field naming its manifest.
Stage3Kind = Literal["compositional", "edits", "captioned"]
STAGE3_KINDS: tuple[Stage3Kind, ...] = get_args(Stage3Kind)
# The evaluations a run of a recipe that samples images may turn on: each names its config section.
Evaluation = Literal["fid", "dreambench"]
EVALUATIONS: tuple[Evaluation, ...] = get_args(Evaluation)
# torch-fidelity extractors: its FID Inception, the tiny one experiments.tiny.feature_extractor
# registers, or the mini world's attribute classifier (experiments.mini.feature_extractor).
FeatureExtractor = Literal["inception-v3-compat", "tiny-random-conv", "mini-attribute-classifier"]
# PIL's Image.MAX_IMAGE_PIXELS, its decompression-bomb limit (about 9459 x 9459 pixels): the
# default and the ceiling of data.max_image_pixels.
MAX_IMAGE_PIXELS = 89_478_485


@dataclass(frozen=True)
class ModelSources:
    """Where the pretrained pieces load from: local directories (or hub ids already cached)."""

    mllm: str  # Kosmos-2 checkpoint: Kosmos2Model weights + tokenizer + image processor
    stable_diffusion: str  # SD v1.5 layout: unet/ vae/ text_encoder/ tokenizer/ scheduler/
    # A released Kosmos-G checkpoint as `repro import stage2|final` wrote it (the "released" recipe).
    released: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and linear decay to 0 (paper; eps and clip from the code)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int = 375
    grad_clip: float = 2.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300_000
    batch_size: int = 3_584
    optim: OptimConfig = field(default_factory=OptimConfig)
    precision: Precision = "no"
    max_caption_tokens: int = 75  # (code) captions longer than 75 CLIP tokens are dropped
    # (code) Stage 2 (and E2E, on the same captions) also drops captions over 85 SentencePiece
    # tokens (laion2b_loader.py's length_filter; its 128-token filter is then moot).
    max_caption_sp_tokens: int = 85
    # The MLLM's text dropout and attention dropout in the recipes that train through it. (code)
    # kosmosg_xl sets both to 0.1 and stage 2 never calls eval() on the frozen MLLM, so its
    # states (M's input and L_rec's target) carry dropout noise; 0 runs a frozen MLLM in eval mode.
    mllm_dropout: float = 0.1
    # (code) L_rec averages over every position, padding included, whose target is the MLLM's
    # state at the pad token (unilm/models/aligner.py); true: over real tokens only.
    rec_mask_padding: bool = False
    # (code) The MLLM never sees `</s>` (the loaders drop it, inference tokenizes without it);
    # true ends every prompt with it, in training and in generation alike.
    append_eos: bool = False
    rec_weight: float = 1.0  # scales the (77 / l_s)-weighted reconstruction term
    null_condition_prob: float = 0.1  # (code) e2e: share of conditions replaced by the null one
    # Stage 2: share of captions replaced by the empty one, whose MLLM prompt is "<s>" alone (the
    # null condition) and whose target is the decoder's encoding of "", so that aligning also
    # learns guidance's unconditional branch. (code) 0: the official stage 2 trains the null
    # nowhere; only the diffusion stages do, through null_condition_prob.
    empty_caption_prob: float = 0.0
    resolution: int = 512  # e2e: training image size fed to the VAE
    log_every: int = 50
    eval_every: int = 2_000  # held-out loss, also the value a sweep pruner sees
    checkpoint_every: int = 2_000  # (code) --save-interval-updates 2000
    divergence_threshold: float = 1e4  # a loss above this (or non-finite) ends the run as failed
    # Stage 2: keep the frozen encoders' outputs per caption (in memory and under the work
    # dir's .cache), so later epochs and rows sharing the encoders skip recomputing them.
    cache_encoder_outputs: bool = False
    compile: bool = False  # torch.compile the objective's loss (the trainable's forward and backward)
    # Largest batch one rank puts through one forward/backward; the global `batch_size` is split
    # over the ranks and, past this size, over gradient-accumulation micro-batches. None: one
    # micro-batch per rank (batch_size / world size).
    micro_batch_size: int | None = None
    # How several ranks hold the trainable: "ddp", a whole replica each; "fsdp", a 1/W shard each
    # of its weights, gradients and AdamW state (experiments/training/fsdp.py), for a trainable that does
    # not fit one GPU beside its optimiser (stage 3's unfrozen 1.6B MLLM). Same steps either way.
    parallelism: Parallelism = "ddp"
    # FSDP: each rank's checkpoint shards are copied to memory and written while training goes on
    # (experiments/training/checkpoints.py); the next, last or preemption checkpoint waits for them.
    async_checkpoint: bool = False
    # Stage 3 (instruct) starts from an aligned stage-2 run: a checkpoint file, a run directory
    # (its latest checkpoint), or `@run/<config hash>`, which the harness fills in from the
    # experiment's `after` and re-roots in the work dir's runs/.
    init_from: str | None = None
    # instruct, (code) --random-drop-caption-prob 0.5 (runtrain.sh): the entity words of a
    # compositional caption are dropped, all at once, their images kept; and the caption of an
    # edit row is dropped, leaving "<i> instruction".
    entity_drop_prob: float = 0.5
    edit_caption_drop_prob: float = 0.5
    background_keep_prob: float = 0.5  # instruct: a segment keeps its original background
    # instruct: the MLLM trains too, its vision tower frozen except the last this-many layers.
    trainable_vision_layers: int = 1


@dataclass(frozen=True)
class DataConfig:
    """Caption data: a COCO-format captions JSON or a JSONL manifest ({"caption", "image"?}),
    and stage 3's three manifests (formats in experiments/data/stage3_rows.py)."""

    train: str  # parquet, webdataset .tar shards, a TSV, a JSONL manifest or a COCO JSON (data/shards.py)
    heldout: str
    # The caption column of parquet shards where it is neither LAION's TEXT nor COYO's text.
    text_column: str | None = None
    # DataLoader workers that read, decode and filter rows ahead of the step; None: one per CPU
    # the task has beyond the training process's own (at most 8).
    num_workers: int | None = None
    train_images: str | None = None  # image root; needed by recipes that see images (e2e)
    heldout_images: str | None = None  # likewise for the held-out captions
    heldout_size: int = 256
    compositional: str | None = None  # instruct: constructed entity rows (JSONL manifest)
    edits: str | None = None  # instruct: InstructPix2Pix-style edit rows (JSONL manifest)
    captioned: str | None = None  # instruct: caption-only text-to-image rows (JSONL manifest)
    mix: tuple[float, float, float] = (2.0, 2.0, 1.0)  # compositional : edits : captioned
    # Skipped rows are expected (a dead image, a bad line); past this fraction of the rows read
    # from one file, the data is broken rather than noisy, and the run stops as FAILED.
    max_bad_fraction: float = 0.5
    # (code) Stage 3's caption-only rows come through laion2b_loader.py, which drops captions over
    # 128 SentencePiece tokens and images under 384 px on either side (width_height_filter).
    captioned_max_sp_tokens: int = 128
    captioned_min_image_side: int = 384
    # An image whose header claims more pixels is skipped before it is decoded (a decompression
    # bomb: a small file that decodes to gigabytes). At most PIL's own limit, past which PIL
    # warns and, past twice it, refuses: so this key alone decides (experiments/data/untrusted_images.py).
    max_image_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class FidConfig:
    """MS-COCO zero-shot FID protocol (paper, Table 1 right / Table 2)."""

    captions: str  # COCO captions JSON (captions_val2014.json)
    images: str  # reference image folder (val2014/)
    num_captions: int = 30_000
    caption_seed: int = 0  # (code) random.sample over all caption annotations, seed 0
    sampler: Sampler = "ddim"
    steps: int = 250
    guidance: float = 3.0
    generate_size: int = 512  # SD v1.5's native size
    # (code) Both sets: float pixels, short side bilinearly to 256, centre crop 256
    # (experiments/evaluation/fid_images.py). The official torchvision resized tensors without
    # antialiasing; true antialiases (torchvision >= 0.17's default), a different rule.
    resolution: int = 256
    antialias: bool = False
    batch_size: int = 16
    # The tiny extractor makes CPU smoke tests cheap; tables are computed with Inception.
    feature_extractor: FeatureExtractor = "inception-v3-compat"
    # Local file with torch-fidelity's Inception weights (pt_inception-2015-12-05). Required in
    # the full tier; the tiny tier points at random kaiming weights the harness saves itself.
    inception_weights: str | None = None
    # The mini world's attribute classifier (its safetensors file): set, every FID run also scores
    # its samples' attributes against their captions (eval/attribute_accuracy*), and the
    # "mini-attribute-classifier" extractor reads its features. Only the mini tier sets it.
    attribute_classifier: str | None = None
    enabled: bool = True  # off: the run trains (and logs its held-out loss) but skips FID
    # (code) sampling runs in fp16 (sample_kosmosg_coco.py); on a GPU only, a CPU samples in fp32.
    precision: Precision = "fp16"


Reference = Literal["input", "subject"]


@dataclass(frozen=True)
class DreamBenchConfig:
    """DreamBench single-entity subject-driven generation (paper, Table 1 left)."""

    enabled: bool = False
    root: str | None = None  # DreamBooth's dataset/ folder: one folder of photos per subject
    prompts: str | None = None  # DreamBooth's prompts_and_classes.txt
    subjects: tuple[str, ...] = ()  # empty: every subject the prompts file lists
    templates: tuple[int, ...] = ()  # template indices (0-24) to run; empty: all 25 (tiny tier: a few)
    # The one input photo per subject, by file name; a subject not listed uses its first photo.
    input_images: dict[str, str] = field(default_factory=dict)
    images_per_prompt: int = 4
    sampler: Sampler = "dpm"
    steps: int = 100
    guidance: float = 7.5
    generate_size: int = 512
    batch_size: int = 8  # prompts per sampling batch
    dino: str | None = None  # DINO ViT-S/16 as a transformers ViTModel directory
    clip: str | None = None  # CLIP ViT-B/32 as a transformers CLIPModel directory
    # What DINO and CLIP-I compare a generated image with: (code) the input photo, or the mean
    # over all the subject's photos.
    reference: Reference = "input"
    precision: Precision = "fp16"  # as fid.precision: half precision on a GPU, fp32 on a CPU


@dataclass(frozen=True)
class RunConfig:
    recipe: str  # a name in experiments.recipes.registry.RECIPES
    models: ModelSources
    aligner: AlignerConfig
    train: TrainConfig
    data: DataConfig
    fid: FidConfig
    dreambench: DreamBenchConfig = field(default_factory=DreamBenchConfig)
    seed: int = 0
