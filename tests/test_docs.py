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
    # A test implements the hook (``def cxrbench_register_x(``) or calls a plugin's implementation of it.
    missing = [h for h in HOOKS if f"{h}(" not in sources]
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


# ------------------------------------------------------------------ the docs a plugin author follows
def _block(text: str, after: str, language: str) -> str:
    """The first ```language code block after the line ``after``."""
    return re.search(re.escape(after) + r"\n\n```" + language + r"\n(.*?)```", text, re.S).group(1)


def test_readme_states_the_contributing_example_sizes():
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    sizes = re.search(r"a working example: a (\d+)-line module, a (\d+)-line\s+`pyproject.toml` and a (\d+)-line test",
                      (ROOT / "README.md").read_text())
    blocks = [_block(contributing, "`my_plugin.py`:", "python"), _block(contributing, "`pyproject.toml`:", "toml"),
              _block(contributing, '`tests/test_my_plugin.py` (see "Testing your plugin" below):', "python")]
    assert [int(n) for n in sizes.groups()] == [len(b.strip().splitlines()) for b in blocks]


def test_model_docstring_shows_the_contract_signatures():
    from cxrbench.model import Model

    doc = inspect.getmodule(Model).__doc__
    for method in ("fit", "generate"):
        params = ", ".join(inspect.signature(getattr(Model, method)).parameters)
        assert f"def {method}({params}): ..." in doc, method


def test_markdown_files_mention_only_files_that_exist():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *ROOT.glob("docs/*.md"), *ROOT.glob("plugins/*/README.md")]
    missing = []
    sources = [*ROOT.glob("cxrbench/**/*.py"), *ROOT.glob("plugins/*/*.py"), *ROOT.glob("scripts/*.py")]
    for page in [*pages, *sources]:  # docstrings and comments are docs too
        text = page.read_text()
        for name in ("DESIGN.md", "PROBES.md", "STYLE.md", "../shared"):
            if name in text:
                missing.append(f"{page.relative_to(ROOT)}: {name}")
        if page.suffix == ".py":
            continue
        for ref in set(re.findall(r"(?<![\w.-])((?:\.\./|[\w-]+/)*[\w-]+\.md)\b", text)):
            if not ((page.parent / ref).exists() or (ROOT / ref).exists() or (ROOT / "docs" / ref).exists()):
                missing.append(f"{page.relative_to(ROOT)}: {ref}")
    assert not missing, missing


def test_models_doc_shows_partial_encoder_whole():
    code = _block((ROOT / "docs" / "models.md").read_text(),
                  "The whole of `partial-encoder` (`plugins/partial-encoder/cxrbench_partial_encoder.py`):", "python")
    assert code == (ROOT / "plugins" / "partial-encoder" / "cxrbench_partial_encoder.py").read_text()


def test_models_doc_encoder_strategy_records_that_its_encoder_trains():
    code = _block((ROOT / "docs" / "models.md").read_text(), "## A new encoder strategy", "python")
    module = types.ModuleType("partly_frozen")
    exec(compile(code, "docs/models.md:new-encoder-strategy", "exec", dont_inherit=True), module.__dict__)
    assert module.PartlyFrozenModel().config()["train_text_encoder"] is True
    registry = registry_with(module.PartlyFrozenModel, name="partly_frozen")
    assert set(registry.model("partly-frozen-encoder").capabilities) == {"generate", "localize"}
