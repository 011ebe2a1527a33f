"""Where the workspace lives and which backends it uses.

Each setting is taken from the first place that gives it:

1. a flag (``--home``, ``--db-url``, ``--artifacts-url`` on the CLI, or arguments to ``Workspace.open``);
2. the environment (``CONVEYOR_HOME``, ``CONVEYOR_DB_URL``, ``CONVEYOR_ARTIFACTS_URL``,
   ``CONVEYOR_ARTIFACTS_OPTIONS`` as a JSON object);
3. ``conveyor.toml`` inside the workspace folder (values may use ``${VAR}`` to pull secrets from the
   environment, so no password needs to be written down);
4. defaults: a SQLite database ``conveyor.db`` and an ``artifacts/`` folder inside the workspace.

The workspace folder itself is, in order: the flag, ``CONVEYOR_HOME``, the nearest ``.conveyor/`` folder
holding a ``conveyor.toml`` (or its default ``conveyor.db``) in the current directory or its parents (a
project-local workspace, found the way git finds ``.git``), and finally ``~/.conveyor``.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import InvalidConfig

__all__ = ["CONFIG_FILE", "DEFAULT_PORT", "PROJECT_DIR", "Settings", "default_serving_limits", "resolve_settings"]

CONFIG_FILE = "conveyor.toml"
DB_FILE = "conveyor.db"
PROJECT_DIR = ".conveyor"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one workspace.

    Attributes:
        home: the workspace folder.
        db_url: SQLAlchemy URL of the metadata database.
        artifacts_url: fsspec URL (or local path) of the artifact store and data lake.
        artifacts_options: fsspec storage options (e.g. ``endpoint_url`` for an S3-compatible server).
        server_host: address ``conveyor server`` binds to.
        server_port: port ``conveyor server`` binds to.
        trusted_modules: Python modules (and their submodules) whose functions pipeline specs submitted over
            the REST API may name: ``[pipelines] trusted_modules`` in ``conveyor.toml`` plus the
            comma-separated ``CONVEYOR_TRUSTED_MODULES`` (both lists count).
        max_workers: the most worker processes one endpoint may have: ``[serving] max_workers`` or
            ``CONVEYOR_MAX_WORKERS`` (default: the number of CPUs).
        max_processes: the most endpoint processes (supervisors and workers) of all the workspace's endpoints
            together: ``[serving] max_processes`` or ``CONVEYOR_MAX_PROCESSES`` (default: 4 × CPUs + 4).
        origin: for each setting, where its value came from (``flag``, ``env``, ``conveyor.toml``,
            ``default``, ``discovered``).
    """

    home: Path
    db_url: str
    artifacts_url: str
    artifacts_options: Mapping[str, Any] = field(default_factory=dict)
    server_host: str = DEFAULT_HOST
    server_port: int = DEFAULT_PORT
    trusted_modules: tuple[str, ...] = ()
    max_workers: int = field(default_factory=lambda: default_serving_limits()[0])
    max_processes: int = field(default_factory=lambda: default_serving_limits()[1])
    origin: Mapping[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def is_embedded_db(self) -> bool:
        return self.db_url.startswith("sqlite")


def resolve_settings(
    home: str | os.PathLike[str] | None = None,
    *,
    db_url: str | None = None,
    artifacts_url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve the settings of a workspace from flags, environment, ``conveyor.toml`` and defaults.

    Raises:
        InvalidConfig: the workspace path is a file, ``conveyor.toml`` does not parse, or a value has
            the wrong type.
    """
    env = os.environ if env is None else env
    origin: dict[str, str] = {}

    home_path, origin["home"] = _resolve_home(home, env, cwd or Path.cwd())
    _check_home(home_path)
    file_values = _read_config_file(home_path / CONFIG_FILE)
    section = file_values.get("workspace", {})
    server = file_values.get("server", {})
    artifacts_section = file_values.get("artifacts", {})

    def pick(flag: str | None, env_name: str, toml_value: Any, default: str, key: str) -> str:
        if flag:
            origin[key] = "flag"
            return flag
        if env.get(env_name):
            origin[key] = "env"
            return env[env_name]
        if toml_value:
            origin[key] = CONFIG_FILE
            return _expand(str(toml_value), env, key)
        origin[key] = "default"
        return default

    resolved_db = pick(
        db_url,
        "CONVEYOR_DB_URL",
        section.get("db_url"),
        f"sqlite:///{home_path / DB_FILE}",
        "db_url",
    )
    resolved_artifacts = pick(
        artifacts_url,
        "CONVEYOR_ARTIFACTS_URL",
        artifacts_section.get("url") or section.get("artifacts_url"),
        str(home_path / "artifacts"),
        "artifacts_url",
    )
    resolved_artifacts = _absolute_local(resolved_artifacts, home_path)
    resolved_db = _absolute_sqlite(resolved_db, home_path)

    options: dict[str, Any] = dict(artifacts_section.get("options", {}))
    if env.get("CONVEYOR_ARTIFACTS_OPTIONS"):
        try:
            env_options = json.loads(env["CONVEYOR_ARTIFACTS_OPTIONS"])
        except json.JSONDecodeError as exc:
            raise InvalidConfig(
                f"CONVEYOR_ARTIFACTS_OPTIONS is not valid JSON ({exc.msg} at position {exc.pos}); "
                'give a JSON object such as {"endpoint_url": "http://127.0.0.1:9000"}.'
            ) from exc
        if not isinstance(env_options, dict):
            raise InvalidConfig("CONVEYOR_ARTIFACTS_OPTIONS must be a JSON object of fsspec storage options.")
        options.update(env_options)
    options = {k: _expand(v, env, f"artifacts.options.{k}") if isinstance(v, str) else v for k, v in options.items()}

    port = server.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidConfig(
            f"[server] port in {home_path / CONFIG_FILE} is {port!r}; it must be a whole number from 0 to 65535."
        )
    host = server.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise InvalidConfig(f"[server] host in {home_path / CONFIG_FILE} must be a non-empty string.")

    trusted = _trusted_modules(file_values.get("pipelines", {}).get("trusted_modules", []), env, home_path)
    max_workers, max_processes = _serving_limits(file_values.get("serving", {}), env, home_path, origin)

    return Settings(
        home=home_path,
        db_url=resolved_db,
        artifacts_url=resolved_artifacts,
        artifacts_options=options,
        server_host=host,
        server_port=port,
        trusted_modules=trusted,
        max_workers=max_workers,
        max_processes=max_processes,
        origin=origin,
    )


def _resolve_home(flag: str | os.PathLike[str] | None, env: Mapping[str, str], cwd: Path) -> tuple[Path, str]:
    if flag:
        return Path(flag).expanduser().absolute(), "flag"
    if env.get("CONVEYOR_HOME"):
        return Path(env["CONVEYOR_HOME"]).expanduser().absolute(), "env"
    for folder in (cwd, *cwd.parents):
        candidate = folder / PROJECT_DIR
        # a workspace made by `conveyor init` has its conveyor.toml; one first opened through --home or
        # CONVEYOR_HOME (as `make quickstart` does) has only its default database
        if (candidate / CONFIG_FILE).is_file() or (candidate / DB_FILE).is_file():
            return candidate, "discovered"
    return (Path.home() / PROJECT_DIR).absolute(), "default"


def _check_home(home: Path) -> None:
    for path in (home, *home.parents):
        if path.exists() and not path.is_dir():
            if path == home:
                raise InvalidConfig(
                    f"The workspace path {str(home)!r} is a file, not a folder. Pass a folder with --home "
                    "or CONVEYOR_HOME, or move the file away.",
                    path=str(home),
                )
            raise InvalidConfig(
                f"The workspace path {str(home)!r} cannot be a folder because {str(path)!r} is a file. "
                "Pass another folder with --home or CONVEYOR_HOME.",
                path=str(home),
            )


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}. Fix the file or remove it.", path=str(path)) from exc
    for name in ("workspace", "server", "artifacts", "pipelines", "serving"):
        if name in values and not isinstance(values[name], dict):
            raise InvalidConfig(f"{path}: [{name}] must be a table.", path=str(path))
    allowed = {"workspace", "server", "artifacts", "pipelines", "serving"}
    unknown = set(values) - allowed
    if unknown:
        from conveyor.errors import did_you_mean

        first = sorted(unknown)[0]
        raise InvalidConfig(
            f"{path}: unknown section [{first}]; allowed sections are "
            f"{', '.join(sorted(allowed))}.{did_you_mean(first, allowed)}",
            path=str(path),
        )
    return values


def _trusted_modules(listed: Any, env: Mapping[str, str], home: Path) -> tuple[str, ...]:
    """The trusted modules of ``[pipelines] trusted_modules`` and ``CONVEYOR_TRUSTED_MODULES``, checked."""
    import re
    import sys

    if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
        raise InvalidConfig(
            f"[pipelines] trusted_modules in {home / CONFIG_FILE} must be a list of module names, "
            'for example trusted_modules = ["my_project", "my_project.steps"].'
        )
    names = [*listed, *env.get("CONVEYOR_TRUSTED_MODULES", "").split(",")]
    trusted: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise InvalidConfig(
                f"Trusted module {name!r} is not a Python module name; list dotted names such as 'my_project.steps' "
                "in [pipelines] trusted_modules or CONVEYOR_TRUSTED_MODULES.",
                module=name,
            )
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "conveyor":
            raise InvalidConfig(
                f"Trusted module {name!r} is part of {'Conveyor' if top == 'conveyor' else 'the standard library'}; "
                "its functions could run any command on the server. Trust only your own project's packages "
                "(e.g. 'my_project.steps') in [pipelines] trusted_modules or CONVEYOR_TRUSTED_MODULES.",
                module=name,
            )
        if name not in trusted:
            trusted.append(name)
    return tuple(trusted)


def default_serving_limits() -> tuple[int, int]:
    """The default endpoint limits: workers per endpoint (one per CPU), processes in all (4 × CPUs + 4)."""
    cpus = os.cpu_count() or 1
    return cpus, 4 * cpus + 4


def _serving_limits(
    section: Mapping[str, Any], env: Mapping[str, str], home: Path, origin: dict[str, str]
) -> tuple[int, int]:
    """``[serving] max_workers`` / ``max_processes``, overridden by ``CONVEYOR_MAX_WORKERS`` / ``_PROCESSES``."""
    limits = []
    for key, default in zip(("max_workers", "max_processes"), default_serving_limits(), strict=True):
        env_name = f"CONVEYOR_{key.upper()}"
        value: Any = default
        origin[key] = "default"
        if env.get(env_name):
            value, origin[key], where = env[env_name].strip(), "env", env_name
            value = int(value) if value.isdigit() else value
        elif key in section:
            value, origin[key], where = section[key], CONFIG_FILE, f"[serving] {key} in {home / CONFIG_FILE}"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise InvalidConfig(f"{where} is {value!r}; it must be a whole number from 1 to 100000.")
        limits.append(value)
    return limits[0], limits[1]


def _expand(value: str, env: Mapping[str, str], key: str) -> str:
    import re

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise InvalidConfig(
                f"{CONFIG_FILE}: {key} refers to ${{{name}}}, but the environment variable {name} is not set. "
                f"Set {name} or write the value in full."
            )
        return env[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, value)


def _absolute_local(url: str, home: Path) -> str:
    """Make a local artifact path absolute (relative paths are relative to the workspace)."""
    if "://" in url and not url.startswith("file://"):
        return url
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = home / path
    return str(path)


def _absolute_sqlite(url: str, home: Path) -> str:
    """Make a relative SQLite file path relative to the workspace rather than the current directory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith("sqlite:////") or url == "sqlite:///:memory:":
        return url
    path_part = url[len(prefix) :]
    if path_part.startswith(":memory:") or Path(path_part).is_absolute():
        return url
    return prefix + str(home / path_part)
