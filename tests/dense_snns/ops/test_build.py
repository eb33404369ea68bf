"""dense_snns.ops.OpLibrary: cache key, build failures, missing compiler, fallback warning."""

import logging
import os
import warnings

import pytest

from dense_snns.ops import OpLibrary, cache_dir, compiler

GOOD_SOURCE = """
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "header.h"
REGISTER_OP("DenseSnnsBuildTestOne").Output("value: int32").SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
  c->set_output(0, c->Scalar());
  return decltype(c->WithRank(c->input(0), 0, nullptr))();  // an OK status of this TensorFlow's type
});
class OneOp : public ::tensorflow::OpKernel {
 public:
  explicit OneOp(::tensorflow::OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(::tensorflow::OpKernelContext* c) override {
    ::tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(c, c->allocate_output(0, {}, &out));
    out->scalar<int32_t>()() = kTestValue;
  }
};
REGISTER_KERNEL_BUILDER(Name("DenseSnnsBuildTestOne").Device(::tensorflow::DEVICE_CPU), OneOp);
"""


def library(directory, source="one.cc"):
    return OpLibrary(str(directory), [source], ["header.h"], "test_lib", "test kernels", flags=["-O1"])


@pytest.fixture
def sources(tmp_path):
    directory = tmp_path / "src"
    directory.mkdir()
    (directory / "one.cc").write_text(GOOD_SOURCE)
    (directory / "header.h").write_text("constexpr int kTestValue = 41 + 1;\n")
    return directory


@pytest.fixture
def fresh_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSE_SNNS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DENSE_SNNS_DISABLE_OP", raising=False)
    monkeypatch.delenv("DENSE_SNNS_CXX", raising=False)
    return tmp_path / "cache"


def test_builds_caches_and_loads(sources, fresh_env):
    if compiler()[0] is None:
        pytest.skip(compiler()[1])
    lib = library(sources)
    assert lib.load() is not None, lib.load_error()
    assert int(lib.load().dense_snns_build_test_one()) == 42
    path = lib.loaded_path()
    assert os.path.dirname(path) == str(fresh_env) == cache_dir()
    assert os.path.basename(path).startswith("test_lib-tf") and path.endswith(".so")
    assert [p for p in os.listdir(fresh_env) if p.endswith(".so")] == [os.path.basename(path)]  # no temporary left
    again = library(sources)  # a new process would find the cached file: no rebuild
    mtime = os.path.getmtime(path)
    assert again.loaded_path() == path and os.path.getmtime(path) == mtime


def test_cache_key_depends_on_sources_headers_flags_and_compiler(sources, fresh_env):
    lib = library(sources)
    first = lib.library_path("/usr/bin/g++")
    assert lib.library_path("/usr/bin/clang++") != first
    assert (
        OpLibrary(str(sources), ["one.cc"], ["header.h"], "test_lib", "x", flags=["-O2"]).library_path("/usr/bin/g++")
        != first
    )
    (sources / "header.h").write_text("constexpr int kTestValue = 7;\n")
    assert lib.library_path("/usr/bin/g++") != first
    (sources / "header.h").write_text("constexpr int kTestValue = 41 + 1;\n")
    assert lib.library_path("/usr/bin/g++") == first
    (sources / "one.cc").write_text(GOOD_SOURCE + "\n// changed\n")
    assert lib.library_path("/usr/bin/g++") != first


def test_build_failure_reports_the_compiler_error(sources, fresh_env):
    (sources / "broken.cc").write_text("#error deliberately broken source\n")
    lib = library(sources, "broken.cc")
    module, error, path, warn = lib.load_or_build()
    assert module is None and path is None and warn
    assert "compiling broken.cc failed" in error and "deliberately broken" in error
    assert not [p for p in os.listdir(fresh_env) if p.endswith(".so")]  # no partial library left


def test_missing_compiler_missing_source_and_disabled_reasons(sources, fresh_env, monkeypatch):
    module, error, _, warn = library(sources, "absent.cc").load_or_build()
    assert module is None and warn and "absent.cc" in error and "missing" in error
    monkeypatch.setenv("DENSE_SNNS_CXX", "/nonexistent/bin/c++")
    module, error, _, warn = library(sources).load_or_build()
    assert module is None and warn and "'/nonexistent/bin/c++' (from $DENSE_SNNS_CXX) not found" in error
    monkeypatch.setenv("DENSE_SNNS_DISABLE_OP", "1")
    module, error, _, warn = library(sources).load_or_build()
    assert module is None and not warn and "DENSE_SNNS_DISABLE_OP" in error


def test_unavailable_library_warns_once_with_the_reason(sources, fresh_env, monkeypatch):
    monkeypatch.setenv("DENSE_SNNS_CXX", "/nonexistent/bin/c++")
    lib = library(sources)
    with pytest.warns(RuntimeWarning, match=r"test kernels are unavailable.*nonexistent/bin/c\+\+") as record:
        assert lib.load() is None
        assert not lib.op_available()
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert "not found" in lib.load_error() and lib.loaded_path() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lib.load() is None  # decided once per process: no second warning
    lib.reset()  # forgetting the result tries again
    monkeypatch.delenv("DENSE_SNNS_CXX")
    monkeypatch.setenv("DENSE_SNNS_DISABLE_OP", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # turned off on purpose: no warning
        assert lib.load() is None and "DENSE_SNNS_DISABLE_OP" in lib.load_error()


def test_a_build_is_announced_with_its_cache_and_how_to_skip_it(sources, fresh_env, caplog):
    if compiler()[0] is None:
        pytest.skip(compiler()[1])
    with caplog.at_level(logging.INFO, logger="dense_snns"):
        assert library(sources).load() is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "dense_snns"]
    assert len(messages) == 2, messages
    assert "test kernels: building them from source" in messages[0]
    assert "about a minute" in messages[0] and str(fresh_env) in messages[0]
    assert "DENSE_SNNS_DISABLE_OP=1" in messages[0]
    assert messages[1].startswith("test kernels: built in ") and messages[1].endswith(".so")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dense_snns"):
        assert library(sources).load() is not None  # cached: nothing to say
    assert not [r for r in caplog.records if r.name == "dense_snns"]


def test_without_logging_configured_the_notice_is_shown_in_interactive_use_only(monkeypatch):
    import io
    import logging as logging_module

    from dense_snns.ops import _build

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(_build.logger, "hasHandlers", lambda: False)
    monkeypatch.delattr(_build.sys, "ps1", raising=False)
    monkeypatch.delitem(_build.sys.modules, "ipykernel", raising=False)
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(_build.sys, "stderr", stream)
        _build.notify("building something")
        assert (stream.getvalue() == "building something\n") is shown
    monkeypatch.setattr(_build.sys, "ps1", ">>> ", raising=False)  # the Python prompt
    stream = io.StringIO()
    monkeypatch.setattr(_build.sys, "stderr", stream)
    _build.notify("building something")
    assert stream.getvalue() == "building something\n"
    assert logging_module.getLogger("dense_snns") is _build.logger


def test_scripts_show_the_build_messages_on_stderr(monkeypatch, capsys):
    from dense_snns.ops import _build, show_build_messages

    monkeypatch.setattr(_build.logger, "handlers", list(_build.logger.handlers))  # restored after the test
    monkeypatch.setattr(_build.logger, "level", _build.logger.level)
    show_build_messages()
    show_build_messages()  # once
    _build.notify("building the test kernels")
    assert capsys.readouterr().err.count("building the test kernels\n") == 1
