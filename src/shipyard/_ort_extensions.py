"""Where onnxruntime-extensions' custom-operator library lies, without importing the package.

``import onnxruntime_extensions`` (0.15) imports its converters, which set
``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` in ``os.environ`` for the rest of the process:
every process started after that (a server's workers, a test's servers) would parse protobuf in
pure Python, and differently (invalid UTF-8 in a string field then fails late, as an
UnicodeDecodeError). It also takes about 1.3 s. ONNX Runtime needs only the library's path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["extensions_library"]

PACKAGE = "onnxruntime_extensions"


def extensions_library() -> str | None:
    """The path of onnxruntime-extensions' operator library, or None when it is not
    installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError, AttributeError):  # e.g. sys.modules[PACKAGE] is None
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("_extensions_pydll*.so")) + \
            sorted(Path(folder).glob("_extensions_pydll*.pyd"))
        if found:
            return str(found[0])
    return None
