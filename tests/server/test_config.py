"""Settings from config.properties, environment and flags, with TorchServe's precedence (spec §8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import CliOptions, ConfigError, load_settings, parse_address
from server.properties import format_properties, parse_properties


def test_java_properties_syntax() -> None:
    text = "# comment\n! also\na=1\nb : 2\nc 3\nlong=one \\\n    two\nurl=http\\://h\\:80\nempty\ne==x\n"
    assert parse_properties(text) == {
        "a": "1", "b": "2", "c": "3", "long": "one two", "url": "http://h:80", "empty": "", "e": "=x",
    }  # fmt: skip
    props = {"model_snapshot": '{\n  "a": "b:c"\n}', "k": "v=1"}
    assert parse_properties(format_properties(props, "Saving snapshot")) == props


def test_defaults_listen_on_localhost(tmp_path: Path) -> None:
    s = load_settings(CliOptions(), env={}, cwd=tmp_path)
    assert s.inference_address.url == "http://127.0.0.1:8080"
    assert s.management_address.url == "http://127.0.0.1:8081"
    assert s.metrics_address.url == "http://127.0.0.1:8082"
    assert s.job_queue_size == 100 and s.default_response_timeout == 120
    assert s.enable_model_api is False and s.snapshots is True
    assert s.log_location == Path("logs")


def test_config_file_flags_and_environment_precedence(tmp_path: Path) -> None:
    store, other = tmp_path / "store", tmp_path / "other"
    store.mkdir()
    other.mkdir()
    config = tmp_path / "ts.properties"
    config.write_text(
        f"model_store={store}\ninference_address=http://0.0.0.0:9090\njob_queue_size=7\n"
        "default_workers_per_model=$$WORKERS$$\n"
    )
    env = {"WORKERS": "3", "TS_JOB_QUEUE_SIZE": "11"}
    s = load_settings(CliOptions(ts_config=str(config), model_store=str(other)), env=env, cwd=tmp_path)
    assert s.model_store == other.resolve()  # the flag beats the file
    assert s.inference_address.url == "http://0.0.0.0:9090"
    assert s.default_workers_per_model == 3  # $$VAR$$ substituted
    assert s.job_queue_size == 7  # TS_* ignored without enable_envvars_config

    config.write_text(config.read_text() + "enable_envvars_config=true\n")
    s = load_settings(CliOptions(ts_config=str(config), model_store=str(other)), env=env, cwd=tmp_path)
    assert s.job_queue_size == 11  # the environment beats file and flags when allowed


def test_config_file_is_found_in_the_working_directory_and_through_ts_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.properties").write_text("job_queue_size=5\n")
    assert load_settings(CliOptions(), env={}, cwd=tmp_path).job_queue_size == 5
    other = tmp_path / "elsewhere.properties"
    other.write_text("job_queue_size=9\n")
    assert load_settings(CliOptions(), env={"TS_CONFIG_FILE": str(other)}, cwd=tmp_path).job_queue_size == 9


@pytest.mark.parametrize(
    ("cli", "props", "env", "message"),
    [
        (CliOptions(ts_config="missing.properties"), "", {}, "does not exist"),
        (CliOptions(model_store="no/such/store"), "", {}, "not an existing folder"),
        (CliOptions(), "default_workers_per_model=$$NOPE$$\n", {}, "Invalid Environment Variable NOPE"),
        (CliOptions(), "job_queue_size=many\n", {}, "not a whole number"),
        (CliOptions(), "inference_address=ftp://x\n", {}, "is not an address"),
        (CliOptions(), "models={not json\n", {}, "not valid JSON"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    tmp_path: Path, cli: CliOptions, props: str, env: dict[str, str], message: str
) -> None:
    if props:
        (tmp_path / "config.properties").write_text(props)
    with pytest.raises(ConfigError, match=message):
        load_settings(cli, env=env, cwd=tmp_path)


def test_addresses() -> None:
    assert parse_address("https://example.com", "inference_address").port == 443
    assert parse_address("http://[::1]:81", "inference_address").url == "http://[::1]:81"
    assert parse_address("unix:/tmp/ts.sock", "inference_address").path == "/tmp/ts.sock"


def test_gpu_count_follows_cuda_visible_devices(tmp_path: Path) -> None:
    assert load_settings(CliOptions(), env={"CUDA_VISIBLE_DEVICES": "0,1"}, cwd=tmp_path).number_of_gpu == 2
    (tmp_path / "config.properties").write_text("number_of_gpu=1\n")
    assert load_settings(CliOptions(), env={"CUDA_VISIBLE_DEVICES": "0,1"}, cwd=tmp_path).number_of_gpu == 1
    assert load_settings(CliOptions(), env={"CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path).number_of_gpu == 0
