"""The kernel table: the dispatch loop calls each kernel through its address, compiled on first use.

Calling a jitted kernel directly from the dispatch loop makes numba link the kernel's code into the
loop's module and compile it again there, and it compiles every kernel the loop mentions before the
loop can run: about 40 s on a fresh cache, most of it for kernels the first strategy never uses.
Here the loop receives an int64 array of kernel entry points instead, and each `<name>_nb` name in
the loop is a small intrinsic that loads its slot and calls it with numba's own calling convention.
The loop compiles once, small; a kernel compiles (or loads from the disk cache) the first time a
tape uses it, and every process fills its own table (addresses are only valid in-process).

Safety: an address is only ever stored for the overload compiled for `ARG_TYPES[name]`, and the
intrinsic refuses, at compile time, a call whose argument types differ. The table's last slot is a
fingerprint of the opcode order and argument types that the loop checks before anything else, so
a loop from a stale cache cannot read a slot as another kernel. A call through an empty slot
raises instead of jumping to address 0.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from autostrat.tape.kernels import KERNELS, PARAM_KINDS, kernel_params
from autostrat.tape.opcodes import CODE, NAMES

SERIES = types.Array(types.float64, 1, "C")
_KIND_TYPES = {"number": SERIES, "boolean": SERIES, "window": types.int64, "float": types.float64}

# The exact argument types of every kernel as the dispatch loop calls it: register rows (C-contiguous
# float64), int64 windows from the code array, float64 constants from the pool; `out` last.
ARG_TYPES: dict[str, tuple[types.Type, ...]] = {
    name: tuple(_KIND_TYPES[PARAM_KINDS[p]] for p in kernel_params(name)) + (SERIES,)
    for name in NAMES
}


def _fingerprint() -> int:
    """A number naming this instruction set: the opcode order and every kernel's argument types."""
    text = "\n".join(f"{name}{ARG_TYPES[name]}" for name in NAMES)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")


# One slot per opcode, then the fingerprint. The dispatch loop reads FINGERPRINT as a compile-time
# constant and refuses a table whose last slot differs: a loop loaded from a stale cache (built for
# another opcode order) never calls a kernel through the wrong slot.
FINGERPRINT = _fingerprint()
TABLE_SIZE = len(NAMES) + 1
_TABLE = np.zeros(TABLE_SIZE, dtype=np.int64)
_TABLE[-1] = FINGERPRINT
_LOCK = threading.Lock()
# Tapes whose every opcode has its slot, by id: a backtest of one strategy after another on the
# same tape skips the check (a few microseconds of numpy). Cleared when it reaches READY_SIZE.
READY_SIZE = 256
_READY: dict[int, np.ndarray] = {}


def kernel_table(code: np.ndarray) -> np.ndarray:
    """The process's table of kernel addresses, with a slot for every opcode of `code` filled in.

    The slots of opcodes the tape does not use may stay empty. Unknown opcodes are left to the
    dispatch loop, which raises on them.
    """
    # Checked before: slots are never emptied. (Opcodes written into `code` in place after its
    # check could reach an empty slot, which the dispatch loop refuses with an error.)
    if _READY.get(id(code)) is code:
        return _TABLE
    if not _TABLE[:-1].take(code[:, 0], mode="clip").all():
        ops = code[:, 0]
        ops = ops[(ops >= 0) & (ops < len(NAMES))]
        with _LOCK:
            for op in np.unique(ops[_TABLE[ops] == 0]):
                _TABLE[op] = kernel_address(NAMES[op])
    if len(_READY) >= READY_SIZE:
        _READY.clear()
    _READY[id(code)] = code  # (the entry holds the array: its id is not reused while it is here)
    return _TABLE


def fill_all() -> np.ndarray:
    """Compile (or load) every kernel and return the full table."""
    return kernel_table(np.arange(len(NAMES), dtype=np.int64).reshape(-1, 1))


def kernel_address(name: str) -> int:
    """Entry point of `<name>_nb` compiled for ARG_TYPES[name] (compiled or loaded on first use)."""
    dispatcher, argtypes = KERNELS[name], ARG_TYPES[name]
    dispatcher.compile(argtypes)
    cres = dispatcher.overloads[argtypes]
    if cres.signature.return_type != types.none:
        raise TypeError(f"kernel {name}_nb must return None, it returns {cres.signature.return_type}")
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


def caller(name: str):
    """The intrinsic `<name>_nb(table, *args)` the dispatch loop uses: call slot CODE[name] of table."""
    index, argtypes = CODE[name], ARG_TYPES[name]

    @intrinsic
    def call(typingctx, table, *args):
        if tuple(args) != argtypes:
            raise TypingError(f"{name}_nb takes {argtypes}, the dispatch loop passes {tuple(args)}")

        def codegen(context, builder, sig, llargs):
            slots = context.make_array(sig.args[0])(context, builder, llargs[0])
            address = builder.load(cgutils.gep(builder, slots.data, index))
            with cgutils.if_unlikely(builder, cgutils.is_null(builder, address)):
                context.call_conv.return_user_exc(builder, RuntimeError,
                                                  (f"kernel {name}_nb is not in the kernel table",))
            fnty = context.call_conv.get_function_type(types.none, argtypes)
            fn = builder.inttoptr(address, fnty.as_pointer())
            values = [builder.extract_value(llargs[1], i) for i in range(len(argtypes))]
            status, _ = context.call_conv.call_function(builder, fn, types.none, list(argtypes), values)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return context.get_dummy_value()

        return types.none(table, types.StarArgTuple.from_types(args)), codegen

    call.__name__ = f"{name}_nb"
    return call
