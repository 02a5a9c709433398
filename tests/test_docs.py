"""The docs stay true: every hook is documented and tested; CONTRIBUTING's example plugin works."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

from cxrbench import hookspecs
from cxrbench.testing import assert_model_compliant, registry_with

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("cxrbench_")]


def test_every_hook_is_documented_in_contributing():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    missing = [h for h in HOOKS if f"`{h}(register)`" not in text]
    assert not missing, f"hooks missing from CONTRIBUTING.md: {missing}"


def test_every_hook_is_exercised_by_a_test():
    sources = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    sources += (ROOT / "cxrbench" / "testing.py").read_text()
    missing = [h for h in HOOKS if h not in sources and h.replace("cxrbench_register_", "") not in sources]
    assert not missing, f"hooks without a test: {missing}"


def test_contributing_example_plugin_registers_and_is_compliant():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = re.search(r"`my_plugin.py`:\n\n```python\n(.*?)```", text, re.S).group(1)
    module = types.ModuleType("my_plugin")
    exec(compile(code, "CONTRIBUTING.md:my_plugin.py", "exec"), module.__dict__)
    assert_model_compliant(module.MeanImageModel)
    reg = registry_with(module.MeanImageModel, name="my_plugin")
    assert reg.model("mean-image").capabilities == ("generate",)
    assert len(code.strip().splitlines()) <= 20


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for script in re.findall(r"bash (scripts/\S+\.sh)", readme):
        assert (ROOT / script).exists(), script
    assert "bash scripts/run_default_track.sh" in readme and "bash scripts/run_tests.sh" in readme
    assert "bash scripts/run_tests.sh" in (ROOT / ".ci" / "run").read_text() or "run_tests" in (ROOT / ".ci" / "run").read_text()


def test_every_metric_token_group_and_feature_extractor_is_documented():
    from cxrbench.metrics.fidelity import FIDELITY_METRICS
    from cxrbench.metrics.localization import LOCALIZATION_METRICS
    from cxrbench.model import TOKEN_GROUPS
    from cxrbench.registry import build_registry

    text = (ROOT / "docs" / "metrics.md").read_text()
    names = [*LOCALIZATION_METRICS, *FIDELITY_METRICS, *TOKEN_GROUPS, *build_registry().feature_extractors]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"missing from docs/metrics.md: {missing}"
    for family in ("loc_<group>_<metric>", "fid_<extractor>", "kid_<extractor>", "precision_<extractor>",
                   "recall_<extractor>"):
        assert f"`{family}`" in text, family
