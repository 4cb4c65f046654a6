"""Installs torchvision_cpu_shim into the running interpreter's site-packages, with the .pth
line that loads it at start-up (see that module's docstring for why)."""

import shutil
import sysconfig
from pathlib import Path

SHIM = Path(__file__).with_name("torchvision_cpu_shim.py")


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    shutil.copyfile(SHIM, site / SHIM.name)
    (site / "torchvision_cpu_shim.pth").write_text(f"import {SHIM.stem}\n")
    print(f"installed {SHIM.name} into {site}")


if __name__ == "__main__":
    main()
