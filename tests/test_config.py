"""The option table: sources and their order, secrets, validation, `config show|check`, docs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance import cli
from appliance.config import OPTIONS, Option, load_config, parse_text
from appliance.errors import EX_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set():
    config = load_config(os.devnull, env={})
    assert str(config.data_dir) == "/var/lib/mailflow"
    assert config.listen == ("127.0.0.1", 8025)
    assert config.key_file is None and config.public_url is None
    assert config.sources["listen"] == "default"


def test_sources_rise_file_then_env_then_flag(tmp_path):
    toml = write(tmp_path / "m.toml", 'listen = "127.0.0.1:9001"\ndata_dir = "/srv/a"\nlog_level = "debug"\n')
    env = {"MAILFLOW_LISTEN": "127.0.0.1:9002", "MAILFLOW_DATA_DIR": "/srv/b"}
    config = load_config(toml, env=env, flags={"listen": "127.0.0.1:9003"})
    assert config.listen == ("127.0.0.1", 9003) and config.sources["listen"] == "flag:--listen"
    assert str(config.data_dir) == "/srv/b" and config.sources["data_dir"] == "env:MAILFLOW_DATA_DIR"
    assert config.log_level == "debug" and config.sources["log_level"] == f"file:{toml}"


def test_config_file_from_environment_variable(tmp_path):
    toml = write(tmp_path / "m.toml", "scheduler_threads = 9\n")
    assert load_config(env={"MAILFLOW_CONFIG": str(toml)}).scheduler_threads == 9


def test_config_is_frozen():
    config = load_config(os.devnull, env={})
    with pytest.raises(TypeError):
        config.values["listen"] = ("0.0.0.0", 1)  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.values = {}  # type: ignore[misc]


def test_every_problem_is_reported_at_once(tmp_path):
    toml = write(tmp_path / "m.toml", 'listn = "x"\nscheduler_threads = 0\n')
    env = {"MAILFLOW_LOG_LEVEL": "loud", "MAILFLOW_DATADIR": "/x"}
    with pytest.raises(ConfigError) as err:
        load_config(toml, env=env)
    text = "\n".join(err.value.problems)
    assert "unknown option 'listn'" in text and "did you mean 'listen'" in text
    assert "unknown option 'MAILFLOW_DATADIR'" in text and "MAILFLOW_DATA_DIR" in text
    assert "scheduler_threads" in text and "from 1 to 64" in text
    assert "log_level (env:MAILFLOW_LOG_LEVEL): expected one of" in text
    assert len(err.value.problems) == 4


@pytest.mark.parametrize("text, problem", [
    ('listen = "8025"', "expected HOST:PORT"),
    ('listen = "example.com:80"', "must be an IP address"),
    ('listen = "127.0.0.1:99999"', "between 0 and 65535"),
    ('public_url = "ftp://x"', "http:// or https://"),
    ('public_url = "https://x/?a=1"', "query"),
    ('trusted_proxies = ["10.0.0.300"]', "CIDR"),
    ("listen = [", "not valid TOML"),
])
def test_bad_values_get_a_clear_line(tmp_path, text, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(write(tmp_path / "m.toml", text + "\n"), env={})


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_non_loopback_listen_needs_a_trusted_proxy():
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_config(os.devnull, env={"MAILFLOW_LISTEN": "0.0.0.0:8025"})
    config = load_config(os.devnull, env={"MAILFLOW_LISTEN": "0.0.0.0:8025",
                                          "MAILFLOW_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/24"})
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.5/32", "192.168.0.0/24"]


# -- secrets: only from files or systemd credentials ----------------------------------------

SECRET_TABLE = OPTIONS + (Option("api_token", parse_text, None, "A test secret.", secret=True),)


def test_secret_from_file_and_never_from_value(tmp_path):
    secret_file = write(tmp_path / "token", "s3cret-value\n")
    config = load_config(os.devnull, env={"MAILFLOW_API_TOKEN_FILE": str(secret_file)}, options=SECRET_TABLE)
    assert config.api_token == "s3cret-value"
    for env in ({"MAILFLOW_API_TOKEN": "s3cret-value"},):
        with pytest.raises(ConfigError, match="is secret: set MAILFLOW_API_TOKEN_FILE"):
            load_config(os.devnull, env=env, options=SECRET_TABLE)
    toml = write(tmp_path / "m.toml", 'api_token = "s3cret-value"\n')
    with pytest.raises(ConfigError, match="is secret: set api_token_file"):
        load_config(toml, env={}, options=SECRET_TABLE)
    with pytest.raises(ConfigError, match="cannot be set by a command-line flag"):
        load_config(os.devnull, env={}, flags={"api_token": "x"}, options=SECRET_TABLE)


def test_secret_from_systemd_credential(tmp_path):
    (tmp_path / "mailflow.api_token").write_text("from-credential")
    config = load_config(os.devnull, env={"CREDENTIALS_DIRECTORY": str(tmp_path)}, options=SECRET_TABLE)
    assert config.api_token == "from-credential"
    assert config.sources["api_token"] == "credential:mailflow.api_token"


def test_unreadable_secret_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_config(os.devnull, env={"MAILFLOW_API_TOKEN_FILE": str(tmp_path / "missing")},
                    options=SECRET_TABLE)


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    secret_file = write(tmp_path / "token", "s3cret-value")
    monkeypatch.setattr(cli, "load_config",
                        lambda f, flags: load_config(os.devnull, env={"MAILFLOW_API_TOKEN_FILE": str(secret_file)},
                                                     flags=flags, options=SECRET_TABLE))
    result = CliRunner().invoke(cli.main, ["--listen", "127.0.0.1:9100", "config", "show"])
    assert result.exit_code == 0, result.output
    assert "s3cret-value" not in result.output
    assert re.search(r"api_token\s+= \*+\s+\(env:MAILFLOW_API_TOKEN_FILE\)", result.output)
    assert re.search(r"listen\s+= 127.0.0.1:9100\s+\(flag:--listen\)", result.output)
    for option in OPTIONS:
        assert re.search(rf"^{option.name}\s+=", result.output, re.M)


# -- the real CLI process -------------------------------------------------------------------

def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    base["MAILFLOW_CONFIG"] = os.devnull
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_config_check_exits_78_with_one_line_per_problem(tmp_path):
    result = run_cli("config", "check", env={"MAILFLOW_LOG_LEVEL": "loud", "MAILFLOW_LISTEN": "nonsense"})
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("mailflow: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_config_check_passes_on_a_good_setup(tmp_path):
    key = tmp_path / "keys" / "master.key"
    assert run_cli("keygen", str(key)).returncode == 0
    env = {"MAILFLOW_KEY_FILE": str(key), "MAILFLOW_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("migrate", env=env).returncode == 0
    result = run_cli("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_every_option_is_documented():
    """docs/configuration.md is generated from the table (`mailflow config docs`) and kept current."""
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert cli.options_markdown() in doc, "regenerate: mailflow config docs"
    for option in OPTIONS:
        assert option.help.strip(), option.name
        assert f"`{option.name}`" in doc and option.env in doc
    readme = (REPO / "README.md").read_text()
    assert "docs/configuration.md" in readme
