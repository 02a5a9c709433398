from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never see plugins of the developer's environment beyond the repository's own.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Make an installed distribution with a ``cxrbench`` entry point, the way pip would, on sys.path.

    The process-wide registry (``cxrbench.registry.get_registry``) is reset for the test and restored after
    it, so that a registry built while the fake distribution is installed does not outlive the test.
    """
    monkeypatch.setattr("cxrbench.registry._REGISTRY", None)
    created = []

    def make(dist: str, entry_name: str, module_name: str, source: str, version: str = "1.2.3") -> Path:
        root = tmp_path / f"site-{dist}"
        root.mkdir()
        (root / f"{module_name}.py").write_text(source)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[cxrbench]\n{entry_name} = {module_name}\n")
        monkeypatch.syspath_prepend(str(root))
        created.append(module_name)
        return root

    yield make
    for name in created:
        sys.modules.pop(name, None)
