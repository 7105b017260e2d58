"""Docstrings are part of the API: every public module, function, class and method of
curation/, pretrain/ and downstream/ (and chexficient/inference.py) has one, and docs/api.md
is exactly what `python -m chexficient.apidoc` prints from them."""

from __future__ import annotations

from pathlib import Path

from chexficient import apidoc

ROOT = Path(__file__).resolve().parents[1]


def test_public_objects_have_docstrings():
    missing = apidoc.missing_docstrings()
    assert not missing, ("public objects without a docstring (say what it does and returns in a "
                         "line or three):\n" + "\n".join(missing))


def test_api_page_is_up_to_date():
    assert (ROOT / "docs" / "api.md").read_text() == apidoc.render(), (
        "docs/api.md is stale: regenerate it with `python -m chexficient.apidoc > docs/api.md`")


def test_the_walker_covers_the_packages():
    titles = {e.title for e in apidoc.entries()}
    assert {"curation", "curation.make_curator", "curation.base.Curator", "pretrain.train.train",
            "pretrain.schedule.Plan.phases", "downstream.suite.run_bench",
            "downstream.encoders.Encoders.embed_images"} <= titles
    assert not any(part.startswith("_") and part != "__init__"
                   for title in titles for part in title.split("."))


def test_the_walker_finds_what_lacks_a_docstring(tmp_path):
    package = tmp_path / "curation"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    (package / "rule.py").write_text(
        '"""A module."""\n\n\ndef documented(x: int) -> int:\n    """Returns x."""\n    return x\n\n\n'
        'def bare(x):\n    return x\n\n\ndef _private(x):\n    return x\n\n\n'
        'class Thing:\n    """A thing."""\n\n    def __init__(self, a: int = 1):\n        self.a = a\n\n'
        '    def method(self, b):\n        return b\n\n    @property\n    def size(self) -> int:\n'
        '        """Its size."""\n        return 1\n')
    assert apidoc.missing_docstrings(tmp_path) == [
        "curation/rule.py:9: curation.rule.bare (function)",
        "curation/rule.py:23: curation.rule.Thing.method (method)"]
    page = apidoc.render(tmp_path)
    assert "- `documented(x: int) -> int`" in page and "- `Thing(a: int=1)` (class)" in page
    assert "- `Thing.method(b)`" in page and "- `Thing.size` (property)" in page
    assert "_private" not in page
