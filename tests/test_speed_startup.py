"""The CLI starts without the heavy libraries: `repro --help` and `repro plan` stay instant."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "mlflow", "diffusers", "transformers")


def test_importing_the_cli_loads_no_heavy_library():
    probe = f"import json, sys, repro.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
