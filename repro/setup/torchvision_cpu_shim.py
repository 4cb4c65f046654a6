"""Make a CUDA build of torchvision importable on a CPU-only build of torch.

The registry's torchvision wheel links its ``_C`` extension against CUDA; on CPU torch that
library cannot load, and ``import torchvision`` then dies registering fake kernels for
``torchvision::nms`` and ``torchvision::qnms``, ops that only ``_C`` would have defined.
transformers, diffusers and torch-fidelity all import torchvision, so the whole stack fails.

The setup step copies this file into site-packages and adds a ``.pth`` line importing it. It
only installs a meta-path hook: torch is imported the first time something imports
torchvision, never at interpreter start-up. On a machine whose ``_C`` loads, it does nothing.
"""

import importlib.abc
import importlib.machinery
import os
import sys

# The op schemas torchvision's _meta_registrations needs to exist before it can import.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point) -> Tensor",
)
# The library that defines them, kept alive: dropping it would unregister the schemas.
_library: object = None


def _define_missing_ops(package_dir: str) -> None:
    import torch

    try:
        torch.ops.load_library(os.path.join(package_dir, "_C.so"))
        return
    except OSError:
        pass
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    global _library
    _library = library


class _TorchvisionImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.submodule_search_locations:
            _define_missing_ops(list(spec.submodule_search_locations)[0])
        return spec


if not any(isinstance(f, _TorchvisionImportHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionImportHook())
