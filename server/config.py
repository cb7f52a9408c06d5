"""The server's settings: one immutable object built once from config.properties, environment and flags.

Where the file comes from and what wins follow TorchServe (spec §8.1): env ``TS_CONFIG_FILE``, then
``--ts-config``, then ``./config.properties``, then defaults; ``$$VAR$$`` in values is replaced from
the environment; precedence is environment (``TS_<KEY>``, only with ``enable_envvars_config=true``) >
command-line flags > file. No other module reads the environment or config files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.properties import parse_properties

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


DEFAULTS: dict[str, str] = {
    "inference_address": "http://127.0.0.1:8080",
    "management_address": "http://127.0.0.1:8081",
    "metrics_address": "http://127.0.0.1:8082",
    "grpc_inference_address": "127.0.0.1",
    "grpc_management_address": "127.0.0.1",
    "grpc_inference_port": "7070",
    "grpc_management_port": "7071",
    "default_workers_per_model": "0",
    "default_response_timeout": "120",
    "default_startup_timeout": "120",
    "unregister_model_timeout": "120",
    "job_queue_size": "100",
    "max_request_size": "6553500",
    "max_response_size": "6553500",
    "limit_max_image_pixels": "true",
    "decode_input_request": "true",
    "enable_metrics_api": "true",
    "metrics_mode": "log",
    "enable_model_api": "false",
    "disable_token_authorization": "false",
    "enable_envvars_config": "false",
    "allowed_urls": "file://.*|http(s)?://.*",
    "token_expiration_min": "60",
}
# Keys the environment may not override (spec §8.2).
_NOT_FROM_ENV = {
    "models", "metric_time_interval", "use_native_io", "io_ratio", "system_metrics_cmd",
    "enable_envvars_config", "model_snapshot",
}  # fmt: skip
_ENV_NAMES = {
    "token_expiration_min": "TS_TOKEN_EXPIRATION_TIME_MIN",
    "ts_open_inference_protocol": "TS_OPEN_INFERENCE_PROTOCOL",
    "ts_header_key_sequence_id": "TS_HEADER_KEY_SEQUENCE_ID",
    "ts_header_key_sequence_start": "TS_HEADER_KEY_SEQUENCE_START",
    "ts_header_key_sequence_end": "TS_HEADER_KEY_SEQUENCE_END",
}
_KNOWN_KEYS = set(DEFAULTS) | {
    "model_store", "workflow_store", "load_models", "models", "number_of_gpu", "number_of_netty_threads",
    "netty_client_threads", "metrics_config", "model_metrics_auto_detect", "disable_system_metrics",
    "system_metrics_cmd", "metric_time_interval", "async_logging", "cors_allowed_origin",
    "cors_allowed_methods", "cors_allowed_headers", "keystore", "keystore_pass", "keystore_type",
    "certificate_file", "private_key_file", "default_service_handler", "service_envelope",
    "model_server_home", "prefer_direct_buffer", "use_env_allowed_urls", "install_py_dep_per_model",
    "blacklist_env_vars", "initial_worker_port", "initial_distribution_port", "ipex_enable",
    "ipex_gpu_enable", "cpu_launcher_enable", "cpu_launcher_args", "cpp_log_config",
    "ts_open_inference_protocol", "ts_header_key_sequence_id", "ts_header_key_sequence_start",
    "ts_header_key_sequence_end", "use_native_io", "io_ratio", "debug", "vmargs", "plugins_path",
    "model_snapshot", "enable_grpc_ssl", "grpc_inference_max_connection_age_ms",
    "grpc_management_max_connection_age_ms", "grpc_inference_max_connection_age_grace_ms",
    "grpc_management_max_connection_age_grace_ms",
    # tsconsole's own keys
    "max_workers_per_model", "max_upload_size", "max_download_size", "download_timeout",
    "request_body_timeout", "loop_stall_warn_ms",
}  # fmt: skip
_VAR = re.compile(r"\$\$([A-Za-z_][A-Za-z0-9_]*)\$\$")


@dataclass(frozen=True)
class Address:
    """A listener: REST ``http[s]://host[:port]`` or ``unix:/path``; gRPC ``host:port`` (scheme "grpc")."""

    scheme: str  # "http", "https", "unix" or "grpc"
    host: str
    port: int
    path: str = ""  # the socket path for "unix"

    @property
    def url(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        if self.scheme == "grpc":
            return self.target
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def target(self) -> str:
        """``host:port``, as gRPC clients and servers spell an address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(value: str, key: str) -> Address:
    value = value.strip()
    if value.startswith("unix:"):
        return Address("unix", "", 0, value[len("unix:") :])
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: {value!r} is not an address like http://127.0.0.1:8080 or unix:/path")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key}: {value!r} has an invalid port") from None
    if port is None:
        port = {"inference_address": 80, "management_address": 8081, "metrics_address": 8082}.get(key, 80)
        if parts.scheme == "https":
            port = {"inference_address": 443, "management_address": 8444, "metrics_address": 8445}.get(key, 443)
    return Address(parts.scheme, parts.hostname, port)


def grpc_address(props: Mapping[str, str], role: str) -> Address:
    """``grpc_<role>_address`` (a host; empty means 127.0.0.1) and ``grpc_<role>_port`` (spec §4.1)."""
    host = props.get(f"grpc_{role}_address", "").strip() or "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = _int(props, f"grpc_{role}_port")
    if not 0 < port < 65536:
        raise ConfigError(f"grpc_{role}_port: {port} is not a TCP port (1-65535)")
    return Address("grpc", host, port)


def _bool(value: str) -> bool:
    return value.strip().lower() == "true"


def _int(props: Mapping[str, str], key: str) -> int:
    try:
        return int(props[key].strip())
    except ValueError:
        raise ConfigError(f"{key}: {props[key]!r} is not a whole number") from None


def substitute_env(value: str, env: Mapping[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"Invalid Environment Variable {name}")
        return env[name]

    return _VAR.sub(repl, value)


def detect_gpu_count(env: Mapping[str, str]) -> int:
    """GPUs this server may use: ``CUDA_VISIBLE_DEVICES`` when set, else what NVML sees (0 without a driver)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no device: a CPU host
        return 0


@dataclass(frozen=True)
class CliOptions:
    """What the ``torchserve``-style command line sets (None: not given)."""

    ts_config: str | None = None
    model_store: str | None = None
    workflow_store: str | None = None
    models: tuple[str, ...] = ()
    log_config: str | None = None
    ncs: bool = False
    disable_token_auth: bool = False
    enable_model_api: bool = False
    foreground: bool = False
    plugins_path: str | None = None
    cpp_log_config: str | None = None


@dataclass(frozen=True)
class Settings:
    inference_address: Address
    management_address: Address
    metrics_address: Address
    grpc_inference_address: Address
    grpc_management_address: Address
    model_store: Path | None
    workflow_store: Path | None
    load_models: tuple[str, ...]
    models: dict[str, Any]
    model_snapshot: dict[str, Any] | None  # set when the configuration is a snapshot to restore
    default_workers_per_model: int
    default_response_timeout: int
    default_startup_timeout: int
    job_queue_size: int
    number_of_gpu: int
    max_request_size: int
    max_response_size: int
    limit_max_image_pixels: bool
    decode_input_request: bool
    service_envelope: str
    enable_metrics_api: bool
    enable_model_api: bool
    disable_token_authorization: bool
    snapshots: bool
    log_location: Path
    metrics_location: Path
    config_file: Path | None
    cpu_count: int
    properties: Mapping[str, str] = field(default_factory=dict)  # every effective key, for snapshots
    unknown_keys: tuple[str, ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.properties.get(key, default)

    def positive(self, key: str, default: float) -> float:
        """A positive number under ``key`` (tsconsole's own keys, ``token_expiration_min``), else ``default``."""
        value = self.get(key)
        try:
            number = float(value) if value and value.strip() else default
        except ValueError:
            number = 0
        if number <= 0:
            log.warning("config: %s=%r is not a positive number; using %s", key, value, default)
            return default
        return number


def latest_snapshot(log_location: Path) -> Path | None:
    """The newest ``<yyyyMMddHHmmssSSS>-<kind>.cfg`` snapshot in ``<log_location>/config``."""
    folder = log_location / "config"
    if not folder.is_dir():
        return None
    snapshots = sorted(p for p in folder.iterdir() if p.name.endswith(".cfg") and p.name[:17].isdigit())
    return snapshots[-1] if snapshots else None


def _locate_config(cli: CliOptions, env: Mapping[str, str], cwd: Path) -> Path | None:
    """TS_CONFIG_FILE, --ts-config, the newest snapshot (unless --ncs), ./config.properties (spec §8.1)."""
    for candidate, source in ((env.get("TS_CONFIG_FILE"), "TS_CONFIG_FILE"), (cli.ts_config, "--ts-config")):
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise ConfigError(f"{source}: config file {candidate} does not exist")
            return path
    if not cli.ncs:
        snapshot = latest_snapshot(cwd / env.get("LOG_LOCATION", "logs"))
        if snapshot is not None:
            return snapshot
    default = cwd / "config.properties"
    return default if default.is_file() else None


def load_settings(
    cli: CliOptions | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Settings:
    cli = cli or CliOptions()
    env = dict(os.environ if env is None else env)
    cwd = cwd or Path.cwd()
    config_file = _locate_config(cli, env, cwd)
    props = dict(DEFAULTS)
    if config_file is not None:
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from None
        props.update({k: substitute_env(v, env) for k, v in parse_properties(text).items()})
    # Command-line flags override the file ...
    if cli.model_store:
        props["model_store"] = cli.model_store
    if cli.workflow_store:
        props["workflow_store"] = cli.workflow_store
    if cli.models:
        props["load_models"] = ",".join(cli.models)
    if cli.disable_token_auth:
        props["disable_token_authorization"] = "true"
    if cli.enable_model_api:
        props["enable_model_api"] = "true"
    # ... and the environment overrides both, when allowed.
    if _bool(props.get("enable_envvars_config", "false")):
        env_urls = _bool(env.get("TS_USE_ENV_ALLOWED_URLS", props.get("use_env_allowed_urls", "false")))
        for key in sorted(_KNOWN_KEYS - _NOT_FROM_ENV):
            name = _ENV_NAMES.get(key, "TS_" + key.upper())
            if name in env and (key != "allowed_urls" or env_urls):
                props[key] = env[name]
    return _build(props, cli, env, config_file)


def _store(props: Mapping[str, str], key: str, flag: str) -> Path | None:
    value = props.get(key)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{flag}: {value} is not an existing folder")
    return path.resolve()


def _build(props: dict[str, str], cli: CliOptions, env: Mapping[str, str], config_file: Path | None) -> Settings:
    models_json: dict[str, Any] = {}
    if props.get("models"):
        try:
            models_json = json.loads(props["models"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"models: not valid JSON: {exc}") from None
        if not isinstance(models_json, dict):
            raise ConfigError("models: must be a JSON object of model name -> version -> settings")
    snapshot: dict[str, Any] | None = None
    if props.get("model_snapshot"):
        try:
            snapshot = json.loads(props["model_snapshot"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model_snapshot: not valid JSON: {exc}") from None
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("models", {}), dict):
            raise ConfigError("model_snapshot: must be a JSON object with a 'models' object")
    model_store = _store(props, "model_store", "--model-store")
    workflow_store = _store(props, "workflow_store", "--workflow-store") or model_store
    load_models = tuple(m.strip() for m in props.get("load_models", "").split(",") if m.strip())
    detected = detect_gpu_count(env)
    configured = props.get("number_of_gpu")
    number_of_gpu = min(detected, int(configured)) if configured and configured.strip().isdigit() else detected
    ints = {
        key: _int(props, key)
        for key in (
            "default_workers_per_model", "default_response_timeout", "default_startup_timeout",
            "job_queue_size", "max_request_size", "max_response_size",
        )
    }  # fmt: skip
    for key, value in ints.items():
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
    return Settings(
        inference_address=parse_address(props["inference_address"], "inference_address"),
        management_address=parse_address(props["management_address"], "management_address"),
        metrics_address=parse_address(props["metrics_address"], "metrics_address"),
        grpc_inference_address=grpc_address(props, "inference"),
        grpc_management_address=grpc_address(props, "management"),
        model_store=model_store,
        workflow_store=workflow_store,
        load_models=load_models,
        models=models_json,
        model_snapshot=snapshot,
        number_of_gpu=number_of_gpu,
        limit_max_image_pixels=_bool(props["limit_max_image_pixels"]),
        decode_input_request=_bool(props["decode_input_request"]),
        service_envelope=props.get("service_envelope", "").strip(),
        enable_metrics_api=_bool(props["enable_metrics_api"]),
        enable_model_api=_bool(props["enable_model_api"]),
        disable_token_authorization=_bool(props["disable_token_authorization"]),
        snapshots=not cli.ncs,
        log_location=Path(env.get("LOG_LOCATION", "logs")),
        metrics_location=Path(env.get("METRICS_LOCATION", env.get("LOG_LOCATION", "logs"))),
        config_file=config_file,
        cpu_count=os.cpu_count() or 1,
        properties=props,
        unknown_keys=tuple(sorted(set(props) - _KNOWN_KEYS)),
        **ints,
    )
