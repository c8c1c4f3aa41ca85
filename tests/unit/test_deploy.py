"""The deployment kit passes the checks of its own tools: `nginx -t` and `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from poolhub.app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "deploy" / "nginx" / "poolhub.conf"
UNIT = REPO / "deploy" / "poolhub.service"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=poolhub.test", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603
    return cert, key


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (Debian package nginx)")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a throwaway certificate")
def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    site = SITE.read_text()
    # Only the certificate placeholders change: nginx -t opens the files they name.
    site = site.replace("/etc/letsencrypt/live/poolhub.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/poolhub.example.com/privkey.pem", str(key))
    (tmp_path / "poolhub.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n include {tmp_path}/poolhub.conf;\n}}\n"
    )
    checked = subprocess.run(  # noqa: S603
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],  # noqa: S607
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_nginx_site_matches_the_hub_defaults() -> None:
    site = SITE.read_text()
    upstream = re.search(r"server (\S+):(\d+);", site)
    assert upstream is not None
    settings = Settings()
    assert upstream.group(1) in settings.forwarded_allow_ips
    assert int(upstream.group(2)) == settings.port
    assert "client_max_body_size 1m;" in site
    assert "proxy_set_header Upgrade $http_upgrade;" in site
    for directive in ("client_header_timeout", "large_client_header_buffers"):
        assert directive in site
    # nginx drops inherited proxy_set_header in a block that sets its own: each location sets the client.
    assert site.count("proxy_set_header X-Forwarded-For $remote_addr;") == site.count("proxy_pass ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # Verified as installed here: paths that exist on this machine stand in for /opt/poolhub and /etc/poolhub.
    env_file = tmp_path / "poolhub.env"
    env_file.write_text("POOLHUB_ENV=production\n")
    unit = UNIT.read_text().replace("/etc/poolhub/poolhub.env", str(env_file))
    unit = unit.replace("/opt/poolhub", str(REPO))
    (REPO / ".venv" / "bin" / "poolhub").resolve(strict=True)
    path = tmp_path / "poolhub.service"
    path.write_text(unit)
    checked = subprocess.run(  # noqa: S603
        ["systemd-analyze", "verify", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
    )
    problems = [line for line in (checked.stdout + checked.stderr).splitlines() if "poolhub.service" in line]
    assert checked.returncode == 0 and not problems, checked.stdout + checked.stderr


def test_the_unit_restarts_on_failure_as_a_non_root_user_with_a_graceful_stop() -> None:
    unit = UNIT.read_text()
    assert re.search(r"^User=(?!root)\w+", unit, re.MULTILINE)
    assert "Restart=on-failure" in unit
    assert "EnvironmentFile=" in unit
    assert "KillSignal=SIGTERM" in unit and "TimeoutStopSec=" in unit
