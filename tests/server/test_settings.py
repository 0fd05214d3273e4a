"""The settings model: where each value comes from, the errors that name their key, the
masked view and the generated reference table (docs/configuration.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchops import ConfigurationError
from batchops.cli import main
from batchops.server.settings import Settings, markdown_table, masked

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "batchops.toml"
    path.write_text("max_batch_operations = 300\n")
    return path


def test_plain_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHOPS_MAX_BATCH_OPERATIONS", "7")
    assert Settings().max_batch_operations == 1000


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHOPS_MAX_BATCH_OPERATIONS", "7")
    assert Settings.load(max_batch_operations=9).max_batch_operations == 9


def test_the_environment_beats_the_config_file(monkeypatch: pytest.MonkeyPatch, toml: Path) -> None:
    monkeypatch.setenv("BATCHOPS_MAX_BATCH_OPERATIONS", "7")
    assert Settings.load(toml).max_batch_operations == 7


def test_a_flag_beats_the_config_file(toml: Path) -> None:
    assert Settings.load(toml, max_batch_operations=9).max_batch_operations == 9


def test_the_config_file_beats_the_default(toml: Path) -> None:
    assert Settings.load(toml).max_batch_operations == 300


def test_a_flag_left_out_is_none_and_changes_nothing(toml: Path) -> None:
    assert Settings.load(toml, max_batch_operations=None).max_batch_operations == 300


def test_an_unknown_key_in_the_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "batchops.toml"
    path.write_text("max_batch_operations = 5\nmax_batch_ops = 5\n")
    with pytest.raises(ConfigurationError, match="unknown setting 'max_batch_ops'"):
        Settings.load(path)


def test_an_unknown_batchops_variable_is_left_to_whoever_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # BATCHOPS_URL, BATCHOPS_API_KEY, BATCHOPS_CONFIG are the CLI's, not the server's.
    monkeypatch.setenv("BATCHOPS_NOT_A_SETTING", "1")
    assert Settings.load() == Settings()


def test_a_value_of_the_wrong_type_names_the_setting_and_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHOPS_RATE_LIMIT_REQUESTS", "lots")
    with pytest.raises(
        ConfigurationError,
        match=r"setting rate_limit_requests_per_minute \(BATCHOPS_RATE_LIMIT_REQUESTS\)",
    ):
        Settings.load()


def test_a_config_file_that_is_not_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "batchops.toml"
    path.write_text("max_batch_operations = \n")
    with pytest.raises(ConfigurationError, match=f"{re.escape(str(path))} is not valid TOML"):
        Settings.load(path)


def test_a_missing_config_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read the config file .*nope\.toml"):
        Settings.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", ["BATCHOPS_DB", "BATCHOPS_DB_URL"])
def test_the_database_is_read_from_the_old_and_the_new_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "postgresql://u@h/db")
    assert Settings.load().db_url == "postgresql://u@h/db"


def test_renamed_settings_keep_their_variables_and_take_their_field_name_in_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "batchops.toml"
    path.write_text("rate_limit_operations_per_minute = 10\n")
    monkeypatch.setenv("BATCHOPS_RATE_LIMIT_REQUESTS", "5")
    settings = Settings.load(path)
    assert settings.rate_limit_requests_per_minute == 5
    assert settings.rate_limit_operations_per_minute == 10


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHOPS_JOB_POLL_S", "")
    assert Settings.load().job_poll_s == 1.0


def test_load_returns_plain_settings_equal_to_the_same_values() -> None:
    loaded = Settings.load(max_batch_operations=5)
    assert type(loaded) is Settings
    assert loaded == Settings(max_batch_operations=5)


def test_the_settings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        Settings().max_batch_operations = 5


def test_replace_checks_the_new_values_as_the_constructor_does() -> None:
    assert Settings().replace(job_poll_s=0.5).job_poll_s == 0.5
    with pytest.raises(ValueError, match="job_poll_s"):
        Settings().replace(job_poll_s="soon")


def test_masked_hides_the_passwords_of_the_database_and_redis_urls() -> None:
    shown = masked(
        Settings(db_url="postgresql://app:s3cret@db:5432/prod", redis_url="redis://:pw@r:6379/0")
    )
    assert shown["db_url"] == "postgresql://app:***@db:5432/prod"
    assert shown["redis_url"] == "redis://:***@r:6379/0"


def test_config_show_prints_the_effective_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, toml: Path
) -> None:
    monkeypatch.setenv("BATCHOPS_DB", "postgresql://app:s3cret@db/prod")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    assert 'db_url = "postgresql://app:***@db/prod"' in result.stdout.splitlines()
    assert "max_batch_operations = 300" in result.stdout.splitlines()
    assert "s3cret" not in result.output


def test_config_show_refuses_an_unknown_key_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "batchops.toml"
    path.write_text("colour = 'blue'\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"batchops config: error CONFIG_ERROR: unknown setting 'colour' in {path} "
        "(docs/configuration.md lists them)"
    ]


def test_docs_configuration_holds_the_table_generated_from_the_model() -> None:
    lines = DOCS.read_text().splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.startswith("| TOML key |"))
    end = next((n for n in range(start, len(lines)) if not lines[n].startswith("|")), len(lines))
    assert "".join(lines[start:end]) == markdown_table(), (
        "docs/configuration.md is stale: python -m batchops.server.settings --markdown"
    )


def test_serve_takes_its_settings_from_the_config_file_under_its_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import batchops.server.serve

    config = tmp_path / "batchops.toml"
    config.write_text('role = "api"\nworkers = 3\nport = 9100\nmax_batch_operations = 300\n')
    seen: list[tuple[Settings, dict[str, object]]] = []
    monkeypatch.setattr(
        batchops.server.serve, "serve", lambda settings, **options: seen.append((settings, options))
    )
    result = CliRunner().invoke(
        main, ["serve", "--config", str(config), "--max-batch-operations", "9", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    settings, options = seen[0]
    assert (settings.max_batch_operations, settings.workers) == (9, 2)  # the flags
    assert (settings.role, options["port"]) == ("api", 9100)  # the file
