"""The shipped systemd unit: required directives present, sandbox exposure low."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "mailflow.service"
MAX_EXPOSURE = 1.5


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into {section: {key: [values in order]}}.

    systemd keys may repeat (SystemCallFilter=, LoadCredential=), so values are lists;
    an empty assignment (``Key=``) is kept as "" because it resets the setting.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {lineno}: no continuation lines expected"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {lineno}: directive before any section"
        key, sep, value = line.partition("=")
        assert sep, f"line {lineno}: not a Key=Value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT)


@pytest.fixture(scope="module")
def service(unit) -> dict[str, list[str]]:
    return unit["Service"]


def last(service: dict[str, list[str]], key: str) -> str:
    assert key in service, f"{key}= missing from [Service]"
    return service[key][-1]


def test_sections(unit):
    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in " ".join(unit["Unit"].get("After", []))


def test_process_and_identity(service):
    assert last(service, "Type") == "notify"
    assert last(service, "User") == "mailflow"
    assert last(service, "Group") == "mailflow"
    assert last(service, "ExecStart") == (
        "/opt/mailflow/venv/bin/mailflow --config /etc/mailflow/mailflow.toml serve")
    assert "DynamicUser" not in service


def test_state_directory_and_umask(service):
    assert last(service, "StateDirectory") == "mailflow"
    assert last(service, "StateDirectoryMode") == "0700"
    assert last(service, "UMask") == "0077"


def test_master_key_is_a_credential_outside_the_data_dir(service):
    creds = service.get("LoadCredential", []) + service.get("LoadCredentialEncrypted", [])
    assert creds == ["mailflow.master:/etc/mailflow/master.key"]
    name, _, path = creds[0].partition(":")
    assert name == "mailflow.master"
    assert not path.startswith("/var/lib/mailflow")
    text = UNIT.read_text()
    assert re.search(r"^#\s*LoadCredentialEncrypted=mailflow\.master:", text, re.M), \
        "the encrypted-credential alternative should be documented in a comment"
    assert "systemd-creds encrypt" in text


def test_restart_policy(service):
    assert last(service, "Restart") == "on-failure"
    assert "78" in last(service, "RestartPreventExitStatus").split()


@pytest.mark.parametrize("key, value", [
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("DevicePolicy", "closed"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
])
def test_hardening_directive(service, key, value):
    assert last(service, key) == value


def test_address_families_and_network(service):
    assert set(last(service, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # It must reach customers' SMTP/IMAP servers and webhook endpoints anywhere.
    assert "IPAddressDeny" not in service
    assert "PrivateNetwork" not in service


def test_syscall_filter(service):
    filters = service["SystemCallFilter"]
    assert "@system-service" in filters
    denied = [f for f in filters if f.startswith("~")]
    assert denied, "a deny list is expected"
    assert {"@privileged", "@resources"} <= set(" ".join(denied).lstrip("~").split())


def test_no_writable_paths_beyond_state(service):
    assert "ReadWritePaths" not in service, "the state directory is the only writable place"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_directive(tmp_path):
    # `verify` complains about the absent ExecStart binary, so check a copy that runs
    # /bin/true; any misspelt key or bad value then shows up as a warning line.
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text(), flags=re.M)
    copy = tmp_path / "mailflow.service"
    copy.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)],
                          capture_output=True, text=True, timeout=60)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines()
                  if str(copy) in line or "Unknown" in line or "Failed to parse" in line]
    assert not complaints, "\n".join(complaints)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_security_exposure():
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert match, f"no exposure score in output (rc={proc.returncode}):\n{out}"
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{out}"
