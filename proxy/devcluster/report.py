"""Plain-text reports of a `ClusterStatus` for the person at the terminal.

Kept apart from `cli.py` (argument parsing) and `cluster.py` (doing things): these functions only
format, so the wording can change without touching either.
"""

from __future__ import annotations

from proxy.devcluster import spec
from proxy.devcluster.cluster import ClusterStatus, PodStatus


def render_status(status: ClusterStatus) -> str:
    """One line per pod (address, role, running/ready, replication), then the DNS server."""
    header = ("POD", "ROLE", "ADDRESS", "RUNNING", "READY", "REPLICATION")
    rows = [header, *(_pod_row(pod) for pod in status.pods)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    dns_state = "running" if status.dns_running else "not running"
    lines.append(f"DNS server {status.dns_address}:{status.dns_port} (udp+tcp): {dns_state}")
    lines.append(_tls(status))
    return "\n".join(line.rstrip() for line in lines)


def _tls(status: ClusterStatus) -> str:
    if status.ca_file is None:
        return "TLS: no certificates yet (`rwproxy cluster up` makes them)"
    required = "required (up --tls)" if status.tls_required else "optional (up --tls requires it)"
    return f"TLS: offered by every pod, {required}; CA {status.ca_file}"


def _pod_row(pod: PodStatus) -> tuple[str, ...]:
    return (
        pod.name,
        pod.role,
        f"{pod.address}:{pod.port}",
        _yes_no(pod.running),
        _yes_no(pod.ready),
        _replication(pod),
    )


def _replication(pod: PodStatus) -> str:
    """What the role makes interesting: the primary's binlog position, a replica's threads."""
    if pod.gtid_binlog_pos is not None:
        return f"gtid_binlog_pos={pod.gtid_binlog_pos or '(empty)'}"
    repl = pod.replication
    if repl is None:
        return "-"
    behind = "?" if repl.seconds_behind_master is None else f"{repl.seconds_behind_master}s"
    text = (
        f"io={repl.io_running} sql={repl.sql_running} behind={behind} "
        f"gtid_io_pos={repl.gtid_io_pos or '(empty)'} "
        f"gtid_slave_pos={repl.gtid_slave_pos or '(empty)'}"
    )
    errors = [e for e in (repl.last_io_error, repl.last_sql_error) if e]
    return text + "".join(f" error={error!r}" for error in errors)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def render_up(status: ClusterStatus, started: tuple[str, ...]) -> str:
    """The status plus everything needed to use the cluster: addresses, DNS names, logins."""
    what = f"started {', '.join(started)}" if started else "already up, nothing to start"
    primary = status.pods[0]
    dig = f"dig @{status.dns_address} -p {status.dns_port} +short"
    return "\n".join(
        [
            f"cluster in {status.state_dir}: {what}",
            "",
            render_status(status),
            "",
            "Connect:",
            f"  mariadb --no-defaults -h {primary.address} -u {spec.APP.user} "
            f"-p{spec.APP.password} {spec.DATABASE}",
            *_tls_connect(status, primary.address),
            "Resolve:",
            f"  {dig} {spec.SERVICE_FQDN}",
            f"  {dig} SRV {spec.SRV_NAME}",
            f"  {dig} {spec.pod_fqdn(primary.name)}",
            "Accounts (all @'%', mysql_native_password):",
            f"  {spec.APP.user} / {spec.APP.password}: ALL ON {spec.DATABASE}.*",
            f"  {spec.MONITOR.user} / {spec.MONITOR.password}: "
            "BINLOG MONITOR, SLAVE MONITOR, PROCESS",
            f"  {spec.ADMIN.user} / {spec.ADMIN.password}: ALL ON *.* WITH GRANT OPTION",
            f"Logs: {primary.error_log} (likewise for each pod), {status.dns_log}",
        ]
    )


def _tls_connect(status: ClusterStatus, address: str) -> list[str]:
    if status.ca_file is None:
        return []
    return [
        f"  mariadb --no-defaults --ssl-ca={status.ca_file} --ssl-verify-server-cert "
        f"-h {address} -u {spec.APP.user} -p{spec.APP.password} {spec.DATABASE}",
    ]
