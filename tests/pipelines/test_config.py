from __future__ import annotations

from pathlib import Path

import pytest

from poisonguard.pipelines.config import ConfigError, load_config


def test_defaults_load_and_match_the_models() -> None:
    cfg = load_config()
    assert cfg.run.batch_rows >= 1
    assert cfg.language.model_dump() is not None


def test_user_file_changes_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  shard_rows: 10\n")
    cfg = load_config(path)
    assert cfg.run.shard_rows == 10
    assert cfg.run.batch_rows == load_config().run.batch_rows


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("run:\n  shard_rowz: 10\n", "run.shard_rowz"),
        ("run:\n  shard_rows: -1\n", "run.shard_rows"),
        ("unicode:\n  nonsense: 1\n", "unicode.nonsense"),
        ("nosuchsection: {}\n", "nosuchsection"),
        ("- just\n- a list\n", "mapping"),
        ("run: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_default_yaml_lists_every_knob_of_every_section() -> None:
    """configs/default.yaml is the documentation of the knobs: none may be missing from it."""
    import yaml

    from poisonguard.pipelines.config import PipelineConfig, default_config_text

    data = yaml.safe_load(default_config_text())
    for section, field in PipelineConfig.model_fields.items():
        knobs = set(field.annotation.model_fields)  # type: ignore[union-attr]
        assert knobs <= set(data.get(section) or {}), (section, sorted(knobs - set(data.get(section) or {})))


def test_a_legal_knob_under_its_old_section_says_where_it_moved() -> None:
    with pytest.raises(ConfigError, match=r"dedup\.legal_sentence_share: .*moved: use legal\.sentence_share"):
        load_config(overrides={"dedup": {"legal_sentence_share": None}})
    assert load_config(overrides={"legal": {"sentence_share": None}}).legal.sentence_share is None
