"""Typed configuration: one option table, loaded into a frozen object.

Sources, rising: defaults < TOML file < MAILFLOW_* environment < CLI flags.
Secret options never come from a flag, the environment or the TOML file directly:
only from a file they name (`<name>_file`, `MAILFLOW_<NAME>_FILE`) or from a
systemd credential `mailflow.<name>` in $CREDENTIALS_DIRECTORY.
Each option's value parser is in `config_types`; the checks across options are here.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .config_types import (is_loopback, parse_choice, parse_date, parse_domains, parse_int_range, parse_label,
                           parse_listen, parse_networks, parse_oidc_issuer, parse_optional_path, parse_path,
                           parse_readable_file, parse_text, parse_url)
from .errors import ConfigError

DEFAULT_CONFIG_FILE = Path("/etc/mailflow/mailflow.toml")
ENV_PREFIX = "MAILFLOW_"
CREDENTIAL_PREFIX = "mailflow."


# -- the option table ------------------------------------------------------------------------

def parse_switch(raw: Any) -> bool:
    """true/false (TOML booleans, or yes/no, on/off, 1/0 from the environment and flags)."""
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("data_dir", parse_path, "/var/lib/mailflow",
           "Directory holding the encrypted database and other state. Must not contain the key file."),
    Option("listen", parse_listen, "127.0.0.1:8025",
           "HOST:PORT for the built-in HTTP server. Loopback only unless trusted_proxies is set "
           "(TLS is terminated by a front such as installer/nginx-mailflow.conf)."),
    Option("key_file", parse_optional_path, None,
           "Path of the 32-byte master key (create with `mailflow keygen`). When unset, the systemd "
           "credential mailflow.master is used. Must live outside data_dir, mode 0600 or stricter."),
    Option("public_url", parse_url, None,
           "Base URL users and recipients reach MailFlow at; used for setup, unsubscribe and tracking "
           "links. When unset: http://<listen address>."),
    Option("trusted_proxies", parse_networks, (),
           "IP addresses or CIDR ranges of reverse proxies whose X-Forwarded-For/-Proto headers are trusted."),
    Option("log_level", parse_choice("debug", "info", "warning", "error"), "info",
           "Minimum level of log events."),
    Option("log_format", parse_choice("json", "text"), "json",
           "Log line format on stderr: one JSON object per line, or human-readable text."),
    Option("scheduler_threads", parse_int_range(1, 64), 4,
           "Size of the background worker pool (sending, mailbox sync, webhooks, maintenance)."),
    Option("shutdown_timeout", parse_int_range(1, 80), 20,
           "Seconds to let in-flight requests and jobs finish after SIGTERM (at most 80: the unit's "
           "TimeoutStopSec is 90)."),
    Option("sending_threads", parse_int_range(1, 256), 16,
           "How many mailboxes send at the same time (each has at most one SMTP conversation)."),
    Option("sync_threads", parse_int_range(1, 64), 8,
           "How many mailboxes are read over IMAP at the same time. Sessions stay open between "
           "cycles whatever this is; sessions waiting in IDLE are watched by one extra thread."),
    Option("sync_interval_seconds", parse_int_range(1, 1500), 60,
           "Seconds between two full reads of each mailbox's INBOX and spam folder (one STATUS per "
           "folder when nothing is new). With IDLE, INBOX is also read as soon as mail arrives."),
    Option("sync_idle", parse_switch, True,
           "Wait in IMAP IDLE on INBOX where the server offers it, so replies are seen within about "
           "a second; false: poll only, every sync_interval_seconds."),
    Option("domain_spread_seconds", parse_int_range(0, 86400), 120,
           "Minimum seconds between two messages to the same recipient domain, across all mailboxes, "
           "so one company never gets a burst."),
    Option("setup_link_ttl", parse_int_range(300, 7 * 86400), 86400,
           "Seconds the one-time first-admin setup link stays valid."),
    Option("bcrypt_cost", parse_int_range(12, 16), 12,
           "bcrypt cost factor for passwords and API keys (never below 12; each +1 doubles the work)."),
    Option("session_idle_minutes", parse_int_range(5, 24 * 60), 120,
           "A session ends after this many minutes without a request."),
    Option("session_max_hours", parse_int_range(1, 30 * 24), 24,
           "A session ends this many hours after sign-in, however active."),
    Option("invite_ttl_hours", parse_int_range(1, 30 * 24), 72,
           "Hours an invitation link stays valid."),
    Option("security_contact", parse_text, "mailto:security@mailflow.dev",
           "Contact published in /.well-known/security.txt (mailto: or https: URI)."),
    Option("security_txt_expires", parse_date, None,
           "Expiry date (YYYY-MM-DD) published in /.well-known/security.txt. When unset: one year "
           "from start-up."),
    Option("oidc_preset", parse_choice("generic", "google"), "generic",
           "OIDC sign-in provider kind (docs/oidc.md). google fills oidc_issuer with "
           "https://accounts.google.com and turns OIDC sign-in on."),
    Option("oidc_issuer", parse_oidc_issuer, None,
           "Issuer URL of the OpenID Connect provider (https; http only on a loopback host). "
           "When unset (and oidc_preset is generic), OIDC sign-in is off."),
    Option("oidc_client_id", parse_text, None,
           "Client ID MailFlow is registered under at the OIDC provider."),
    Option("oidc_client_secret", parse_text, None,
           "Client secret of that registration.", secret=True),
    Option("oidc_allowed_domains", parse_domains, (),
           "Email domains whose people may sign in with OIDC without an account: they get one as viewer. "
           "Existing active users may always sign in with OIDC; everyone else is refused."),
    Option("oidc_button_label", parse_label, None,
           "Provider name on the sign-in page's \"Sign in with ...\" button. When unset: Google for "
           "the google preset, otherwise SSO."),
    Option("oidc_ca_file", parse_readable_file, None,
           "PEM file of extra CA certificates trusted for the OIDC provider (an on-premises "
           "identity provider with a private CA)."),
    Option("webhook_allow_loopback", parse_switch, False,
           "Let webhooks reach loopback addresses (127.0.0.0/8, ::1): a receiver on this same host. "
           "Private networks are allowed separately, by an admin under Settings → Webhooks (docs/webhooks.md)."),
    Option("webhook_timeout_seconds", parse_int_range(1, 60), 10,
           "Seconds a webhook endpoint has to answer one delivery (connect, send, response) before "
           "the attempt counts as failed and is retried later."),
    Option("webhook_threads", parse_int_range(1, 32), 4,
           "How many webhook deliveries are sent at the same time."),
    Option("webhook_ca_file", parse_readable_file, None,
           "PEM file of extra CA certificates trusted for https:// webhook endpoints (an on-premises "
           "CRM with a private CA)."),
)


@dataclass(frozen=True)
class Config:
    """The loaded configuration: attribute access to values, plus where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    options: tuple[Option, ...] = OPTIONS

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def database_path(self) -> Path:
        return Path(self.values["data_dir"]) / "mailflow.db"

    def with_overrides(self, **values: Any) -> "Config":
        merged = dict(self.values, **values)
        sources = dict(self.sources, **{k: "override" for k in values})
        return Config(MappingProxyType(merged), MappingProxyType(sources), self.options)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


def _resolve(by_name: dict[str, Option], key: str) -> tuple[Option | None, bool]:
    """Map a config key to its option; `<secret>_file` names the file holding a secret."""
    if key in by_name:
        return by_name[key], False
    option = by_name.get(key.removesuffix("_file"))
    if key.endswith("_file") and option is not None and option.secret:
        return option, True
    return None, False


def _unknown(name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {name!r} in {where}{hint}"


def load_config(config_file: str | Path | None = None, env: Mapping[str, str] | None = None,
                flags: Mapping[str, Any] | None = None,
                options: tuple[Option, ...] = OPTIONS) -> Config:
    """Load and validate; raises ConfigError listing every problem at once."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    problems: list[str] = []
    raw: dict[str, tuple[Any, str]] = {o.name: (o.default, "default") for o in options}
    by_name = {o.name: o for o in options}

    explicit = config_file or env.get(ENV_PREFIX + "CONFIG")
    path = Path(explicit) if explicit else DEFAULT_CONFIG_FILE
    if explicit or path.exists():
        where = f"file:{path}"
        for key, value in _read_toml(path).items():
            option, via_file = _resolve(by_name, key)
            if option is None:
                problems.append(_unknown(key, list(by_name), str(path)))
            elif option.secret and not via_file:
                problems.append(f"{key} is secret: set {key}_file to a file holding it, not the value")
            elif via_file:
                raw[option.name] = (("file", value), f"{where} ({key})")
            else:
                raw[option.name] = (value, where)

    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        option, via_file = _resolve(by_name, key[len(ENV_PREFIX):].lower())
        if option is None:
            known = [o.env for o in options] + [o.env + "_FILE" for o in options if o.secret]
            problems.append(_unknown(key, known, "the environment"))
        elif option.secret and not via_file:
            problems.append(f"{key} is secret: set {key}_FILE to a file holding it, not the value")
        elif via_file:
            raw[option.name] = (("file", value), f"env:{key}")
        else:
            raw[option.name] = (value, f"env:{key}")

    credentials = env.get("CREDENTIALS_DIRECTORY")
    for option in options:
        if option.secret and credentials and raw[option.name][1] == "default":
            cred = Path(credentials) / (CREDENTIAL_PREFIX + option.name)
            if cred.exists():
                raw[option.name] = (("file", str(cred)), f"credential:{cred.name}")

    for name, value in flags.items():
        option = by_name.get(name)
        if option is None or option.secret:
            problems.append(f"{name} cannot be set by a command-line flag")
        else:
            raw[name] = (value, f"flag:{option.flag}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options:
        value, source = raw[option.name]
        try:
            if isinstance(value, tuple) and value[:1] == ("file",):
                value = _read_secret_file(Path(value[1]))
            values[option.name] = None if value is None else option.parse(value)
        except ValueError as exc:
            problems.append(f"{option.name} ({source}): {exc}")
        sources[option.name] = source

    if not problems:
        problems.extend(validate(values))
    if not problems and oidc_issuer(values) and not values.get("oidc_issuer"):
        values["oidc_issuer"], sources["oidc_issuer"] = oidc_issuer(values), "preset:google"
    if problems:
        raise ConfigError(*problems)
    return Config(MappingProxyType(values), MappingProxyType(sources), options)


def validate(values: Mapping[str, Any]) -> list[str]:
    """Checks across options; each problem is one line."""
    problems = []
    listen = values.get("listen")
    if listen is not None and not is_loopback(listen[0]) and not values.get("trusted_proxies"):
        problems.append(
            f"listen: {listen[0]} is not a loopback address; MailFlow serves plain HTTP, so bind "
            "127.0.0.1 behind a TLS front, or set trusted_proxies to that front's address")
    problems.extend(validate_oidc(values))
    return problems


GOOGLE_ISSUER = "https://accounts.google.com"


def oidc_issuer(values: Mapping[str, Any]) -> str | None:
    """The effective issuer: the configured one, or the preset's. None means OIDC is off."""
    if values.get("oidc_issuer"):
        return values["oidc_issuer"]
    return GOOGLE_ISSUER if values.get("oidc_preset") == "google" else None


def validate_oidc(values: Mapping[str, Any]) -> list[str]:
    problems = []
    issuer = oidc_issuer(values)
    preset = values.get("oidc_preset")
    if issuer is None:
        stray = [n for n in ("oidc_client_id", "oidc_client_secret", "oidc_allowed_domains",
                             "oidc_button_label", "oidc_ca_file") if values.get(n)]
        if stray:
            problems.append(f"{stray[0]}: set, but OIDC sign-in is off; set oidc_issuer "
                            "(or oidc_preset = \"google\") to turn it on")
        return problems
    if preset == "google" and issuer.rstrip("/") != GOOGLE_ISSUER:
        problems.append(f"oidc_issuer: the google preset uses {GOOGLE_ISSUER}; unset oidc_issuer "
                        "or set oidc_preset = \"generic\"")
    if not values.get("oidc_client_id"):
        problems.append("oidc_client_id: required when OIDC sign-in is on")
    if not values.get("oidc_client_secret"):
        problems.append("oidc_client_secret: required when OIDC sign-in is on; set oidc_client_secret_file, "
                        "MAILFLOW_OIDC_CLIENT_SECRET_FILE or the credential mailflow.oidc_client_secret")
    public_url = values.get("public_url")
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
            problems.append("public_url: must be https:// when OIDC sign-in is on (the provider sends "
                            "sign-in codes to <public_url>/login/oidc/callback)")
    elif values.get("listen") is not None and not is_loopback(values["listen"][0]):
        problems.append("public_url: required when OIDC sign-in is on and listen is not a loopback "
                        "address (the redirect URI is <public_url>/login/oidc/callback)")
    return problems


def display_value(option: Option, value: Any) -> str:
    """How `config show` prints a value: secrets masked, types in their config spelling."""
    if value is None:
        return "(unset)"
    if option.secret:
        return "********"
    if isinstance(value, bool):
        return "true" if value else "false"
    if option.name == "listen":
        return f"{value[0]}:{value[1]}"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)
