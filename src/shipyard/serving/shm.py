"""Triton's system shared-memory extension, protocol-free.

A client creates a POSIX shared-memory object (``shm_open``: ``/dev/shm/<key>`` on Linux) and
registers a window of it, ``[offset, offset + byte_size)``, under a region name. An input whose
parameters carry ``shared_memory_region`` (+ ``shared_memory_byte_size``, optional
``shared_memory_offset``, relative to the region's start) is read from the region instead of the
request body, in the binary tensor layout (BYTES: 4-byte little-endian length before each
element); a requested output with those parameters is written into the region and answered with
its parameters and no data.

The server reads and writes the objects with ``pread``/``pwrite`` on a descriptor it keeps open
for each region (the same pages the client maps; one copy per tensor, as for a request body),
not through a mapping of its own: a client that shrinks an object under a mapping would
kill the server with SIGBUS, while a short ``pread`` is just a refused request.

Both frontends share one :class:`SystemSharedMemory` (``server.py`` owns it and closes it at
shutdown). Every call runs on the event loop thread, so the registry needs no lock.
"""

from __future__ import annotations

import glob
import math
import os
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from shipyard.protocol.wire import decode_raw, encode_raw
from shipyard.serving.errors import (
    AlreadyExists,
    InvalidInput,
    RegionNotFound,
    Unimplemented,
    brief,
)
from shipyard.serving.types import DATATYPES, Array, RequestedOutput, Tensor

__all__ = [
    "MAX_REGIONS",
    "NO_REGIONS",
    "SHM_DIRECTORY",
    "Region",
    "ShmRef",
    "SystemSharedMemory",
    "cuda_shared_memory_refusal",
    "output_places",
    "shm_ref",
]

#: where POSIX shared-memory objects live (``shm_open("/key")`` is ``/dev/shm/key`` on Linux)
SHM_DIRECTORY = Path("/dev/shm")
#: registered regions at most (each holds one open descriptor)
MAX_REGIONS = 1024
#: no offset or size may exceed this (the largest int64, what the gRPC parameters carry)
_MAX_INT = (1 << 63) - 1
_PARAMS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


@dataclass(frozen=True, slots=True)
class Region:
    """A registered window ``[offset, offset + byte_size)`` of the object ``key``."""

    name: str
    key: str
    offset: int
    byte_size: int
    fd: int

    def status(self) -> dict[str, Any]:
        """Triton's status JSON of the region."""
        return {"name": self.name, "key": self.key, "offset": self.offset,
                "byte_size": self.byte_size}


@dataclass(frozen=True, slots=True)
class ShmRef:
    """Where a tensor lies: ``byte_size`` bytes at ``offset`` into region ``region``."""

    region: str
    offset: int
    byte_size: int


def _count(value: Any, what: str, field: str, *, minimum: int = 0) -> int:
    """A non-negative (or >= ``minimum``) integer from a client, else InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what}: {field} must be an integer, got {brief(value)}")
    if value < minimum or value > _MAX_INT:
        raise InvalidInput(
            f"{what}: {field} must be an integer from {minimum} to {_MAX_INT}, got {value}")
    return value


def shm_ref(params: dict[str, Any], what: str) -> ShmRef | None:
    """The shared-memory placement a tensor's parameters ask for (None: not in shared
    memory); InvalidInput for a wrong type, a missing byte size or a stray offset."""
    if not params or not any(p in params for p in _PARAMS):
        return None
    region = params.get("shared_memory_region")
    if region is None:
        given = [p for p in _PARAMS if p in params]
        raise InvalidInput(
            f"{what}: parameters {given} need 'shared_memory_region' (the registered region's "
            "name) beside them")
    if not isinstance(region, str) or not region:
        raise InvalidInput(
            f"{what}: shared_memory_region must be a region name (a non-empty string), got "
            f"{brief(region)}")
    if "shared_memory_byte_size" not in params:
        raise InvalidInput(
            f"{what}: shared_memory_region {region!r} needs shared_memory_byte_size (the "
            "tensor's size in bytes in the region)")
    size = _count(params["shared_memory_byte_size"], what, "shared_memory_byte_size")
    offset = _count(params.get("shared_memory_offset", 0), what, "shared_memory_offset")
    return ShmRef(region, offset, size)


def output_places(outputs: list[RequestedOutput] | None) -> dict[str, ShmRef]:
    """The requested outputs asked for in shared memory: name -> placement (parsed, not yet
    checked against the regions)."""
    places = {}
    for o in outputs or ():
        ref = shm_ref(o.parameters, f"output {o.name!r}") if o.parameters else None
        if ref is not None:
            places[o.name] = ref
    return places


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 256 or "\0" in name:
        raise InvalidInput(
            f"system shared memory region name must be a non-empty string of at most 256 "
            f"characters, got {brief(name)}")
    return name


def _object_name(key: Any) -> str:
    """The file name under /dev/shm of a POSIX shm key (``/name`` or ``name``)."""
    if not isinstance(key, str):
        raise InvalidInput(
            f"system shared memory 'key' must be a string (the shm_open name, such as "
            f"'/input0'), got {brief(key)}")
    rest = key[1:] if key.startswith("/") else key
    if not rest or "/" in rest or "\0" in rest or rest in (".", "..") or len(rest) > 255:
        raise InvalidInput(
            f"system shared memory key {brief(key)} is not a POSIX shared-memory name: use "
            "'/name' with no other '/' (at most 255 characters), as given to shm_open")
    return rest


class SystemSharedMemory:
    """The registered system shared-memory regions of one server."""

    def __init__(self, directory: Path = SHM_DIRECTORY, max_regions: int = MAX_REGIONS
                 ) -> None:
        self.directory = directory
        self.max_regions = max_regions
        self._regions: dict[str, Region] = {}

    # -- the extension's three calls ----------------------------------------------------------

    def register(self, name: Any, key: Any, offset: Any, byte_size: Any) -> Region:
        """Open ``key`` and register ``[offset, offset + byte_size)`` of it as ``name``."""
        name = _check_name(name)
        what = f"system shared memory region {name!r}"
        if name in self._regions:
            old = self._regions[name]
            raise AlreadyExists(
                f"{what} is already registered (key {old.key!r}, offset {old.offset}, "
                f"byte_size {old.byte_size}); unregister it first or pick another name")
        filename = _object_name(key)
        offset = _count(offset, what, "offset")
        byte_size = _count(byte_size, what, "byte_size", minimum=1)
        if len(self._regions) >= self.max_regions:
            raise InvalidInput(
                f"{what}: {len(self._regions)} regions are registered, the most this server "
                "holds; unregister regions no longer used")
        path = self.directory / filename
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidInput(
                f"{what}: no shared-memory object {key!r} exists ({path} is missing); create "
                "it first (shm_open, or tritonclient.utils.shared_memory."
                "create_shared_memory_region) on this server's machine and register the key "
                "it was created with") from None
        except PermissionError:
            raise InvalidInput(
                f"{what}: the server may not open shared-memory object {key!r} ({path}) for "
                "reading and writing; create it with permissions the server's user has") \
                from None
        except OSError as exc:
            raise InvalidInput(
                f"{what}: cannot open shared-memory object {key!r} ({path}): "
                f"{exc.strerror or exc}; it must be a regular shared-memory object, not a "
                "symbolic link") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInput(
                    f"{what}: {path} is not a shared-memory object (not a regular file)")
            if offset + byte_size > info.st_size:
                room = max(info.st_size - offset, 0)
                raise InvalidInput(
                    f"{what}: offset {offset} + byte_size {byte_size} = {offset + byte_size} "
                    f"runs past the end of shared-memory object {key!r} ({info.st_size} "
                    f"bytes); register at most {room} bytes from offset {offset}")
        except BaseException:
            os.close(fd)
            raise
        region = Region(name, key, offset, byte_size, fd)
        self._regions[name] = region
        return region

    def status(self, name: str = "") -> list[dict[str, Any]]:
        """Triton's status JSON of one region (``name``) or of every region."""
        if name:
            return [self._get(name, "status").status()]
        return [r.status() for r in self._regions.values()]

    def unregister(self, name: str = "") -> None:
        """Forget region ``name``, or every region when ``name`` is empty. As in Triton,
        unregistering a name that is not registered succeeds (a client's clean-up call)."""
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is not None:
                os.close(region.fd)

    def close(self) -> None:
        """Unregister every region (server shutdown)."""
        self.unregister()

    def __len__(self) -> int:
        return len(self._regions)

    # -- raw access ---------------------------------------------------------------------------

    def _get(self, name: str, what: str) -> Region:
        region = self._regions.get(name)
        if region is None:
            known = sorted(self._regions)[:8]
            raise RegionNotFound(
                f"{what}: system shared memory region {name!r} is not registered "
                f"(registered: {known or 'none'}); register it first")
        return region

    def _window(self, ref: ShmRef, what: str) -> Region:
        """The region of ``ref``, checked to hold ``[offset, offset + byte_size)``."""
        region = self._regions.get(ref.region)
        if region is None:
            known = sorted(self._regions)[:8]
            raise InvalidInput(
                f"{what}: shared_memory_region {ref.region!r} is not registered (registered: "
                f"{known or 'none'}); register it with the system shared-memory extension "
                "before naming it in a request")
        end = ref.offset + ref.byte_size
        if end > region.byte_size:
            raise InvalidInput(
                f"{what}: shared_memory_offset {ref.offset} + shared_memory_byte_size "
                f"{ref.byte_size} = {end} runs past the end of region {ref.region!r} "
                f"({region.byte_size} bytes); keep offset + byte_size <= {region.byte_size}")
        return region

    def read(self, ref: ShmRef, what: str = "tensor") -> bytes:
        """A copy of the ``ref.byte_size`` bytes at ``ref.offset`` into its region."""
        region = self._window(ref, what)
        data = os.pread(region.fd, ref.byte_size, region.offset + ref.offset)
        if len(data) != ref.byte_size:
            raise InvalidInput(
                f"{what}: shared-memory object {region.key!r} of region {ref.region!r} has "
                "shrunk below the registered size; re-create it and register it again")
        return data

    def write(self, ref: ShmRef, data: bytes, what: str = "tensor") -> None:
        """Write ``data`` (at most ``ref.byte_size`` bytes) at ``ref.offset`` into its region."""
        region = self._window(ref, what)
        if len(data) > ref.byte_size:
            raise InvalidInput(
                f"{what}: the result takes {len(data)} bytes but shared_memory_byte_size is "
                f"{ref.byte_size}; give it at least {len(data)} bytes of region "
                f"{ref.region!r}")
        start = region.offset + ref.offset
        if os.fstat(region.fd).st_size < start + len(data):  # never grow a shrunk object
            raise InvalidInput(
                f"{what}: shared-memory object {region.key!r} of region {ref.region!r} has "
                "shrunk below the registered size; re-create it and register it again")
        view = memoryview(data)
        while view:
            written = os.pwrite(region.fd, view, start)
            view, start = view[written:], start + written

    # -- tensors ------------------------------------------------------------------------------

    def read_input(self, name: str, datatype: str, shape: tuple[int, ...], ref: ShmRef
                   ) -> Array:
        """Input ``name`` read from shared memory, checked against its shape and datatype."""
        what = f"input {name!r}"
        if datatype != "BYTES":
            need = math.prod(shape) * DATATYPES[datatype].itemsize
            if ref.byte_size != need:
                raise InvalidInput(
                    f"{what}: shared_memory_byte_size is {ref.byte_size} but shape "
                    f"{list(shape)} of {datatype} takes {need} bytes; set "
                    f"shared_memory_byte_size to {need}")
        return decode_raw(name, datatype, shape, self.read(ref, what))

    def check_outputs(self, outputs: list[RequestedOutput] | None) -> None:
        """Check the outputs asked for in shared memory against their regions, before the
        model runs (an unknown region, a window past the region's end)."""
        for name, ref in output_places(outputs).items():
            self._window(ref, f"output {name!r}")

    def write_output(self, tensor: Tensor, ref: ShmRef) -> dict[str, Any]:
        """Write an output into its region; the parameters its answer carries."""
        blob = encode_raw(tensor.data)
        self.write(ref, blob, f"output {tensor.name!r} (shape {list(tensor.shape)}, "
                              f"{tensor.datatype})")
        params: dict[str, Any] = {"shared_memory_region": ref.region,
                                  "shared_memory_byte_size": len(blob)}
        if ref.offset:
            params["shared_memory_offset"] = ref.offset
        return params


@cache
def _gpu_present() -> bool:
    """Whether this machine shows an NVIDIA GPU (a device node), checked once."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def cuda_shared_memory_refusal() -> Unimplemented:
    """The error every CUDA shared-memory call gets (a true sentence either way)."""
    if _gpu_present():
        why = ("this server does not implement CUDA shared memory (this machine has a GPU, "
               "but Shipyard's runtimes do not read inputs from or write outputs to CUDA IPC "
               "memory)")
    else:
        why = "CUDA shared memory needs a GPU and this server has none"
    return Unimplemented(
        f"{why}; 'cuda_shared_memory' is not among the extensions in the server metadata. "
        "Use system shared memory (/v2/systemsharedmemory, SystemSharedMemoryRegister) or "
        "send tensors in the request")


#: an empty registry, for a codec called without the server's (nothing registers into it)
NO_REGIONS = SystemSharedMemory()
