"""run.py's test-leg runner: legs side by side, each log printed whole when the leg ends, the
first failing exit code returned, the optional last leg added or skipped."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_script():
    spec = importlib.util.spec_from_file_location("run_script", os.path.join(ROOT, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leg(title, code):
    """A leg that prints its title line by line and exits with `code`."""
    source = (
        f"import sys, time\nprint({title!r} + ' begins')\ntime.sleep(0.3)\nprint({title!r} + ' ends')\nsys.exit({code})"
    )
    return title, [sys.executable, "-c", source], dict(os.environ)


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_legs_run_and_the_first_failure_is_returned(run_script, monkeypatch, capsys, jobs):
    monkeypatch.setenv("DENSE_SNNS_TEST_JOBS", jobs)
    asked = []
    code = run_script.run_legs([leg("one", 0), leg("two", 4)], lambda: asked.append(1) or leg("three", 0))
    out = capsys.readouterr().out
    assert code == 4 and asked == [1]
    for title in ("one", "two", "three"):
        # each log is printed whole, not interleaved with another leg's
        assert f"{title} begins\n{title} ends\n" in out
    assert "=== passed: test suite one" in out and "=== FAILED (exit code 4): test suite two" in out


def test_a_skipped_last_leg_is_reported(run_script, monkeypatch, capsys):
    monkeypatch.setenv("DENSE_SNNS_TEST_JOBS", "2")
    assert run_script.run_legs([leg("one", 0)], lambda: False) == 0
    assert "=== skipped: the third leg" in capsys.readouterr().out


def test_bad_job_count_is_refused(run_script, monkeypatch):
    monkeypatch.setenv("DENSE_SNNS_TEST_JOBS", "0")
    with pytest.raises(SystemExit, match="DENSE_SNNS_TEST_JOBS must be a positive integer, got '0'"):
        run_script.parallel_legs()
