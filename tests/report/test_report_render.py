import json
from html.parser import HTMLParser

import pytest

from pipeline.errors import DataError
from pipeline.report import run


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.scripts, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs.get("src"))
        if tag == "script":
            self.scripts.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_run_empty_directories_renders_page_that_names_what_is_missing(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "audit").mkdir()
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=tmp_path / "audit", out=tmp_path / "report")
    page = _parse(result.index)
    text = " ".join(page.text)
    assert "metrics.json does not exist" in text and "audit.json does not exist" in text
    assert "ingest directory was not found" in text
    assert page.srcs == []
    assert (tmp_path / "report" / "stage.json").is_file()


def test_run_missing_evaluate_directory_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="--evaluate must be an existing directory"):
        run(evaluate_dir=tmp_path / "nope", audit_dir=None, out=tmp_path / "report")


def test_run_hostile_model_name_is_escaped_and_page_needs_no_network(tmp_path):
    hostile = "<script>alert(1)</script>"
    block = {"n": 4, "accuracy": 0.5, "auroc": None, "auroc_ci": [None, None], "conflict_accuracy": None}
    metrics = {"split": "test", "sites": ["harbour"],
               "models": {hostile: {"algorithm": "erm", "seed": 0, "selection_rule": "training_domain",
                                    "per_site": {"harbour": block}, "mean_site": block}}}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report", title="A & B")
    html = result.index.read_text()
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A &amp; B" in html
    page = _parse(result.index)
    assert all(not s.get("src") for s in page.scripts)  # only the inline sorting script
    assert "http://" not in html and "https://" not in html
    for src in page.srcs:
        assert (result.out / src).is_file()
