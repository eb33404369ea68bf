"""Builds the C++ kernels of sparse_snns at first use and loads them into TensorFlow.

The sources `sparse_linear_ops.cc` (SparseLinear) and `select_ops.cc` (spike selection, row
gathers and scatters), with the header `common.h` they share, ship with the package and are
built into one shared library; no build step at install time. At the first call of `load()`
(through any ``implementation="auto"`` or ``"op"`` call of `sparse_linear`, `select_spikes`,
`from_dense`, `to_dense` or the `sparse_snns.rowops` functions):

1. The shared library is looked up in the cache directory, ``$DENSE_SNNS_CACHE`` or else
   ``$XDG_CACHE_HOME/dense_snns`` (default ``~/.cache/dense_snns``; a per-user directory
   under the system temp dir if that is not writable), under a name keyed by the
   TensorFlow version, the hash of the sources and the header, the compiler and all
   compiler/linker flags (so an edited source or header gets a library of its own).
2. If it is missing, it is compiled with the C++ compiler ``$DENSE_SNNS_CXX`` (else ``$CXX``,
   else the first of ``c++``, ``g++``, ``clang++`` on the PATH) against the installed
   TensorFlow (`tf.sysconfig` flags). The compiler writes a temporary file that is then
   renamed into place, so several processes may build at the same time without ever
   loading a partial library. Portable flags are used (no ``-march=native``): the library
   picks AVX-512/AVX2/generic kernels for the CPU it runs on.
3. It is loaded with `tf.load_op_library`.

If any step fails (no compiler, compile error, unwritable cache, load error), `load()`
returns None, `load_error()` tells why, a RuntimeWarning is emitted once per process, and
every ``"auto"`` call uses the pure-TensorFlow implementation. ``DENSE_SNNS_DISABLE_OP=1``
turns the ops off without a warning.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import List, Optional, Tuple

import tensorflow as tf

__all__ = [
    "build",
    "cache_dir",
    "compiler",
    "header_paths",
    "library_path",
    "load",
    "load_error",
    "loaded_path",
    "op_available",
    "source_path",
    "source_paths",
]

SOURCE_NAME = "sparse_linear_ops.cc"
#: Further sources compiled into the same library.
EXTRA_SOURCE_NAMES = ("select_ops.cc",)
#: Headers the sources include (part of the cache key, not compiled on their own).
HEADER_NAMES = ("common.h",)
#: File name prefix of the one library holding all the ops.
LIBRARY_PREFIX = "sparse_snns_ops"

#: Flags of every build, besides TensorFlow's own compile and link flags.
BASE_FLAGS = [
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-O3",
    "-Wno-deprecated-declarations",
    "-Wno-psabi",
]

#: Seconds allowed for one compilation.
BUILD_TIMEOUT = 600

_lock = threading.RLock()
_state = {"tried": False, "module": None, "error": None, "path": None, "warned": False}


def source_path() -> str:
    """Absolute path of the C++ source of the SparseLinear ops."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), SOURCE_NAME)


def source_paths() -> List[str]:
    """Absolute paths of all C++ sources of the library (the SparseLinear source first)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [source_path()] + [os.path.join(here, name) for name in EXTRA_SOURCE_NAMES]


def header_paths() -> List[str]:
    """Absolute paths of the headers included by the sources."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, name) for name in HEADER_NAMES]


def cache_dir() -> str:
    """The directory holding built libraries (not created here)."""
    configured = os.environ.get("DENSE_SNNS_CACHE")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dense_snns")


def compiler() -> Tuple[Optional[str], str]:
    """(absolute path of the C++ compiler or None, how it was chosen / why none was found)."""
    for variable in ("DENSE_SNNS_CXX", "CXX"):
        requested = os.environ.get(variable)
        if requested:
            found = shutil.which(requested)
            if found is None:
                return None, f"C++ compiler {requested!r} (from ${variable}) not found"
            return found, f"${variable}"
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found is not None:
            return found, "PATH"
    return None, "no C++ compiler found (tried c++, g++, clang++ on the PATH; set $DENSE_SNNS_CXX)"


def _tf_flags() -> Tuple[List[str], List[str], str]:
    return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags()), tf.__version__


def _command(cxx: str, output: str) -> List[str]:
    compile_flags, link_flags, _ = _tf_flags()
    return [cxx] + BASE_FLAGS + compile_flags + source_paths() + ["-o", output] + link_flags


def _fallback_cache_dir() -> str:
    """A per-user directory under the system temp dir, used when the cache dir is not writable."""
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"dense_snns-{user}")


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def library_path(cxx: str, directory: Optional[str] = None) -> str:
    """Cache path of the library built by `cxx` for these sources and headers and this TensorFlow."""
    compile_flags, link_flags, tf_version = _tf_flags()
    sources = []
    for path in source_paths() + header_paths():
        with open(path, "rb") as f:
            sources.append(f.read())
    key = hashlib.sha256()
    for part in sources + [tf_version.encode(), cxx.encode(), sys.platform.encode()] + [
        flag.encode() for flag in BASE_FLAGS + compile_flags + ["|"] + link_flags
    ]:
        key.update(part)
        key.update(b"\0")
    name = f"{LIBRARY_PREFIX}-tf{tf_version}-{key.hexdigest()[:20]}.so"
    return os.path.join(directory if directory is not None else cache_dir(), name)


def build(cxx: str, target: str) -> None:
    """Compile the library into `target` atomically; raises RuntimeError with the reason."""
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise RuntimeError(f"cannot create the cache directory {directory!r}: {err}") from None
    try:
        fd, temporary = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=directory)
    except OSError as err:
        raise RuntimeError(f"cannot write to the cache directory {directory!r}: {err}") from None
    os.close(fd)
    try:
        command = _command(cxx, temporary)
        try:
            result = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=BUILD_TIMEOUT
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise RuntimeError(f"could not run the C++ compiler {cxx!r}: {err}") from None
        if result.returncode != 0:
            lines = [line for line in result.stdout.splitlines() if "error" in line.lower()]
            detail = "\n".join((lines or result.stdout.splitlines())[-12:])
            raise RuntimeError(
                f"compiling {SOURCE_NAME} failed (exit code {result.returncode}):\n{detail}\n"
                f"command: {' '.join(command)}"
            )
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)  # atomic: readers see the old file or the complete new one
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _load_file(path: str):
    return tf.load_op_library(path)


def _load_or_build():
    if os.environ.get("DENSE_SNNS_DISABLE_OP", "").strip().lower() in ("1", "true", "yes", "on"):
        return None, "disabled by DENSE_SNNS_DISABLE_OP", None, False
    missing = [path for path in source_paths() + header_paths() if not os.path.exists(path)]
    if missing:
        return None, f"the C++ source {missing[0]!r} is missing from the installation", None, True
    cxx, how = compiler()
    if cxx is None:
        return None, how, None, True
    try:
        target = library_path(cxx)
    except Exception as err:  # noqa: BLE001 - any failure means: no op, with the reason
        return None, f"cannot determine the TensorFlow build flags: {err}", None, True
    if not os.path.exists(target):
        fallback = library_path(cxx, _fallback_cache_dir())
        if os.path.exists(fallback):
            target = fallback
        elif not _writable(os.path.dirname(target)) and _writable(os.path.dirname(fallback)):
            target = fallback  # the cache directory is not writable: build under the temp dir
    if os.path.exists(target):
        try:
            return _load_file(target), None, target, False
        except Exception:  # noqa: BLE001 - a stale or damaged cache entry: rebuild it once
            pass
    try:
        build(cxx, target)
    except RuntimeError as err:
        return None, str(err), None, True
    try:
        return _load_file(target), None, target, False
    except Exception as err:  # noqa: BLE001
        return None, f"loading the built library {target!r} failed: {err}", None, True


@tf.autograph.experimental.do_not_convert  # may first run while a tf.function is traced
def load():
    """The loaded op module (building it if needed), or None when the op is unavailable."""
    if _state["tried"]:
        return _state["module"]
    with _lock:
        if not _state["tried"]:
            module, error, path, warn = _load_or_build()
            _state.update(module=module, error=error, path=path, tried=True)
            if warn and not _state["warned"]:
                _state["warned"] = True
                warnings.warn(
                    "sparse_snns: the C++ ops (SparseLinear, spike selection, row gathers and scatters) "
                    f"are unavailable, using the pure-TensorFlow implementation instead. Reason: {error}",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _state["module"]


def op_available() -> bool:
    """True when the C++ op is built and loaded (builds it at the first call)."""
    return load() is not None


def load_error() -> Optional[str]:
    """Why the op is unavailable (None if it loaded); builds it at the first call."""
    load()
    return _state["error"]


def loaded_path() -> Optional[str]:
    """Path of the loaded library, or None."""
    load()
    return _state["path"]
