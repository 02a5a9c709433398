"""CONTRIBUTING.md's first plugin, exactly as printed, from a fresh folder: the layout, the three files and
the shell commands are read from CONTRIBUTING.md and run as they stand.

The plugin is installed with `pip install -e` into a throwaway virtual environment that sees the running
interpreter's packages (cxrbench and its dependencies) through a .pth file, so nothing is installed into
the interpreter that runs the tests. Offline: the `pip` on the PATH adds `--no-index --no-deps
--no-build-isolation` to `install` (the build backend and the dependencies are the running interpreter's).
"""

from __future__ import annotations

import os
import re
import site
import stat
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()


def block(after: str, language: str) -> str:
    """The first ```language code block that follows the line ``after`` in CONTRIBUTING.md."""
    match = re.search(re.escape(after) + r"\n\n```" + language + r"\n(.*?)```", CONTRIBUTING, re.S)
    assert match, f"CONTRIBUTING.md has no {language} block after {after!r}"
    return match.group(1)


def layout() -> list[str]:
    """The files of the plugin folder as the tree block lists them (``my-plugin/`` then indented names)."""
    tree = re.search(r"```\n(my-plugin/\n(?:  .*\n)+)```", CONTRIBUTING).group(1)
    return [line.strip() for line in tree.splitlines()[1:]]


FILES = {
    "my_plugin.py": ("`my_plugin.py`:", "python"),
    "pyproject.toml": ("`pyproject.toml`:", "toml"),
    "tests/test_my_plugin.py": ('`tests/test_my_plugin.py` (see "Testing your plugin" below):', "python"),
}


def throwaway_environment(folder: Path) -> dict[str, str]:
    """A venv whose Python sees this interpreter's site folders, with `pip` and `cxrbench` on its PATH."""
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    parents += [p for p in site.getsitepackages() if p not in parents and Path(p).is_dir()]
    (Path(purelib) / "_parent_site.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents) + "\n"
    )
    shims = {
        "pip": f'if [ "$1" = install ]; then shift; exec "{python}" -m pip install --no-index --no-deps '
        f'--no-build-isolation "$@"; fi\nexec "{python}" -m pip "$@"\n',
        "cxrbench": f'exec "{python}" -m cxrbench "$@"\n',
    }
    for name, body in shims.items():
        shim = folder / "bin" / name
        shim.write_text("#!/bin/sh\n" + body)
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{folder / 'bin'}:{env.get('PATH', '')}",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    env.pop("CXRBENCH_LOAD_PLUGINS", None)  # every installed plugin, the new one included
    return env


@pytest.mark.slow
def test_contributing_plugin_installs_runs_validates_and_makes_a_leaderboard(tmp_path):
    plugin = tmp_path / "work" / "my-plugin"
    assert sorted(layout()) == sorted(FILES)
    for name, (after, language) in FILES.items():
        (plugin / name).parent.mkdir(parents=True, exist_ok=True)
        (plugin / name).write_text(block(after, language))
    env = throwaway_environment(tmp_path / "venv")
    commands = block("folder that holds `my-plugin/`:", "bash")
    done = subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", commands],
        cwd=plugin.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "mean-image" in log  # `cxrbench list` shows it
    work = plugin.parent
    result = work / "results" / "mean-image__smoke__seed0.json"
    assert result.is_file() and (work / "results" / "mean-image__smoke__seed0.samples.jsonl").is_file()
    assert f"{result.relative_to(work)}: ok" in log
    assert "mean-image__smoke__seed0.samples.jsonl: skipped" in log and "INVALID" not in log
    readme = (work / "leaderboard" / "README.md").read_text()
    assert "| mean-image" in readme and "cxrbench leaderboard --results results --out leaderboard" in readme
    assert "[0](../results/mean-image__smoke__seed0.json)" in readme
    # the plugin went into the throwaway environment only
    assert (
        "cxrbench-mean-image"
        not in subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True).stdout
    )
