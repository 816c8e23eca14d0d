"""A private PgBouncer in transaction mode, in front of the test database."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.redis_server import free_port


class PgBouncer:
    """pgbouncer on 127.0.0.1 pooling ``database`` of the server in
    ``settings_dict`` in transaction mode, with ``pool_size`` server
    connections, and keeping no prepared statements across clients (as
    PgBouncer before 1.21 does, and later ones with
    ``max_prepared_statements = 0``)."""

    def __init__(self, settings_dict: dict[str, Any], pool_size: int = 1) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError(
                "pgbouncer is not installed (Debian: apt-get install pgbouncer); "
                "the PgBouncer tests need it."
            )
        self.binary = binary
        self.port = free_port()
        self.database = str(settings_dict["NAME"])
        self.directory = tempfile.mkdtemp(prefix="eventlog-pgbouncer.")
        os.chmod(self.directory, 0o755)
        #: It refuses to run as root: as the postgres user then, who must be
        #: able to write its log and pid file here.
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        server = " ".join(
            f"{key}={value}"
            for key, value in (
                ("host", settings_dict["HOST"] or "127.0.0.1"),
                ("port", settings_dict["PORT"] or 5432),
                ("user", settings_dict["USER"] or "postgres"),
                ("dbname", self.database),
            )
        )
        lines = [
            "[databases]",
            f"{self.database} = {server}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = any",
            "pool_mode = transaction",
            f"default_pool_size = {pool_size}",
            "max_client_conn = 20",
            "ignore_startup_parameters = extra_float_digits,options",
            f"logfile = {self.directory}/pgbouncer.log",
            f"pidfile = {self.directory}/pgbouncer.pid",
        ]
        if self.version() >= (1, 21):
            lines.append("max_prepared_statements = 0")
        self.config = Path(self.directory) / "pgbouncer.ini"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.config.chmod(0o644)
        self.process: subprocess.Popen[bytes] | None = None

    def version(self) -> tuple[int, int]:
        output = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"PgBouncer (\d+)\.(\d+)", output)
        assert found is not None, output
        return int(found[1]), int(found[2])

    def start(self) -> None:
        command = [self.binary]
        if self.user is not None:
            command += ["-u", self.user.pw_name]
        self.process = subprocess.Popen(
            [*command, str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        log = Path(self.directory) / "pgbouncer.log"
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        if self.process.poll() is not None and self.process.stderr is not None:
            text += self.process.stderr.read().decode(errors="replace")
        self.stop()
        raise RuntimeError(f"pgbouncer did not start on port {self.port}:\n{text}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
