"""installer/: install.sh (staged with --root), build-bundle.sh, and the nginx TLS front.

Nothing here touches the real system: every install runs with --root into a temp dir,
which makes install.sh print (not run) useradd, chown-to-user and systemctl.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"
INSTALL_SH = INSTALLER / "install.sh"
BUILD_BUNDLE_SH = INSTALLER / "build-bundle.sh"
NGINX_CONF = INSTALLER / "nginx-mailflow.conf"
UNIT = REPO / "systemd" / "mailflow.service"
NGINX = Path("/usr/sbin/nginx")

KEY = "etc/mailflow/master.key"
CONF = "etc/mailflow/mailflow.toml"
DATA = "var/lib/mailflow"
VENV = "opt/mailflow/venv"
UNIT_DST = "etc/systemd/system/mailflow.service"

# Copying the repository before building keeps setuptools' build/ and *.egg-info out of it.
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "var", ".venv", "*.egg-info", "__pycache__", ".pytest_cache",
    ".hypothesis", "node_modules")


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that would steer mailflow or systemd."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MAILFLOW_") and k not in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")}


def run(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL, **kwargs)


def install_sh(*args, timeout=600) -> subprocess.CompletedProcess:
    return run("bash", INSTALL_SH, *args, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# -- fast checks: syntax, lint, usage --------------------------------------------------------

INSTALLER_SCRIPTS = sorted(INSTALLER.glob("*.sh"))


def test_installer_scripts_exist():
    assert INSTALL_SH in INSTALLER_SCRIPTS and BUILD_BUNDLE_SH in INSTALLER_SCRIPTS


@pytest.mark.parametrize("script", INSTALLER_SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    proc = run("bash", "-n", script)
    assert proc.returncode == 0, output(proc)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


@pytest.mark.parametrize("script", INSTALLER_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    proc = run("shellcheck", "--severity=style", script)
    assert proc.returncode == 0, output(proc)


def test_help_and_usage_errors():
    proc = install_sh("--help")
    assert proc.returncode == 0, output(proc)
    for word in ("install", "uninstall", "--purge", "--wheels", "--source", "--root", "--python"):
        assert word in proc.stdout
    assert install_sh().returncode == 2
    assert install_sh("install", "--no-such-option").returncode == 2
    assert install_sh("install", "--purge", "--root", "/tmp/x").returncode == 2
    proc = install_sh("install", "--root", "/")
    assert proc.returncode == 2 and "real system" in proc.stderr
    proc = run("bash", BUILD_BUNDLE_SH, "--help")
    assert proc.returncode == 0 and "--out" in proc.stdout, output(proc)


# -- staged install, upgrade, uninstall --------------------------------------------------------

@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    """Every wheel mailflow needs, built once for this module from a copy of the repo."""
    base = tmp_path_factory.mktemp("wheels")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=SOURCE_IGNORE)
    wheels = base / "wheels"
    proc = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", wheels, src)
    assert proc.returncode == 0, output(proc)
    assert list(wheels.glob("mailflow-*.whl")), output(proc)
    return wheels


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel_dir):
    """A staged first install: (root, completed process)."""
    root = tmp_path_factory.mktemp("stage") / "root"
    proc = install_sh("install", "--root", root, "--wheels", wheel_dir, "--python", sys.executable)
    assert proc.returncode == 0, output(proc)
    return root, proc


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


@pytest.mark.slow
def test_install_creates_working_venv(installed):
    root, _ = installed
    mailflow = root / VENV / "bin" / "mailflow"
    proc = run(mailflow, "--help")
    assert proc.returncode == 0, output(proc)
    for command in ("serve", "keygen", "migrate", "config"):
        assert command in proc.stdout
    proc = run(mailflow, "--version")
    assert proc.returncode == 0 and project_version() in proc.stdout, output(proc)


@pytest.mark.slow
def test_install_creates_key_outside_data_dir(installed):
    root, _ = installed
    key, data = root / KEY, root / DATA
    assert key.is_file() and not key.is_symlink()
    assert mode(key) == 0o600
    assert len(key.read_bytes()) == 32
    assert not key.resolve().is_relative_to(data.resolve())
    assert mode(root / "etc/mailflow") == 0o750
    assert data.is_dir() and mode(data) == 0o700
    assert list(data.iterdir()) == [], "the installer must not create a database as root"


@pytest.mark.slow
def test_install_writes_commented_config(installed):
    root, _ = installed
    conf = root / CONF
    assert mode(conf) == 0o640
    text = conf.read_text()
    assert tomllib.loads(text) == {}, "defaults are all commented out"
    for key in ("data_dir", "listen", "public_url", "trusted_proxies", "key_file"):
        assert re.search(rf"^# {key} = ", text, re.M), key


@pytest.mark.slow
def test_installed_config_and_key_pass_config_check(installed):
    root, _ = installed
    env = dict(clean_env(), MAILFLOW_KEY_FILE=str(root / KEY), MAILFLOW_DATA_DIR=str(root / DATA))
    proc = subprocess.run([str(root / VENV / "bin" / "mailflow"), "--config", str(root / CONF),
                           "config", "check"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, output(proc)


@pytest.mark.slow
def test_install_installs_unit_and_extras(installed):
    root, proc = installed
    unit = root / UNIT_DST
    assert unit.read_bytes() == UNIT.read_bytes()
    assert mode(unit) == 0o644
    assert (root / "opt/mailflow/share/nginx-mailflow.conf").read_bytes() == NGINX_CONF.read_bytes()
    ctl = root / "opt/mailflow/bin/mailflowctl"
    assert os.access(ctl, os.X_OK)
    assert "LoadCredential=mailflow.master:/etc/mailflow/master.key" in ctl.read_text()


@pytest.mark.slow
def test_staged_install_only_prints_host_changes(installed):
    _, proc = installed
    printed = [line.split("would run: ", 1)[1] for line in proc.stdout.splitlines()
               if "[--root] would run: " in line]
    assert any(p.startswith("useradd --system") and "nologin" in p and "--no-create-home" in p
               for p in printed), proc.stdout
    assert "systemctl daemon-reload" in printed
    assert "systemctl enable --now mailflow.service" in printed
    assert "chown mailflow:mailflow /var/lib/mailflow" in printed
    # One line per step.
    steps = [line for line in proc.stdout.splitlines() if line.startswith("==> ")]
    assert len(steps) >= 8


@pytest.mark.slow
def test_second_install_is_an_idempotent_upgrade(installed, wheel_dir):
    root, _ = installed
    key_before = (root / KEY).read_bytes()
    conf = root / CONF
    conf.write_text(conf.read_text() + 'listen = "127.0.0.1:8026"\n')
    conf_before = conf.read_bytes()
    proc = install_sh("install", "--root", root, "--wheels", wheel_dir, "--python", sys.executable)
    assert proc.returncode == 0, output(proc)
    assert (root / KEY).read_bytes() == key_before, "the master key must never be replaced"
    assert mode(root / KEY) == 0o600
    assert conf.read_bytes() == conf_before, "an existing configuration must be kept"
    assert "reusing" in proc.stdout and "kept" in proc.stdout
    assert run(root / VENV / "bin" / "mailflow", "--help").returncode == 0


@pytest.mark.slow
def test_install_refuses_new_key_for_existing_data(installed, wheel_dir, tmp_path):
    root = copy_root(installed[0], tmp_path / "root")
    (root / KEY).unlink()
    (root / DATA / "mailflow.db").write_bytes(b"encrypted data")
    proc = install_sh("install", "--root", root, "--wheels", wheel_dir, "--python", sys.executable)
    assert proc.returncode == 1, output(proc)
    assert "master.key is missing" in proc.stderr
    assert not (root / KEY).exists()


@pytest.mark.slow
def test_install_respects_an_encrypted_key_credential(installed, wheel_dir, tmp_path):
    root = copy_root(installed[0], tmp_path / "root")
    (root / KEY).rename(root / (KEY + ".cred"))
    proc = install_sh("install", "--root", root, "--wheels", wheel_dir, "--python", sys.executable)
    assert proc.returncode == 0, output(proc)
    assert not (root / KEY).exists(), "no plain key may be generated beside master.key.cred"
    assert "encrypted credential" in proc.stdout


@pytest.mark.slow
def test_install_stops_before_starting_on_a_bad_config(installed, wheel_dir, tmp_path):
    root = copy_root(installed[0], tmp_path / "root")
    (root / CONF).write_text('listen = "0.0.0.0:8025"\n')  # public bind without a trusted proxy
    proc = install_sh("install", "--root", root, "--wheels", wheel_dir, "--python", sys.executable)
    assert proc.returncode == 1, output(proc)
    assert "configuration check failed" in proc.stderr
    assert "loopback" in proc.stderr
    assert "enable --now" not in proc.stdout


@pytest.mark.slow
def test_uninstall_keeps_data_and_key(installed, tmp_path):
    root = copy_root(installed[0], tmp_path / "root")
    key = (root / KEY).read_bytes()
    (root / DATA / "mailflow.db").write_bytes(b"encrypted data")
    proc = install_sh("uninstall", "--root", root)
    assert proc.returncode == 0, output(proc)
    assert not (root / "opt/mailflow").exists()
    assert not (root / UNIT_DST).exists()
    assert (root / KEY).read_bytes() == key
    assert (root / CONF).exists()
    assert (root / DATA / "mailflow.db").exists()
    assert "systemctl disable --now mailflow.service" in proc.stdout
    assert "userdel" not in proc.stdout


@pytest.mark.slow
def test_uninstall_purge_removes_everything(installed, tmp_path):
    root = copy_root(installed[0], tmp_path / "root")
    proc = install_sh("uninstall", "--purge", "--root", root)
    assert proc.returncode == 0, output(proc)
    for path in ("opt/mailflow", UNIT_DST, DATA, "etc/mailflow"):
        assert not (root / path).exists(), path
    assert "would run: userdel mailflow" in proc.stdout


@pytest.mark.slow
def test_build_bundle(tmp_path):
    out = tmp_path / "out"
    proc = run("bash", BUILD_BUNDLE_SH, "--out", out, "--python", sys.executable, "--no-check")
    assert proc.returncode == 0, output(proc)
    bundle = out / f"mailflow-{project_version()}"
    assert (out / f"{bundle.name}.tar.gz").is_file()
    for rel in ("install.sh", "installer/install.sh", "installer/nginx-mailflow.conf",
                "systemd/mailflow.service", "INSTALL.txt", "SHA256SUMS"):
        assert (bundle / rel).is_file(), rel
    wheels = {p.name.split("-")[0].lower() for p in (bundle / "wheels").glob("*.whl")}
    assert {"mailflow", "flask", "waitress", "sqlcipher3", "cryptography", "bcrypt"} <= wheels
    assert "install.sh install --wheels ./wheels" in (bundle / "INSTALL.txt").read_text()
    proc = run("sha256sum", "--check", "--quiet", "SHA256SUMS", cwd=bundle)
    assert proc.returncode == 0, output(proc)


# -- nginx TLS front -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def render_nginx(prefix: Path, https_port: int, http_port: int, backend_port: int) -> Path:
    """The shipped server blocks with test ports and certificate, in a self-contained prefix."""
    (prefix / "tls").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    cert, key = make_cert(prefix / "tls")
    text = NGINX_CONF.read_text()
    replacements = [
        (r"^\s*listen \[::\]:\d+.*;\n", ""),  # the test host may have no IPv6
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
        (r"server 127\.0\.0\.1:8025;", f"server 127.0.0.1:{backend_port};"),
    ]
    for pattern, new in replacements:
        text, count = re.subn(pattern, new, text, flags=re.M)
        assert count, f"nginx-mailflow.conf no longer contains {pattern!r}"
    (prefix / "mailflow.conf").write_text(text)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {prefix}/access.log;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  include {prefix}/mailflow.conf;
}}
""")
    return conf


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Stands in for MailFlow: answers with the request headers it received."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Strict-Transport-Security", "max-age=60")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def nginx_front(tmp_path):
    if not NGINX.exists():
        pytest.skip("nginx not installed (/usr/sbin/nginx)")
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    https_port, http_port = free_port(), free_port()
    conf = render_nginx(tmp_path, https_port, http_port, backend.server_address[1])
    check = run(NGINX, "-t", "-c", conf, "-p", tmp_path, "-e", tmp_path / "test-error.log")
    assert check.returncode == 0, output(check)
    assert "syntax is ok" in check.stderr
    proc = subprocess.Popen([str(NGINX), "-c", str(conf), "-p", str(tmp_path),
                             "-e", str(tmp_path / "startup-error.log")],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("nginx did not start: "
                                         + (tmp_path / "error.log").read_text(errors="replace"))
                time.sleep(0.02)
        yield {"https": https_port, "http": http_port, "cert": tmp_path / "tls" / "cert.pem"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        backend.shutdown()
        backend.server_close()


def tls_client(cafile: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def test_nginx_config_is_valid_and_terminates_tls(nginx_front):
    ports, cert = nginx_front, nginx_front["cert"]

    # Port 80 only redirects.
    conn = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=10)
    conn.request("GET", "/campaigns?page=2", headers={"Host": "mailflow.test"})
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://mailflow.test/campaigns?page=2"
    conn.close()

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        conn = http.client.HTTPSConnection("localhost", ports["https"], timeout=10,
                                           context=tls_client(cert, version))
        conn.request("GET", "/", headers={"Host": "mailflow.test", "X-Forwarded-For": "6.6.6.6"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert conn.sock.version() == version.name.replace("_", ".")
        assert resp.msg.get_all("Strict-Transport-Security") == [
            "max-age=63072000; includeSubDomains; preload"]
        seen = json.loads(resp.read())
        conn.close()
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-for"] == "127.0.0.1", "a client's own X-Forwarded-For must be replaced"
        assert seen["x-forwarded-host"] == "mailflow.test"
        assert seen["host"] == "mailflow.test"


def test_nginx_refuses_tls_1_1(nginx_front):
    # A client willing to speak TLS 1.1 at security level 0 (the only way OpenSSL 3 still can).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", nginx_front["https"]), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass


def test_nginx_config_text():
    text = NGINX_CONF.read_text()
    assert re.search(r"^\s*ssl_protocols TLSv1\.2 TLSv1\.3;", text, re.M)
    assert "TLSv1.1" not in text.replace("ssl_protocols TLSv1.2 TLSv1.3", "")
    assert "client_max_body_size 50m;" in text
    assert re.search(r'trusted_proxies = \["127\.0\.0\.1"\]', text)
    assert "proxy_pass http://" in text and "server 127.0.0.1:8025;" in text
