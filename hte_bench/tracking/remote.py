"""Jobs on other machines: which launchers put them there, and which tracking URIs they can still write.

A worker on another host cannot write this machine's SQLite file, nor reach a server on its loopback
address; it needs an MLflow server (http/https) or a shared database (postgresql/mysql/mssql).
"""
from __future__ import annotations

import ipaddress
import os
from typing import Any, Optional
from urllib.parse import urlparse

from hte_bench.errors import ConfigError

SHARED_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql")
# postgresql+psycopg: the driver .[cluster] installs (psycopg 3); a bare postgresql:// asks for psycopg2.
SERVER_HINT = ("mlflow server --backend-store-uri postgresql+psycopg://USER:PASSWORD@DBHOST:5432/mlflow "
               "--artifacts-destination /shared/mlflow-artifacts --host 0.0.0.0 --port 5000")


def is_loopback(host: Optional[str]) -> bool:
    """True for this machine's own names (localhost, 127.x, ::1) and for no host at all (a local socket)."""
    if not host or host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def reachable_from_elsewhere(uri: str) -> bool:
    """Can a worker on another machine write to this tracking URI?"""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "databricks":
        return True
    return scheme in SHARED_SCHEMES and not is_loopback(parsed.hostname)


def require_reachable(uri: str, where: str) -> None:
    """Refuse, in one line naming the fix, a tracking URI that workers on other machines cannot write."""
    if reachable_from_elsewhere(uri):
        return
    scheme = urlparse(uri).scheme.split("+")[0]
    why = "a loopback address" if scheme in SHARED_SCHEMES else "a file on this machine"
    raise ConfigError(f"{where} runs jobs on other machines, which cannot write tracking.uri={uri} ({why}); "
                      f"start a tracking server they can reach: {SERVER_HINT} — then pass "
                      f"tracking.uri=http://<server host>:5000")


def remote_launcher(config: Any) -> Optional[str]:
    """``hydra/launcher=…`` as the user would name it when the sweep's launcher may run jobs on other
    machines (SLURM; Ray at a non-loopback address), else None."""
    launcher = config.hydra.get("launcher") if "hydra" in config else None
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target.endswith(".SlurmLauncher"):
        return "hydra/launcher=submitit_slurm"
    if target.startswith("hydra_plugins.hte_bench_ray_launcher."):
        address = launcher.get("address") or os.environ.get("RAY_ADDRESS") or "local"
        host = urlparse(address).hostname if "://" in address else address.rsplit(":", 1)[0]
        if address != "local" and not is_loopback(host):
            return f"hydra/launcher=ray (address {address})"
    return None


def check_remote_tracking(config: Any) -> None:
    """Before a sweep: a launcher that runs jobs elsewhere needs a tracking URI they can write."""
    from hte_bench.tracking import resolve_uri

    where = remote_launcher(config)
    if where:
        require_reachable(resolve_uri(config.tracking.get("uri")), where)
