"""The `mailflow` command. Commands are thin: they call the same services as the web UI.

Configuration and key problems exit with status 78 (EX_CONFIG) and one line each on stderr.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .config import OPTIONS, Config, display_value, load_config
from .errors import EX_CONFIG, ConfigError


class Context:
    def __init__(self, config_file: str | None, flags: dict):
        self.config_file = config_file
        self.flags = flags

    @functools.cached_property
    def config(self) -> Config:
        return load_config(self.config_file, flags=self.flags)


def fail_config(problems: list[str]) -> None:
    for problem in problems:
        click.echo(f"mailflow: {problem}", err=True)
    sys.exit(EX_CONFIG)


class MailflowGroup(click.Group):
    """Turns a ConfigError from any command into its one-line-per-problem exit 78."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail_config(exc.problems)


def option_flags(func):
    """One flag per non-secret option of the table (secrets never come from flags)."""
    for option in reversed(OPTIONS):
        if not option.secret:
            func = click.option(option.flag, option.name, default=None, metavar="VALUE",
                                help=f"{option.help} [env {option.env}]")(func)
    return func


@click.group(cls=MailflowGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML config file [default: /etc/mailflow/mailflow.toml if present; env MAILFLOW_CONFIG]")
@option_flags
@click.version_option(__version__, prog_name="mailflow")
@click.pass_context
def main(ctx, config_file, **flags):
    """MailFlow: self-hosted, encrypted cold-email outreach.

    \b
    First run (development):  mailflow keygen ./var/keys/master.key
                              MAILFLOW_KEY_FILE=./var/keys/master.key mailflow --data-dir ./var/data serve
    On a host, the installer and the systemd unit do this for you.
    """
    ctx.obj = Context(config_file, flags)


@main.command()
@click.pass_obj
def serve(obj: Context):
    """Run the appliance: web UI, API and scheduler in one process, until SIGTERM."""
    from .server import serve as run_server

    sys.exit(run_server(obj.config))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def keygen(path):
    """Write a new random 32-byte master key to PATH (mode 0600; never overwrites).

    Keep it outside the data directory and back it up separately: without it the
    database cannot be read.
    """
    from .keys import generate_key_file

    try:
        written = generate_key_file(path)
    except ConfigError as exc:
        click.echo(f"mailflow: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote master key {written} (mode 0600)")


@main.group("config")
def config_group():
    """Show or check the configuration."""


@config_group.command("show")
@click.pass_obj
def config_show(obj: Context):
    """Print every option with its value and where it came from (secrets masked)."""
    config = obj.config
    width = max(len(o.name) for o in config.options)
    for option in config.options:
        value = display_value(option, config.values[option.name])
        click.echo(f"{option.name:<{width}} = {value}    ({config.sources[option.name]})")


@config_group.command("check")
@click.pass_obj
def config_check(obj: Context):
    """Validate the configuration, the master key and the database key; exit 78 on problems."""
    from .runtime import open_database
    from .keys import KeyRing, read_master_key

    config = obj.config
    key = read_master_key(config)
    if config.database_path.exists():
        open_database(config, KeyRing.derive(key), create=False).close()
    click.echo("configuration OK")


@config_group.command("docs")
def config_docs():
    """Print the option reference as Markdown (docs/configuration.md is generated from it)."""
    click.echo(options_markdown())


def options_markdown() -> str:
    lines = ["| option | environment | default | description |", "| --- | --- | --- | --- |"]
    for o in OPTIONS:
        default = display_value(o, o.parse(o.default)) if o.default not in (None, ()) else "(unset)"
        env = f"`{o.env}_FILE`" if o.secret else f"`{o.env}`"
        lines.append(f"| `{o.name}` | {env} | `{default}` | {o.help} |")
    return "\n".join(lines)


@main.command()
@click.option("--status", "show_status", is_flag=True, help="List migrations and whether each is applied.")
@click.pass_obj
def migrate(obj: Context, show_status):
    """Create the database if needed and apply pending schema migrations."""
    from .db.migrator import migrate as apply, status
    from .keys import load_keyring
    from .runtime import open_database

    config = obj.config
    db = open_database(config, load_keyring(config), create=not show_status)
    try:
        if show_status:
            for state in status(db):
                mark = state.applied_at or "pending"
                click.echo(f"{state.migration.name:<40} {mark}")
            return
        applied = apply(db)
        for migration in applied:
            click.echo(f"applied {migration.name}")
        click.echo("database is up to date" if not applied else f"{len(applied)} migration(s) applied")
    finally:
        db.close()


@main.command("create-admin")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.pass_obj
def create_admin(obj: Context, email, name):
    """Create the owner account (or, once an owner exists, an admin) for scripted installs.

    The password is read from standard input (twice when it is a terminal), never from a
    flag, so it stays out of shell history and the process list.
    """
    from .keys import load_keyring
    from .runtime import open_database
    from .services import users
    from .services.errors import ServiceError

    config = obj.config
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    db = open_database(config, load_keyring(config), create=False)
    try:
        user = users.create_admin(db, email=email, password=password, name=name, cost=config.bcrypt_cost)
    except ServiceError as exc:
        details = "; ".join(f"{k}: {v}" for k, v in exc.details.get("fields", {}).items())
        click.echo(f"mailflow: {details or exc.message}", err=True)
        sys.exit(1)
    finally:
        db.close()
    click.echo(f"created {user['role']} {user['email']}")


@main.command("inspect-message")
@click.argument("file", metavar="FILE.eml")
@click.option("--unsubscribe-address", "unsubscribe_addresses", multiple=True, metavar="ADDR",
              help="Our List-Unsubscribe mailto address (repeatable): mail sent to it is an unsubscribe.")
def inspect_message(file, unsubscribe_addresses):
    """Print what an inbound message is (reply, bounce, auto_reply, complaint, unsubscribe or
    other) as JSON: the classification mailbox sync applies. Needs no configuration or database.
    FILE.eml may be "-" for standard input.
    """
    import json

    from .mail.classify import MAX_INPUT, classify

    try:  # classification reads at most MAX_INPUT bytes: so does this
        if file == "-":
            raw = sys.stdin.buffer.read(MAX_INPUT)
        else:
            with open(file, "rb") as handle:
                raw = handle.read(MAX_INPUT)
    except OSError as exc:
        click.echo(f"mailflow: cannot read {file}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    result = classify(raw, unsubscribe_addresses=frozenset(a.lower() for a in unsubscribe_addresses))
    click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))


@main.group("audit")
def audit_group():
    """Check the append-only, hash-chained audit log."""


@audit_group.command("verify")
@click.pass_obj
def audit_verify(obj: Context):
    """Walk the audit log's hash chain from the first entry to the last.

    Exits 0 when every entry is intact, 1 naming the first entry that was edited, removed
    or inserted out of band.
    """
    from .db.migrator import status
    from .keys import load_keyring
    from .runtime import open_database
    from .services import audit

    config = obj.config
    db = open_database(config, load_keyring(config), create=False)
    try:
        if any(state.applied_at is None for state in status(db)):
            raise ConfigError("the database schema is not up to date; run `mailflow migrate` first")
        result = audit.verify(db)
    finally:
        db.close()
    if not result.ok:
        click.echo(f"audit log check FAILED: {result.problem} "
                   f"(entries verified before it: {result.checked})", err=True)
        sys.exit(1)
    click.echo(f"audit log OK: {result.checked} entries verified; head {result.head}")
    click.echo("compare the head with the latest `audit.anchor` event in the service log: "
               "entries removed from the end leave an older head behind")


if __name__ == "__main__":  # pragma: no cover
    main()
