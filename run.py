#!/usr/bin/env python3
"""Set up a virtual environment and run the main job or the test suite.

    python3 run.py demo   # install, train the default model on randman, print accuracy
    python3 run.py test   # install test extras, run the suite under Keras 3, Keras 2, and on
                          # Graphcore's TensorFlow base (Python 3.8, TensorFlow 2.6.3, Keras 2.6)

Only the Python standard library is needed to start it.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("DENSE_SNNS_VENV", os.path.join(ROOT, ".venv"))
PY = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".dense_snns_installed")
PACKAGES = ["dense_snns", "sparse_snns", "snns_as_gnn", "snn_cli"]
# The third leg: Graphcore's TensorFlow base (Poplar SDK 3.4) in a virtual environment of its own.
VENV_TF26 = os.environ.get("DENSE_SNNS_VENV_TF26", os.path.join(ROOT, ".venv-tf2.6"))
PY_TF26 = os.path.join(VENV_TF26, "bin", "python")
STAMP_TF26 = os.path.join(VENV_TF26, ".dense_snns_installed")


def run(cmd, env=None):
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code != 0:
        sys.exit(code)


def install():
    """Create the venv and install the project with its cpu and test extras (once per change)."""
    if not os.path.exists(PY):
        venv.EnvBuilder(with_pip=True).create(VENV)
    sources = [os.path.join(ROOT, name) for name in ("setup.py", "pyproject.toml")]
    if os.path.exists(STAMP) and all(os.path.getmtime(s) <= os.path.getmtime(STAMP) for s in sources):
        return
    run([PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([PY, "-m", "pip", "install", "--quiet", "-e", ".[cpu,test]"])
    with open(STAMP, "w") as stamp:
        stamp.write("ok\n")


def python38():
    """A Python 3.8 interpreter that runs: one of pyenv's, else `python3.8` on the PATH (a
    pyenv shim there fails unless 3.8 is selected); None if none."""
    pattern = os.path.join(
        os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions", "3.8*", "bin", "python3.8"
    )
    for candidate in sorted(glob.glob(pattern), reverse=True) + [shutil.which("python3.8")]:
        if candidate is None:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def install_tf26():
    """The venv of the third leg: TensorFlow 2.6.3 and Keras 2.6 (the tf26 extra), the test
    tools that run there, and the project (once per change). False without Python 3.8."""
    if not os.path.exists(PY_TF26):
        interpreter = python38()
        if interpreter is None:
            return False
        run([interpreter, "-m", "venv", VENV_TF26])
    sources = [os.path.join(ROOT, name) for name in ("setup.py", "pyproject.toml")]
    if not (os.path.exists(STAMP_TF26) and all(os.path.getmtime(s) <= os.path.getmtime(STAMP_TF26) for s in sources)):
        run([PY_TF26, "-m", "pip", "install", "--quiet", "-e", ".[tf26,test-tf26]"])
        with open(STAMP_TF26, "w") as stamp:
            stamp.write("ok\n")
    return True


def env_with(**extra):
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def demo(args):
    install()
    run([PY, "examples/train_randman.py"] + args, env=env_with())


def test(args):
    install()
    # Library code keeps to Python 3.8 syntax (Graphcore's TensorFlow runs on 3.8).
    paths = [p for p in PACKAGES + ["examples", "benchmarks"] if os.path.isdir(os.path.join(ROOT, p))]
    run([os.path.join(VENV, "bin", "vermin"), "-q", "--no-tips", "--violations", "-t=3.8-"] + paths)
    # Undefined names, unused imports and the like (pyflakes rules).
    ruff = os.path.join(VENV, "bin", "ruff")
    run([ruff, "check", "--quiet", "--select", "F"] + paths + ["tests"])
    # One code format, settings in pyproject.toml (`ruff format .` applies it).
    run([ruff, "format", "--check", "--quiet", "."])
    # pytest exits 5 when it collects no test: a leg fails on every non-zero code.
    # The same hypothesis examples on every run (the profile is in tests/conftest.py).
    args = ["--hypothesis-profile=deterministic"] + args
    legs = [
        ("under Keras 3", [PY, "-m", "pytest", "-q"] + args, env_with(TF_USE_LEGACY_KERAS="0")),
        (
            "under Keras 2 (TF_USE_LEGACY_KERAS=1, tf-keras)",
            [PY, "-m", "pytest", "-q"] + args,
            env_with(TF_USE_LEGACY_KERAS="1"),
        ),
    ]
    third = "on Graphcore's TensorFlow base (Python 3.8, TensorFlow 2.6.3, Keras 2.6)"
    sys.exit(run_legs(legs, lambda: install_tf26() and (third, [PY_TF26, "-m", "pytest", "-q"] + args, env_with())))


def parallel_legs() -> int:
    """How many legs run at once: $DENSE_SNNS_TEST_JOBS, else one per core, up to 3. The suite
    is mostly Python and TensorFlow's per-op overhead on one thread: two legs side by side on
    two cores took 15 min each where one alone took 14; three on two cores were slower than
    two and then one."""
    value = os.environ.get("DENSE_SNNS_TEST_JOBS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            sys.exit(f"DENSE_SNNS_TEST_JOBS must be a positive integer, got {value!r}")
        return int(value)
    return max(1, min(3, os.cpu_count() or 1))


def run_legs(legs, last):
    """Runs the test legs (title, command, env), `parallel_legs()` at a time, each into a log that
    is printed when it ends; `last()` (called while the first legs run) gives one more leg, or
    a false value to skip it. Returns 0 if every leg passed, else the first failing code."""
    jobs = parallel_legs()
    logs = tempfile.mkdtemp(prefix="dense_snns_test_")
    pending, running, codes = list(legs), [], []
    extra_asked, started = False, 0
    try:
        while pending or running or not extra_asked:
            while pending and len(running) < jobs:
                title, cmd, env = pending.pop(0)
                path = os.path.join(logs, f"leg{started}.log")
                started += 1
                with open(path, "w") as log:
                    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                print(f"=== started: test suite {title} (pid {process.pid}, log {path}) ===", flush=True)
                running.append((title, cmd, process, path, time.time()))
            if not extra_asked:
                extra_asked = True
                leg = last()
                if leg:
                    pending.append(leg)
                else:
                    print(
                        "=== skipped: the third leg (no Python 3.8 interpreter: python3.8 on the PATH "
                        "or under pyenv) ===",
                        flush=True,
                    )
                continue
            time.sleep(1)
            for entry in [e for e in running if e[2].poll() is not None]:
                running.remove(entry)
                title, cmd, process, path, start = entry
                print(f"=== test suite {title} ===\n+ {' '.join(cmd)}", flush=True)
                with open(path) as log:
                    shutil.copyfileobj(log, sys.stdout)
                verdict = "passed" if process.returncode == 0 else f"FAILED (exit code {process.returncode})"
                print(f"=== {verdict}: test suite {title}, {time.time() - start:.0f} s ===", flush=True)
                codes.append(process.returncode)
    finally:
        # Ctrl-C or an error here: stop the legs still running (pytest's own handlers stop
        # what their tests started), at last by force.
        for _, _, process, _, _ in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, _, process, _, _ in running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    shutil.rmtree(logs, ignore_errors=True)
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit("usage: python3 run.py demo|test [extra args]")
    {"demo": demo, "test": test}[sys.argv[1]](sys.argv[2:])
