"""Which datastore URLs only an admin may register: those that reach the server's own machine or network.

A datastore makes the server read from where its URL points, with the server's own access. A URL is
*privileged* when it reaches the machine the server runs on (a local path, a ``file://`` URL, a SQLite or
DuckDB file, a local socket, an fsspec protocol that is not a network store, such as ``memory://`` or a chained
``zip::file://`` URL), the workspace's own files (its home, its artifact store, its metadata database), or a
host that is not on the public internet (loopback, link-local such as the cloud metadata service at
169.254.169.254, private ranges, unspecified ``0.0.0.0``). Host names are resolved to check every address they
name. The REST API asks :func:`privileged_datastore_reason` and requires the admin role when it answers.

This is a check at registration: a host name whose DNS answer changes later (rebinding) is not re-checked here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["privileged_datastore_reason"]

_SQL_FILE_SCHEMES = ("sqlite", "duckdb")
_SQL_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306}
_SQL_NETWORK_SCHEMES = tuple(_SQL_DEFAULT_PORTS)
# fsspec protocols that talk to a network service; any other protocol (memory, zip, tar, reference, the
# caching wrappers, ...) reaches the server's own process or disk and needs an admin.
_NETWORK_PROTOCOLS = frozenset(
    {"http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "ftp", "sftp", "ssh", "hdfs",
     "webhdfs", "oss", "r2", "b2"}
)  # fmt: skip
# protocols whose URL names a host (for object stores it names a bucket; their host is in the options)
_HOST_PROTOCOLS = frozenset({"http", "https", "ftp", "sftp", "ssh", "hdfs", "webhdfs"})
_HOST_OPTIONS = ("endpoint_url", "host", "hostname", "account_host")


def privileged_datastore_reason(url: str, ws: Workspace, *, options: Mapping[str, Any] | None = None) -> str | None:
    """Why registering a datastore at ``url`` (with fsspec ``options``) needs the admin role, or None.

    The reason is a sentence naming what the URL reaches, e.g. "it is a local path on the server's machine".
    """
    text = url.strip()
    if "::" in re.sub(r"\[[^\]]*\]", "", text):  # '::' outside an IPv6 literal chains fsspec protocols
        return f"{url!r} chains fsspec protocols ('::'), which can reach files on the server's machine"
    scheme = text.split("://", 1)[0].lower() if "://" in text else "file"
    base = scheme.split("+", 1)[0]
    if base in ("file", "local"):
        return _local_reason(text.split("://", 1)[-1], ws)
    if base in _SQL_FILE_SCHEMES:
        own = _same_database(text, ws.settings.db_url)
        return own or f"{url!r} is a {base.capitalize()} database file on the server's machine"
    if base in _SQL_NETWORK_SCHEMES:
        return _sql_reason(text, ws)
    if base not in _NETWORK_PROTOCOLS:
        return (
            f"{url!r} uses the protocol {scheme!r}, which is not a network store (Conveyor lets non-admins use "
            f"{', '.join(sorted(_NETWORK_PROTOCOLS))}); it may reach the server's own memory or files"
        )
    hosts = [_hostname(text)] if base in _HOST_PROTOCOLS else []
    hosts.extend(_option_hosts(options or {}))
    return _inside_artifacts(text, ws) or next(filter(None, (_host_reason(h, url) for h in hosts)), None)


# -- local files ----------------------------------------------------------------------------------------------


def _local_reason(path_text: str, ws: Workspace) -> str:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    resolved = path.resolve()
    home = ws.settings.home.expanduser().resolve()
    if resolved == home or resolved.is_relative_to(home):
        return (
            f"{path_text!r} is inside the workspace's home {home}, which holds its metadata database, artifacts "
            "and keys"
        )
    return f"{path_text!r} is a local path on the server's machine"


def _inside_artifacts(url: str, ws: Workspace) -> str | None:
    """The URL points into the workspace's own artifact store (same protocol, bucket and prefix)."""
    lake = ws.settings.artifacts_url
    if "://" not in lake:
        return None
    lake_scheme, _, lake_rest = lake.partition("://")
    scheme, _, rest = url.partition("://")
    if lake_scheme.lower() != scheme.lower():
        return None
    lake_path, path = lake_rest.strip("/"), rest.strip("/")
    if path == lake_path or path.startswith(lake_path + "/") or lake_path.startswith(path + "/") or not path:
        return f"{url!r} points into the workspace's own artifact store ({lake})"
    return None


# -- SQL databases ------------------------------------------------------------------------------------------


def _sql_reason(url: str, ws: Workspace) -> str | None:
    own = _same_database(url, ws.settings.db_url)
    if own:
        return own
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    for key in ("unix_socket", "host"):
        for value in query.get(key, []):
            if value.startswith("/") or key == "unix_socket":
                return f"{_shown(url)} connects through the local socket {value}"
            reason = _host_reason(value, _shown(url))
            if reason:
                return reason
    if not parts.hostname:
        return f"{_shown(url)} names no host, so it connects through a local socket on the server's machine"
    return _host_reason(parts.hostname, _shown(url))


def _same_database(url: str, db_url: str) -> str | None:
    """The URL names the workspace's metadata database: same backend, host, port and database (or file)."""
    import sqlalchemy as sa

    try:
        theirs, ours = sa.engine.make_url(url), sa.engine.make_url(db_url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    if theirs.get_backend_name() != ours.get_backend_name():
        return None
    if ours.get_backend_name() == "sqlite":
        if not theirs.database or not ours.database:
            return None
        same = Path(theirs.database).expanduser().resolve() == Path(ours.database).expanduser().resolve()
    else:
        port = _SQL_DEFAULT_PORTS.get(ours.get_backend_name())
        same_host = _same_host(theirs.host or "localhost", ours.host or "localhost")
        same = same_host and (theirs.port or port) == (ours.port or port) and theirs.database == ours.database
    return f"{_shown(url)} is the workspace's own metadata database" if same else None


def _same_host(a: str, b: str) -> bool:
    if a.lower() == b.lower():
        return True
    return bool(_addresses(a) & _addresses(b))


# -- hosts ------------------------------------------------------------------------------------------------


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _option_hosts(options: Mapping[str, Any]) -> Iterable[str | None]:
    """Hosts named in fsspec options: ``endpoint_url`` (S3-compatible servers), ``host``, and the same inside
    ``client_kwargs`` / ``config_kwargs``."""
    nested = [options] + [v for k, v in options.items() if k.endswith("_kwargs") and isinstance(v, Mapping)]
    for mapping in nested:
        for key in _HOST_OPTIONS:
            value = mapping.get(key)
            if isinstance(value, str) and value:
                yield _hostname(value) if "://" in value else value


def _host_reason(host: str | None, shown: str) -> str | None:
    if host is None or not host.strip():
        return f"{shown!r} names no host"
    addresses = _addresses(host)
    if not addresses:
        return f"the host {host!r} of {shown!r} does not resolve, so Conveyor cannot check where it points"
    for address in sorted(addresses, key=str):
        kind = _non_public(address)
        if kind:
            shown_host = host if host == str(address) else f"{host} ({address})"
            return f"{shown!r} reaches {shown_host}, a {kind} address"
    return None


def _addresses(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address a host name resolves to (an IP literal is itself); empty if it does not resolve."""
    name = host.strip().strip("[]")
    try:
        return {ipaddress.ip_address(name.split("%", 1)[0])}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]
        try:
            found.add(ipaddress.ip_address(raw))
        except ValueError:
            continue
    return found


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address this is (None for a public one)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return _non_public(mapped)
    kinds = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_private, "private"),
        (address.is_multicast, "multicast"),
        (not address.is_global, "reserved (not public)"),
    )
    return next((kind for matches, kind in kinds if matches), None)


def _shown(url: str) -> str:
    """A SQL URL without its password, for messages."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url
