"""The rows of a released Kosmos-G checkpoint (Table 1's final model, Table 2's stage 2): the
export `repro import` made of it, sampled under this harness's protocol; nothing to train."""

from __future__ import annotations

from pathlib import Path

from experiments.config import RunConfig
from experiments.recipes.modules import frozen, pick_device
from experiments.recipes.registry import Generates
from models import ImageDecoder, KosmosGConditioner
from models.conditioning import saved_config


def check_same_stable_diffusion(export: Path, stable_diffusion: Path) -> None:
    """The import checked the file's U-Net, VAE and CLIP against the SD folder it was given and
    recorded it: sampling through another would not be the released model."""
    config = saved_config(export)
    if config is None:
        raise ValueError(f"models.released {export}: not a folder `repro import stage2|final` wrote "
                         "(no Kosmos-G config.json)")
    recorded = Path(config["stable_diffusion"]).resolve()
    if recorded != stable_diffusion.resolve():
        raise ValueError(f"models.released {export} was imported against Stable Diffusion {recorded}, but "
                         f"models.stable_diffusion is {stable_diffusion}: import it again with "
                         "--stable-diffusion set to the one the run samples with")


def build(config: RunConfig, cache_dir: Path | None) -> Generates:
    export, stable_diffusion = Path(config.models.released), Path(config.models.stable_diffusion)
    check_same_stable_diffusion(export, stable_diffusion)
    device = pick_device()
    conditioner = frozen(KosmosGConditioner.from_pretrained(export), device)
    return Generates(conditioner, frozen(ImageDecoder.from_pretrained(str(stable_diffusion)), device))
