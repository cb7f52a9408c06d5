"""The ``torchserve`` command-line flags (spec §8.3), shared by ``tsconsole serve`` and ``tsconsole start``.

Every flag of TorchServe 0.12 is accepted, so existing command lines work; flags for features this
server does not have yet are accepted and listed in the help as such.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from server.config import CliOptions, ConfigError, Settings, load_settings

NOT_YET = "(accepted for compatibility; not used yet)"


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ts-config", "-f", "--ts-config-file", dest="ts_config", help="config.properties to use")
    p.add_argument("--model-store", "-s", dest="model_store", help="folder of model archives (required)")
    p.add_argument("--workflow-store", "-w", dest="workflow_store", help="folder of workflow archives " + NOT_YET)
    p.add_argument(
        "--models", "-m", nargs="+", default=[], metavar="MODEL", help="models to load: [name=]file.mar ... or all"
    )
    p.add_argument("--log-config", help="log4j2 XML file of TorchServe " + NOT_YET)
    p.add_argument("--cpp-log-config", "-clog", help="C++ backend log config " + NOT_YET)
    p.add_argument("--foreground", action="store_true", help="stay in the foreground")
    p.add_argument(
        "--ncs", "--no-config-snapshots", "-ncs", "--no-config-snapshot", dest="ncs", action="store_true",
        help="neither read nor write config snapshots",
    )  # fmt: skip
    p.add_argument("--plugins-path", "--ppath", dest="plugins_path", help="plugin jars " + NOT_YET)
    p.add_argument(
        "--disable-token-auth", "--dt", "-dt", dest="disable_token_auth", action="store_true",
        help="disable token authorization " + NOT_YET,
    )  # fmt: skip
    p.add_argument(
        "--enable-model-api", "-mapi", dest="enable_model_api", action="store_true",
        help="allow registering and unregistering models through the management API",
    )  # fmt: skip
    p.add_argument("--python", "-e", dest="python", help="Python interpreter for the worker processes")


def options_from(args: argparse.Namespace) -> CliOptions:
    return CliOptions(
        ts_config=args.ts_config,
        model_store=args.model_store,
        workflow_store=args.workflow_store,
        models=tuple(args.models),
        log_config=args.log_config,
        ncs=args.ncs,
        disable_token_auth=args.disable_token_auth,
        enable_model_api=args.enable_model_api,
        foreground=args.foreground,
        plugins_path=args.plugins_path,
        cpp_log_config=args.cpp_log_config,
    )


def parse_server_args(argv: Sequence[str], prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Run the model server (TorchServe-compatible flags).")
    add_server_flags(parser)
    return parser.parse_args(list(argv))


def server_settings(args: argparse.Namespace) -> Settings:
    """The settings a server started with these flags would run with; ConfigError says what is wrong."""
    settings = load_settings(options_from(args))
    if settings.model_store is None:
        raise ConfigError("--model-store is required (or model_store in config.properties)")
    return settings
