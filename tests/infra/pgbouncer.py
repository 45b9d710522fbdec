"""A real PgBouncer in transaction pooling mode with client and server TLS."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import psycopg2

from .postgres import APP_USER
from .postgres import MissingBinary
from .postgres import TlsCluster
from .procs import as_service_user
from .procs import free_port
from .procs import give_to_service_user

ADMIN_USER = "pgb_admin"


class PgBouncer:
    """PgBouncer in front of a :class:`TlsCluster`.

    Clients may use TLS or not (``client_tls_sslmode = allow``); PgBouncer
    always talks TLS to the server. Every database is routed (``*``), so each
    test's fresh database is reachable without a reload.
    """

    def __init__(
        self,
        cluster: TlsCluster,
        *,
        pool_size: int = 20,
        extra: str = "",
        settings: dict[str, str] | None = None,
    ) -> None:
        """
        :param settings: ``[pgbouncer]`` keys that override the defaults below
            (e.g. ``{"query_wait_timeout": "1"}``).
        :param extra: raw lines appended to the ``[pgbouncer]`` section.
        """
        binary = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
        )
        if binary is None:
            raise MissingBinary("pgbouncer")
        self.binary = binary
        self.cluster = cluster
        self.root = tempfile.mkdtemp(prefix="sm-pgbouncer-")
        os.chmod(self.root, 0o755)
        self.port = free_port()
        self.admin_password = "adm-" + uuid.uuid4().hex
        self.config = os.path.join(self.root, "pgbouncer.ini")
        self.log = os.path.join(self.root, "pgbouncer.log")
        self._proc: subprocess.Popen[bytes] | None = None
        with open(os.path.join(self.root, "userlist.txt"), "w") as fh:
            fh.write(f'"{APP_USER}" "{cluster.password}"\n"{ADMIN_USER}" "{self.admin_password}"\n')
        options = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": self.root,
            "auth_type": "scram-sha-256",
            "auth_file": f"{self.root}/userlist.txt",
            "admin_users": ADMIN_USER,
            "pool_mode": "transaction",
            "max_client_conn": "500",
            "default_pool_size": str(pool_size),
            "server_tls_sslmode": "require",
            "client_tls_sslmode": "allow",
            "client_tls_key_file": cluster.key,
            "client_tls_cert_file": cluster.cert,
            "ignore_startup_parameters": "extra_float_digits",
            "server_login_retry": "1",
            "query_wait_timeout": "30",
            "logfile": self.log,
            "pidfile": f"{self.root}/pgbouncer.pid",
            **(settings or {}),
        }
        with open(self.config, "w") as fh:
            fh.write(f"[databases]\n* = host=127.0.0.1 port={cluster.port}\n")
            fh.write("[pgbouncer]\n")
            fh.writelines(f"{key} = {value}\n" for key, value in options.items())
            fh.write(extra)

    def start(self) -> None:
        give_to_service_user(self.root)
        self._proc = subprocess.Popen(
            as_service_user([self.binary, self.config]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.admin("SHOW VERSION")
                return
            except psycopg2.Error:
                if self._proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start; log:\n{self._read_log()}")

    def _read_log(self) -> str:
        try:
            with open(self.log) as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, command: str) -> list[tuple[object, ...]]:
        """Run a command on PgBouncer's admin console (``KILL``, ``PAUSE``...)."""
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user=ADMIN_USER,
            password=self.admin_password,
            sslmode="disable",
            connect_timeout=3,
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(command)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def app_url(self, database: str, *, sslmode: str = "require") -> str:
        """URL of ``database`` through the pooler, as the app role, with a password."""
        return (
            f"postgresql+psycopg2://{APP_USER}:{self.cluster.password}@127.0.0.1:{self.port}/{database}"
            f"?sslmode={sslmode}"
        )
