"""Builds C++ TensorFlow kernels from source at first use and loads them.

An `OpLibrary` is a set of C++ sources (and the headers they include) shipped with the
package and built into one shared library; no build step at install time. At the first call
of its `load()`:

1. The shared library is looked up in the cache directory, ``$DENSE_SNNS_CACHE`` or else
   ``$XDG_CACHE_HOME/dense_snns`` (default ``~/.cache/dense_snns``; a per-user directory
   under the system temp dir if that is not writable), under a name keyed by the
   TensorFlow version, the hash of the sources and headers, the compiler and all
   compiler/linker flags (so an edited source or header gets a library of its own).
2. If it is missing, it is compiled with the C++ compiler ``$DENSE_SNNS_CXX`` (else ``$CXX``,
   else the first of ``c++``, ``g++``, ``clang++`` on the PATH) against the installed
   TensorFlow (`tf.sysconfig` flags). The compiler writes a temporary file that is then
   renamed into place, so several processes may build at the same time without ever
   loading a partial library. Portable flags are used (no ``-march=native``): the kernels
   carry code for several vector instruction sets and pick one for the CPU they run on.
3. It is loaded with `tf.load_op_library`.

Before compiling, one message (logger ``dense_snns``, level INFO) says what is being built,
why, about how long it takes, where it is cached and how to skip it; after, how long it took.
Without any logging configuration it goes to stderr in interactive use (a terminal, the
Python prompt, a notebook), and nowhere otherwise; when the application configures
`logging`, its settings decide.

If any step fails (no compiler, compile error, unwritable cache, load error), `load()`
returns None, `load_error()` tells why, a RuntimeWarning is emitted once per process and
library, and callers use their pure-TensorFlow implementation. ``DENSE_SNNS_DISABLE_OP=1``
turns every library off without a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

__all__ = ["OpLibrary", "cache_dir", "compiler", "in_xla_context", "ops_disabled"]

#: Flags of every build, besides TensorFlow's own compile and link flags.
BASE_FLAGS = [
    "-shared",
    "-fPIC",
    "-O3",
    "-Wno-deprecated-declarations",
    "-Wno-psabi",
]

#: Seconds allowed for one compilation.
BUILD_TIMEOUT = 600


#: About how long a build takes, for the message before it.
BUILD_DURATION_HINT = "about a minute"

logger = logging.getLogger("dense_snns")


def _interactive() -> bool:
    """A terminal, the Python prompt, or a Jupyter/IPython kernel."""
    terminal = sys.stderr is not None and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return terminal or hasattr(sys, "ps1") or "ipykernel" in sys.modules


def notify(message: str) -> None:
    """Log `message` at INFO on the ``dense_snns`` logger; with no logging configured at all,
    print it to stderr in interactive use (a terminal, the prompt, a notebook)."""
    if logger.hasHandlers():
        logger.info(message)
    elif _interactive() and sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


class _StderrHandler(logging.Handler):
    """Writes records to the `sys.stderr` of the moment (which a test runner may replace)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def show_build_messages() -> None:
    """Print the build messages (logger ``dense_snns``, INFO) to stderr whatever the logging
    configuration; for scripts and the command line. Once per process."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


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


def ops_disabled() -> bool:
    """True when ``$DENSE_SNNS_DISABLE_OP`` turns the C++ kernels off."""
    return os.environ.get("DENSE_SNNS_DISABLE_OP", "").strip().lower() in ("1", "true", "yes", "on")


def in_xla_context() -> bool:
    """True while TensorFlow traces a function for XLA (``tf.function(jit_compile=True)``):
    custom kernels have no XLA implementation there."""
    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - very old or stripped TensorFlow
        return False
    try:
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # noqa: BLE001 - internal API: never fail because of the probe
        return False


def _tf_flags() -> Tuple[List[str], List[str], str]:
    """TensorFlow's compile and link flags and version. The C++ standard is the one TensorFlow
    was built with: its flags name it (C++17) from TensorFlow 2.9 on; older ones (2.6,
    Graphcore's base) were built as C++14, whose absl::string_view is not std::string_view,
    so C++17 code would not link against them."""
    compile_flags = list(tf.sysconfig.get_compile_flags())
    if not any(flag.lstrip("-").startswith("std=") for flag in compile_flags):
        compile_flags.append("-std=c++14")
    return compile_flags, list(tf.sysconfig.get_link_flags()), tf.__version__


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


class OpLibrary:
    """C++ sources built into one TensorFlow op library at first use.

    Args:
        directory: where the sources and headers are.
        sources: file names of the sources compiled (the first names the library in messages).
        headers: the headers they include (part of the cache key only): file names in
            `directory`, or absolute paths.
        include_dirs: directories searched for headers (``-I``), besides `directory`.
        prefix: file name prefix of the built library.
        description: what the library holds, for the warning when it is unavailable.
        flags: compiler flags of this library, besides `BASE_FLAGS` and TensorFlow's.
    """

    def __init__(
        self,
        directory: str,
        sources: Sequence[str],
        headers: Sequence[str],
        prefix: str,
        description: str,
        flags: Sequence[str] = (),
        include_dirs: Sequence[str] = (),
    ):
        self.directory = os.path.abspath(directory)
        self.sources = tuple(sources)
        self.headers = tuple(headers)
        self.include_dirs = tuple(os.path.abspath(d) for d in include_dirs)
        self.prefix = prefix
        self.description = description
        self.flags = list(flags)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget the load result (the next `load()` looks up or builds the library again)."""
        self._state = {"tried": False, "module": None, "error": None, "path": None, "warned": False}

    def source_paths(self) -> List[str]:
        return [os.path.join(self.directory, name) for name in self.sources]

    def header_paths(self) -> List[str]:
        return [os.path.join(self.directory, name) for name in self.headers]

    def command(self, cxx: str, output: str) -> List[str]:
        compile_flags, link_flags, _ = _tf_flags()
        # The include directories are not part of the cache key (the headers' contents are).
        includes = ["-I" + d for d in self.include_dirs]
        return (
            [cxx]
            + BASE_FLAGS
            + self.flags
            + includes
            + compile_flags
            + self.source_paths()
            + ["-o", output]
            + link_flags
        )

    def library_path(self, cxx: str, directory: Optional[str] = None) -> str:
        """Cache path of the library built by `cxx` for these sources and headers and this TensorFlow."""
        compile_flags, link_flags, tf_version = _tf_flags()
        key = hashlib.sha256()
        parts = []
        for path in self.source_paths() + self.header_paths():
            with open(path, "rb") as f:
                parts.append(f.read())
        parts += [tf_version.encode(), cxx.encode(), sys.platform.encode()]
        parts += [flag.encode() for flag in BASE_FLAGS + self.flags + compile_flags + ["|"] + link_flags]
        for part in parts:
            key.update(part)
            key.update(b"\0")
        name = f"{self.prefix}-tf{tf_version}-{key.hexdigest()[:20]}.so"
        return os.path.join(directory if directory is not None else cache_dir(), name)

    def build(self, cxx: str, target: str) -> None:
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
            command = self.command(cxx, temporary)
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
                    f"compiling {self.sources[0]} failed (exit code {result.returncode}):\n{detail}\n"
                    f"command: {' '.join(command)}"
                )
            os.chmod(temporary, 0o755)
            os.replace(temporary, target)  # atomic: readers see the old file or the complete new one
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def _load_file(self, path: str):
        return tf.load_op_library(path)

    def load_or_build(self):
        """(module or None, error or None, path or None, whether the failure deserves a warning)."""
        if ops_disabled():
            return None, "disabled by DENSE_SNNS_DISABLE_OP", None, False
        missing = [path for path in self.source_paths() + self.header_paths() if not os.path.exists(path)]
        if missing:
            return None, f"the C++ source {missing[0]!r} is missing from the installation", None, True
        cxx, how = compiler()
        if cxx is None:
            return None, how, None, True
        try:
            target = self.library_path(cxx)
        except Exception as err:  # noqa: BLE001 - any failure means: no op, with the reason
            return None, f"cannot determine the TensorFlow build flags: {err}", None, True
        if not os.path.exists(target):
            fallback = self.library_path(cxx, _fallback_cache_dir())
            if os.path.exists(fallback):
                target = fallback
            elif not _writable(os.path.dirname(target)) and _writable(os.path.dirname(fallback)):
                target = fallback  # the cache directory is not writable: build under the temp dir
        if os.path.exists(target):
            try:
                return self._load_file(target), None, target, False
            except Exception:  # noqa: BLE001 - a stale or damaged cache entry: rebuild it once
                pass
        notify(
            f"{self.description}: building them from source for TensorFlow {tf.__version__} with {cxx} "
            f"({BUILD_DURATION_HINT}, once per machine and TensorFlow version; cached in "
            f"{os.path.dirname(target)}). They run the recurrence faster than the pure-TensorFlow loops; "
            "to skip the build, set DENSE_SNNS_DISABLE_OP=1 (or pass implementation='compiled')."
        )
        start = time.perf_counter()
        try:
            self.build(cxx, target)
        except RuntimeError as err:
            return None, str(err), None, True
        notify(f"{self.description}: built in {time.perf_counter() - start:.0f} s: {target}")
        try:
            return self._load_file(target), None, target, False
        except Exception as err:  # noqa: BLE001
            return None, f"loading the built library {target!r} failed: {err}", None, True

    @tf.autograph.experimental.do_not_convert  # may first run while a tf.function is traced
    def load(self):
        """The loaded op module (building it if needed), or None when it is unavailable."""
        state = self._state
        if state["tried"]:
            return state["module"]
        with self._lock:
            if not state["tried"]:
                module, error, path, warn = self.load_or_build()
                state.update(module=module, error=error, path=path, tried=True)
                if warn and not state["warned"]:
                    state["warned"] = True
                    warnings.warn(
                        f"{self.description} are unavailable, using the pure-TensorFlow implementation "
                        f"instead. Reason: {error}",
                        RuntimeWarning,
                        stacklevel=4,
                    )
        return state["module"]

    def op_available(self) -> bool:
        """True when the library is built and loaded (builds it at the first call)."""
        return self.load() is not None

    def load_error(self) -> Optional[str]:
        """Why the library is unavailable (None if it loaded); builds it at the first call."""
        self.load()
        return self._state["error"]

    def loaded_path(self) -> Optional[str]:
        """Path of the loaded library, or None."""
        self.load()
        return self._state["path"]
