"""A fairseq trainer checkpoint (Kosmos-G's released `checkpoint_*.pt`) read without running
anything it carries.

The files are pickles: `model` (the state dict) beside the trainer's `cfg`, `optimizer_history`
and `extra_state`, which may hold objects of fairseq's libraries (argparse.Namespace, omegaconf
configs, enums and typing references, numpy scalars in the meters). They are read by torch's own
weights_only unpickler (tensors and plain containers only), with each of those objects' names
bound to an inert stand-in that records what it was pickled with and is turned into plain data
afterwards. Every global the pickle names is listed before anything is loaded (pickletools
parses, it does not run), and a name that is neither torch's tensor machinery nor one of the
stand-ins refuses the whole file, naming it.
"""

from __future__ import annotations

import enum
import pickletools
import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy
import torch

from experiments.training.checkpoints import UnsafeCheckpointError


class Conversion(enum.Enum):
    """What a stand-in becomes once the file is read."""

    ATTRIBUTES = "the attribute dict it was built with"  # argparse.Namespace, omegaconf metadata
    CONTENT = "its `_content`"  # omegaconf DictConfig / ListConfig
    NODE_VALUE = "its `_val`"  # omegaconf leaf nodes
    ENUM_VALUE = "the value it was called with"  # enum members: Enum(value)
    DTYPE_NAME = "the dtype string"  # numpy.dtype('f8', ...)
    NUMPY_SCALAR = "a Python number"  # numpy scalar(dtype, bytes)
    RECORD = "a dict of its name, arguments and state"  # typing aliases and builtin types as values


STAND_INS: dict[str, Conversion] = {
    "argparse.Namespace": Conversion.ATTRIBUTES,
    "omegaconf.dictconfig.DictConfig": Conversion.CONTENT,
    "omegaconf.listconfig.ListConfig": Conversion.CONTENT,
    "omegaconf.base.Metadata": Conversion.ATTRIBUTES,
    "omegaconf.base.ContainerMetadata": Conversion.ATTRIBUTES,
    "numpy.dtype": Conversion.DTYPE_NAME,
    **{f"numpy.{core}.multiarray.scalar": Conversion.NUMPY_SCALAR for core in ("core", "_core")},
    # numpy arrays (an infinibatch data iterator's buffered items, in extra_state) are kept as records.
    **{f"numpy.{core}.multiarray._reconstruct": Conversion.RECORD for core in ("core", "_core")},
    "numpy.ndarray": Conversion.RECORD,
    "_operator.getitem": Conversion.RECORD,  # how typing.Optional[X] pickles
    **{f"typing.{name}": Conversion.RECORD for name in ("Any", "Union", "Optional", "List", "Dict", "Tuple")},
    **{f"builtins.{name}": Conversion.RECORD
       for name in ("type", "str", "int", "float", "bool", "dict", "list", "tuple", "object")},
}
# Modules whose every class is data: omegaconf's leaf nodes and fairseq's choice enums.
STAND_IN_MODULES: dict[str, Conversion] = {
    "omegaconf.nodes.": Conversion.NODE_VALUE,
    "fairseq.dataclass.constants.": Conversion.ENUM_VALUE,
}
# Left to torch's weights_only unpickler, whose own allow-list admits tensor rebuilding only.
TORCH_MODULES = ("torch.", "collections.OrderedDict", "_codecs.encode")


class StandIn:
    """An object the pickle names, created without its class's code: it keeps the arguments and
    state it was pickled with."""

    name: ClassVar[str]
    conversion: ClassVar[Conversion]
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any) -> StandIn:
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args: Any) -> None:  # REDUCE calls cls(*args); __new__ kept them
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def conversion_of(name: str) -> Conversion | None:
    if name in STAND_INS:
        return STAND_INS[name]
    return next((kind for prefix, kind in STAND_IN_MODULES.items() if name.startswith(prefix)), None)


def _pickle_member(archive: zipfile.ZipFile, path: Path) -> str:
    members = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
    if len(members) != 1:
        raise UnsafeCheckpointError(f"{path}: refused: not a torch zip file with one data.pkl "
                                    f"(found {members})")
    return members[0]


def pickled_globals(path: Path) -> set[str]:
    """Every `module.name` the file's pickle refers to, read by parsing its opcodes."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(_pickle_member(archive, path))
    except (zipfile.BadZipFile, OSError) as bad:
        raise UnsafeCheckpointError(
            f"{path}: refused: not a zip-format torch file ({bad}); the legacy format is not read") from None
    names = set()
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                if not isinstance(argument, str):
                    raise UnsafeCheckpointError(f"{path}: refused: a GLOBAL opcode without its module "
                                                "and name")
                names.add(argument.replace(" ", "."))
            elif opcode.name in ("STACK_GLOBAL", "INST", "OBJ"):
                raise UnsafeCheckpointError(f"{path}: refused: opcode {opcode.name} names its class "
                                            "off the stack")
    except ValueError as bad:
        raise UnsafeCheckpointError(f"{path}: refused: a damaged pickle ({bad})") from None
    return names


def _stand_in_class(name: str, conversion: Conversion) -> type[StandIn]:
    return type(f"StandIn[{name}]", (StandIn,), {"name": name, "conversion": conversion})


def read_fairseq_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint as plain dicts, lists, numbers, strings and (memory-mapped, CPU) tensors."""
    path = Path(path)
    names = pickled_globals(path)
    refused = sorted(name for name in names
                     if conversion_of(name) is None and not name.startswith(TORCH_MODULES))
    if refused:
        raise UnsafeCheckpointError(
            f"{path}: refused: its pickle calls or builds {', '.join(refused)}, which a fairseq checkpoint "
            "does not hold; nothing in it was run")
    stand_ins: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (_stand_in_class(name, kind), name) for name in names if (kind := conversion_of(name))]
    try:
        with torch.serialization.safe_globals(stand_ins):
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except torch.serialization.pickle.UnpicklingError as bad:
        raise UnsafeCheckpointError(f"{path}: refused by torch's weights_only unpickler: {bad}") from None
    except (RuntimeError, EOFError) as bad:
        raise UnsafeCheckpointError(f"{path}: refused: a damaged torch file ({bad})") from None
    try:
        return plain(loaded, set())
    except RecursionError:
        raise UnsafeCheckpointError(f"{path}: refused: its data nests too deep or refers to itself") from None


def plain(value: Any, seen: set[int]) -> Any:
    """`value` with every stand-in (instance or class) replaced by the data its conversion names."""
    if isinstance(value, type) and issubclass(value, StandIn):
        return value.name
    if isinstance(value, StandIn):
        if id(value) in seen:  # omegaconf nodes point back at their parents
            return None
        seen = seen | {id(value)}
        return plain(_converted(value), seen)
    if isinstance(value, dict):
        return {plain(key, seen): plain(item, seen) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item, seen) for item in value)
    return value


def _converted(stand_in: StandIn) -> Any:
    state, args = stand_in.state, stand_in.args
    match stand_in.conversion:
        case Conversion.ATTRIBUTES:
            return state if isinstance(state, dict) else {}
        case Conversion.CONTENT:
            return state.get("_content") if isinstance(state, dict) else None
        case Conversion.NODE_VALUE:
            return state.get("_val") if isinstance(state, dict) else None
        case Conversion.ENUM_VALUE:
            return args[0] if args else state
        case Conversion.DTYPE_NAME:
            return str(args[0])
        case Conversion.NUMPY_SCALAR:
            dtype, raw = args
            # frombuffer refuses object dtypes, so this reads bytes as a number and nothing more.
            return numpy.frombuffer(raw, dtype=plain(dtype, set())).item()
        case Conversion.RECORD:
            return {"__global__": stand_in.name, "args": list(args), "state": state}
