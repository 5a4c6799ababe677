#!/usr/bin/env bash
# MailFlow installer: install, upgrade and uninstall on a systemd host.
#
#   sudo ./install.sh install                    # from the source tree this script lives in
#   sudo ./install.sh install --wheels ./wheels  # offline, from an air-gapped bundle
#   sudo ./install.sh uninstall [--purge]
#
# Run `./install.sh --help` for every option.
set -euo pipefail

readonly PROG="${0##*/}"
readonly SERVICE=mailflow
readonly SERVICE_USER=mailflow
readonly SERVICE_GROUP=mailflow
readonly MIN_PYTHON="3.11"

# Host paths. With --root DIR every one of them is prefixed with DIR.
readonly OPT_DIR=/opt/mailflow
readonly VENV_DIR=/opt/mailflow/venv
readonly SHARE_DIR=/opt/mailflow/share
readonly BIN_DIR=/opt/mailflow/bin
readonly ETC_DIR=/etc/mailflow
readonly CONFIG_FILE=/etc/mailflow/mailflow.toml
readonly KEY_FILE=/etc/mailflow/master.key
readonly DATA_DIR=/var/lib/mailflow
readonly UNIT_FILE=/etc/systemd/system/mailflow.service

SCRIPT_DIR="$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd)"
readonly SCRIPT_DIR

usage() {
    cat <<EOF
Usage: $PROG [OPTIONS] install
       $PROG [OPTIONS] uninstall [--purge] [--yes]

Install, upgrade or remove MailFlow as the systemd service "$SERVICE".

Commands:
  install        Install, or upgrade an existing installation in place. Idempotent:
                 running it again never touches an existing configuration file or
                 master key. It creates the system user "$SERVICE_USER", the virtualenv
                 $VENV_DIR, $CONFIG_FILE (commented defaults,
                 only if absent), the master key $KEY_FILE (only if
                 absent), installs $UNIT_FILE,
                 then enables and (re)starts the service.
  uninstall      Stop and disable the service, remove the unit and $OPT_DIR.
                 The data ($DATA_DIR) and the configuration and master key
                 ($ETC_DIR) are kept, so a later install picks them up again.

Options:
  --wheels DIR   Install offline from a directory of wheels (pip --no-index
                 --find-links DIR), e.g. the wheels/ folder of an air-gapped bundle.
  --source DIR   Install from this source tree (default: the repository holding
                 this script, $(dirname -- "$SCRIPT_DIR")). Ignored with --wheels.
  --python PATH  Python $MIN_PYTHON or newer used to create the virtualenv
                 (default: the newest python3.x >= $MIN_PYTHON on PATH).
  --root DIR     Stage everything below DIR instead of /, for packaging and tests.
                 No user is created, nothing is chowned to the service user and
                 systemctl is not called: those steps are printed instead. Root is
                 not required in this mode.
  --purge        With uninstall: also delete $DATA_DIR, $ETC_DIR (configuration
                 AND master key: the encrypted data is unrecoverable without it) and
                 the "$SERVICE_USER" user and group.
  --yes          With uninstall --purge: do not ask for confirmation.
  -h, --help     Show this help.

Exit status: 0 on success, 1 on any failure, 2 on a usage error.
EOF
}

# -- output -------------------------------------------------------------------------------

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage_error() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    printf "Try '%s --help'.\n" "$PROG" >&2
    exit 2
}

# -- options ------------------------------------------------------------------------------

COMMAND=""
ROOT=""
WHEELS=""
SOURCE=""
PYTHON=""
PURGE=0
ASSUME_YES=0

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || usage_error "option $1 needs a value"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            install | uninstall)
                [[ -z "$COMMAND" ]] || usage_error "only one command at a time ($COMMAND, $1)"
                COMMAND="$1"
                ;;
            --wheels) need_value "$@"; WHEELS="$2"; shift ;;
            --wheels=*) WHEELS="${1#*=}" ;;
            --source) need_value "$@"; SOURCE="$2"; shift ;;
            --source=*) SOURCE="${1#*=}" ;;
            --python) need_value "$@"; PYTHON="$2"; shift ;;
            --python=*) PYTHON="${1#*=}" ;;
            --root) need_value "$@"; ROOT="$2"; shift ;;
            --root=*) ROOT="${1#*=}" ;;
            --purge) PURGE=1 ;;
            --yes | -y) ASSUME_YES=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage_error "unknown argument: $1" ;;
        esac
        shift
    done
    [[ -n "$COMMAND" ]] || usage_error "missing command: install or uninstall"
    if [[ "$COMMAND" == install && "$PURGE" -eq 1 ]]; then
        usage_error "--purge only goes with uninstall"
    fi
    if [[ -n "$ROOT" ]]; then
        ROOT="$(realpath -m -- "$ROOT")"
        [[ "$ROOT" != "/" ]] || usage_error "--root / is the real system: leave --root out instead"
    fi
}

# -- helpers ------------------------------------------------------------------------------

staged() { [[ -n "$ROOT" ]]; }

# Run a command that changes the host outside the file tree (users, systemd, ownership).
# In --root mode it is only printed.
host() {
    if staged; then
        info "[--root] would run: $*"
    else
        "$@"
    fi
}

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

find_python() {
    if [[ -n "$PYTHON" ]]; then
        command -v -- "$PYTHON" >/dev/null 2>&1 || die "--python $PYTHON: not found"
        python_ok "$PYTHON" || die "--python $PYTHON: Python $MIN_PYTHON or newer is required"
        return
    fi
    # Preference: the Python the wheels were built for (compiled cpXY-cpXY wheels), then
    # the one the existing virtualenv uses (no version hop on upgrade), then the newest.
    local candidate candidates=() tag
    if [[ -n "$WHEELS" ]]; then
        for tag in $(find "$WHEELS" -maxdepth 1 -name '*.whl' -printf '%f\n' \
            | sed -n 's/.*-cp3\([0-9]\{1,2\}\)-cp3[0-9]\{1,2\}-.*/\1/p' | sort -u); do
            candidates+=("python3.$tag")
        done
    fi
    if [[ -x "$ROOT$VENV_DIR/bin/python" ]]; then
        tag="$(python_version "$ROOT$VENV_DIR/bin/python" 2>/dev/null || true)"
        if [[ -n "$tag" ]]; then candidates+=("python$tag"); fi
    fi
    candidates+=(python3.14 python3.13 python3.12 python3.11 python3)
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            PYTHON="$(command -v "$candidate")"
            return
        fi
    done
    die "no Python $MIN_PYTHON or newer found; install python3 (>= $MIN_PYTHON) and python3-venv, or pass --python PATH"
}

unit_source() {
    local dir
    for dir in "${SOURCE:-}" "$SCRIPT_DIR/.." "$SCRIPT_DIR"; do
        if [[ -n "$dir" && -f "$dir/systemd/mailflow.service" ]]; then
            readlink -f -- "$dir/systemd/mailflow.service"
            return
        fi
    done
    die "systemd/mailflow.service not found beside $SCRIPT_DIR"
}

dir_is_nonempty() {
    [[ -d "$1" ]] && [[ -n "$(ls -A -- "$1" 2>/dev/null)" ]]
}

systemd_running() {
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1
}

service_active() {
    ! staged && systemctl is-active --quiet "$SERVICE" 2>/dev/null
}

# -- install steps ------------------------------------------------------------------------

preflight_install() {
    if ! staged; then
        [[ "$(id -u)" -eq 0 ]] || die "install must run as root (or use --root DIR to stage)"
        systemd_running || die "systemd is not running on this host (no /run/systemd/system); MailFlow runs as a systemd service"
    fi
    if [[ -n "$WHEELS" ]]; then
        [[ -d "$WHEELS" ]] || die "--wheels $WHEELS: not a directory"
        WHEELS="$(cd -- "$WHEELS" && pwd)"
        compgen -G "$WHEELS/mailflow-*.whl" >/dev/null || die "--wheels $WHEELS: no mailflow-*.whl in it"
    else
        SOURCE="${SOURCE:-$SCRIPT_DIR/..}"
        [[ -f "$SOURCE/pyproject.toml" ]] || die "no source tree at $SOURCE (pass --source DIR or --wheels DIR)"
        SOURCE="$(cd -- "$SOURCE" && pwd)"
    fi
    find_python
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || die "$PYTHON cannot create virtualenvs; install the python3-venv package"
}

ensure_user() {
    step "System user and group: $SERVICE_USER"
    if staged; then
        info "[--root] would run: groupadd --system $SERVICE_GROUP (if absent)"
        info "[--root] would run: useradd --system --gid $SERVICE_GROUP --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $SERVICE_USER (if absent)"
        return
    fi
    if ! getent group "$SERVICE_GROUP" >/dev/null; then
        groupadd --system "$SERVICE_GROUP"
        info "created group $SERVICE_GROUP"
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        local nologin=/usr/sbin/nologin
        [[ -x "$nologin" ]] || nologin=/sbin/nologin
        useradd --system --gid "$SERVICE_GROUP" --no-create-home --home-dir /nonexistent \
            --shell "$nologin" --comment "MailFlow appliance" "$SERVICE_USER"
        info "created user $SERVICE_USER"
    else
        info "already present"
    fi
}

ensure_dirs() {
    step "Directories: $OPT_DIR, $ETC_DIR (0750), $DATA_DIR (0700)"
    # Parents (/opt, /etc/systemd/system, /var/lib) are created if missing but never chmod'ed.
    mkdir -p -- "$ROOT/opt" "$ROOT/etc/systemd/system" "$ROOT/var/lib"
    install -d -m 0755 "$ROOT$OPT_DIR" "$ROOT$SHARE_DIR" "$ROOT$BIN_DIR"
    install -d -m 0750 "$ROOT$ETC_DIR"
    chmod 0750 "$ROOT$ETC_DIR"
    install -d -m 0700 "$ROOT$DATA_DIR"
    chmod 0700 "$ROOT$DATA_DIR"
    host chown "root:$SERVICE_GROUP" "$ETC_DIR"
    host chown "$SERVICE_USER:$SERVICE_GROUP" "$DATA_DIR"
}

ensure_venv() {
    local venv="$ROOT$VENV_DIR" want have
    want="$(python_version "$PYTHON")"
    if [[ -x "$venv/bin/python" ]] && have="$(python_version "$venv/bin/python" 2>/dev/null)"; then
        if [[ "$have" == "$want" ]]; then
            step "Virtualenv $VENV_DIR: reusing (Python $have)"
            return
        fi
        step "Virtualenv $VENV_DIR: Python $have -> $want, recreating"
    elif [[ -e "$venv" ]]; then
        step "Virtualenv $VENV_DIR: broken, recreating with Python $want"
    else
        step "Virtualenv $VENV_DIR: creating with $PYTHON (Python $want)"
    fi
    rm -rf -- "$venv"
    "$PYTHON" -m venv "$venv"
}

install_package() {
    local pip=("$ROOT$VENV_DIR/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
    local before after
    before="$(installed_version)"
    if [[ -n "$WHEELS" ]]; then
        step "Package: installing mailflow offline from $WHEELS"
        # The bundle is self-contained: ignore the host's pip configuration (extra
        # indexes, find-links, constraints) so exactly these wheels are used.
        local var
        for var in $(compgen -e); do
            if [[ "$var" == PIP_* ]]; then unset "$var"; fi
        done
        export PIP_CONFIG_FILE=/dev/null
        "${pip[@]}" install --no-index --find-links "$WHEELS" --upgrade mailflow \
            || die "pip could not install mailflow from $WHEELS (is every dependency's wheel there, built for this Python?)"
    else
        step "Package: installing mailflow from $SOURCE"
        "${pip[@]}" install --upgrade "$SOURCE" || die "pip could not install mailflow from $SOURCE"
    fi
    after="$(installed_version)"
    if [[ -n "$WHEELS" && -n "$before" && "$before" == "$after" ]]; then
        # Same version number: pip kept the installed files. Lay down the bundle's
        # own build anyway, so an install always runs exactly the code it was given.
        "${pip[@]}" install --no-index --find-links "$WHEELS" --force-reinstall --no-deps mailflow \
            || die "pip could not reinstall mailflow from $WHEELS"
    fi
    if [[ -z "$before" ]]; then
        info "installed mailflow $after"
    elif [[ "$before" == "$after" ]]; then
        info "mailflow $after (version unchanged)"
    else
        info "upgraded mailflow $before -> $after"
    fi
    "$ROOT$VENV_DIR/bin/mailflow" --help >/dev/null 2>&1 \
        || die "the installed command $VENV_DIR/bin/mailflow does not run"
}

installed_version() {
    "$ROOT$VENV_DIR/bin/python" - <<'EOF' 2>/dev/null || true
from importlib import metadata
try:
    print(metadata.version("mailflow"))
except metadata.PackageNotFoundError:
    pass
EOF
}

write_config() {
    local conf="$ROOT$CONFIG_FILE"
    if [[ -e "$conf" ]]; then
        step "Configuration $CONFIG_FILE: kept (already present)"
        return
    fi
    step "Configuration $CONFIG_FILE: writing commented defaults"
    local tmp="$conf.tmp.$$"
    cat >"$tmp" <<'EOF'
# MailFlow configuration (TOML). Every setting is optional; the commented values
# are the defaults. A MAILFLOW_<NAME> environment variable overrides the key <name>.
# After a change: `systemctl restart mailflow`.
# Check it (as the service user, with the service's key): sudo /opt/mailflow/bin/mailflowctl config check

# Directory of the encrypted database and other state. The systemd unit only
# lets the service write to /var/lib/mailflow (StateDirectory=); moving it needs
# a drop-in with ReadWritePaths= as well.
# data_dir = "/var/lib/mailflow"

# HOST:PORT of the built-in plain-HTTP server. Keep it on loopback and put the TLS
# front (/opt/mailflow/share/nginx-mailflow.conf) in front of it.
# listen = "127.0.0.1:8025"

# The https:// address users and recipients reach MailFlow at; used in setup,
# unsubscribe and tracking links. Set it before launching a campaign.
# public_url = "https://mailflow.example.com"

# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are trusted.
# With the shipped nginx config on this host:
# trusted_proxies = ["127.0.0.1"]

# The 32-byte master key. Under systemd it is handed over as the credential
# "mailflow.master" (LoadCredential= in the unit), so leave this unset there.
# It must live outside data_dir and be readable by its owner only.
# key_file = "/etc/mailflow/master.key"

# Logging to stderr (the journal): "json" or "text"; level debug|info|warning|error.
# log_format = "json"
# log_level = "info"

# Background workers (sending, mailbox sync, webhooks, maintenance).
# scheduler_threads = 4

# Seconds to let in-flight work finish after SIGTERM (keep below TimeoutStopSec=).
# shutdown_timeout = 20
EOF
    chmod 0640 "$tmp"
    mv -f -- "$tmp" "$conf"
    host chown "root:$SERVICE_GROUP" "$CONFIG_FILE"
}

ensure_key() {
    local key="$ROOT$KEY_FILE"
    if [[ -f "$key.cred" && ! -e "$key" ]]; then
        step "Master key $KEY_FILE.cred: kept (encrypted credential, see the unit's comments)"
        return
    fi
    if [[ -e "$key" || -L "$key" ]]; then
        [[ -f "$key" && ! -L "$key" ]] || die "$KEY_FILE exists but is not a regular file; fix it by hand"
        [[ -s "$key" ]] || die "$KEY_FILE is empty; restore the master key from your backup"
        step "Master key $KEY_FILE: kept (already present, never overwritten)"
        chmod 0600 "$key"
        host chown root:root "$KEY_FILE"
        return
    fi
    # A data directory with content but no key: a new key could not open that data.
    if dir_is_nonempty "$ROOT$DATA_DIR"; then
        die "$DATA_DIR holds data but $KEY_FILE is missing. Restore the master key from your backup, or move $DATA_DIR aside to start over."
    fi
    step "Master key $KEY_FILE: generating (mailflow keygen)"
    (umask 077 && "$ROOT$VENV_DIR/bin/mailflow" keygen "$key") >/dev/null \
        || die "mailflow keygen $KEY_FILE failed"
    [[ -s "$key" ]] || die "mailflow keygen did not create $KEY_FILE"
    chmod 0600 "$key"
    host chown root:root "$KEY_FILE"
    info "BACK IT UP to a safe place now: without this key the encrypted data cannot be read."
}

install_extras() {
    step "Extras: $SHARE_DIR/nginx-mailflow.conf, $BIN_DIR/mailflowctl"
    if [[ -f "$SCRIPT_DIR/nginx-mailflow.conf" ]]; then
        install -m 0644 "$SCRIPT_DIR/nginx-mailflow.conf" "$ROOT$SHARE_DIR/nginx-mailflow.conf"
    fi
    # CLI wrapper for operators: runs a mailflow command as the service user, with the
    # service's master key credential and data directory, so files keep the right owner.
    local tmp="$ROOT$BIN_DIR/mailflowctl.tmp.$$"
    cat >"$tmp" <<'EOF'
#!/bin/sh
# Run a MailFlow CLI command as the service would: user mailflow, master key from
# the credential mailflow.master, data in /var/lib/mailflow. Example:
#   sudo /opt/mailflow/bin/mailflowctl migrate --status
set -eu
if [ -t 0 ] && [ -t 1 ]; then io=--pty; else io=--pipe; fi
if [ -f /etc/mailflow/master.key.cred ] && [ ! -e /etc/mailflow/master.key ]; then
    credential=LoadCredentialEncrypted=mailflow.master:/etc/mailflow/master.key.cred
else
    credential=LoadCredential=mailflow.master:/etc/mailflow/master.key
fi
exec systemd-run --quiet --wait --collect "$io" \
    --property=User=mailflow --property=Group=mailflow --property="$credential" \
    --property=StateDirectory=mailflow --property=StateDirectoryMode=0700 \
    --property=UMask=0077 --property=WorkingDirectory=/var/lib/mailflow \
    /opt/mailflow/venv/bin/mailflow --config /etc/mailflow/mailflow.toml "$@"
EOF
    chmod 0755 "$tmp"
    mv -f -- "$tmp" "$ROOT$BIN_DIR/mailflowctl"
}

install_unit() {
    local src
    src="$(unit_source)"
    if [[ -f "$ROOT$UNIT_FILE" ]] && cmp -s -- "$src" "$ROOT$UNIT_FILE"; then
        step "Unit $UNIT_FILE: unchanged"
    else
        step "Unit $UNIT_FILE: installing from $src"
        install -m 0644 "$src" "$ROOT$UNIT_FILE"
    fi
}

start_service() {
    local was_active=0
    if service_active; then
        was_active=1
    fi
    step "Service: daemon-reload, enable --now$([[ $was_active -eq 1 ]] && printf ', restart')"
    host systemctl daemon-reload
    host systemctl enable --now "$SERVICE.service"
    if [[ $was_active -eq 1 ]]; then
        host systemctl restart "$SERVICE.service"
    fi
    if ! staged; then
        systemctl is-active --quiet "$SERVICE" \
            || die "the service did not start; see: journalctl -u $SERVICE -n 50 --no-pager"
        info "running: systemctl status $SERVICE"
    fi
}

check_config() {
    step "Check: mailflow config check (configuration, master key, database key)"
    local out
    if staged && [[ ! -e "$ROOT$KEY_FILE" ]]; then
        info "skipped: only the encrypted credential $KEY_FILE.cred is there, which systemd decrypts at start"
        return
    fi
    if staged; then
        out="$(env -u CREDENTIALS_DIRECTORY MAILFLOW_KEY_FILE="$ROOT$KEY_FILE" MAILFLOW_DATA_DIR="$ROOT$DATA_DIR" \
            "$ROOT$VENV_DIR/bin/mailflow" --config "$ROOT$CONFIG_FILE" config check 2>&1)" \
            || die "configuration check failed: ${out//$'\n'/; }"
    else
        # As the service runs it: user mailflow, key handed over as the credential.
        out="$("$BIN_DIR/mailflowctl" config check </dev/null 2>&1)" \
            || die "configuration check failed, so the service was not (re)started: ${out//$'\n'/; }"
    fi
    info "${out##*$'\n'}"
}

cmd_install() {
    preflight_install
    if staged; then
        step "Staging into $ROOT (no users, ownership or systemctl changes)"
    fi
    ensure_user
    ensure_dirs
    ensure_venv
    install_package
    write_config
    ensure_key
    install_extras
    install_unit
    check_config
    start_service
    step "Done. MailFlow serves plain HTTP on loopback (listen in $CONFIG_FILE, default 127.0.0.1:8025)."
    info "First admin: the one-time setup link is in the log: journalctl -u $SERVICE | grep -A1 'first admin'"
    info "Next: set public_url in $CONFIG_FILE, put a TLS front in place ($SHARE_DIR/nginx-mailflow.conf),"
    info "and keep a copy of $KEY_FILE somewhere safe. CLI as the service user: $BIN_DIR/mailflowctl --help"
}

# -- uninstall ----------------------------------------------------------------------------

confirm_purge() {
    if [[ "$ASSUME_YES" -eq 1 || ! -t 0 ]]; then
        return
    fi
    printf 'This deletes %s, %s (including the master key) and the %s user.\n' \
        "$ROOT$DATA_DIR" "$ROOT$ETC_DIR" "$SERVICE_USER" >&2
    printf 'The encrypted data cannot be recovered afterwards. Type "purge" to go on: ' >&2
    local answer=""
    read -r answer || true
    [[ "$answer" == purge ]] || die "not confirmed; nothing was purged"
}

cmd_uninstall() {
    if ! staged; then
        [[ "$(id -u)" -eq 0 ]] || die "uninstall must run as root (or use --root DIR)"
    fi
    if [[ "$PURGE" -eq 1 ]]; then
        confirm_purge
    fi
    if staged; then
        step "Staged root $ROOT (no users or systemctl changes)"
    fi
    step "Service: stop and disable"
    if staged; then
        host systemctl disable --now "$SERVICE.service"
    elif systemd_running; then
        systemctl disable --now "$SERVICE.service" >/dev/null 2>&1 || info "was not enabled or not loaded"
    else
        info "systemd is not running; nothing to stop"
    fi
    step "Unit $UNIT_FILE: removing"
    rm -f -- "$ROOT$UNIT_FILE"
    if staged; then
        host systemctl daemon-reload
        host systemctl reset-failed "$SERVICE.service"
    elif systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed "$SERVICE.service" >/dev/null 2>&1 || true
    fi
    step "Application $OPT_DIR: removing"
    rm -rf -- "$ROOT$OPT_DIR"
    if [[ "$PURGE" -eq 1 ]]; then
        step "Purge: removing $DATA_DIR and $ETC_DIR (configuration and master key)"
        rm -rf -- "$ROOT$DATA_DIR" "$ROOT$ETC_DIR"
        step "Purge: removing user and group $SERVICE_USER"
        if staged; then
            host userdel "$SERVICE_USER"
            host groupdel "$SERVICE_GROUP"
        else
            if getent passwd "$SERVICE_USER" >/dev/null; then userdel "$SERVICE_USER"; fi
            if getent group "$SERVICE_GROUP" >/dev/null; then groupdel "$SERVICE_GROUP"; fi
        fi
        step "Done. MailFlow and all its data are gone."
    else
        step "Done. Kept $DATA_DIR and $ETC_DIR (configuration and master key); 'uninstall --purge' deletes them."
    fi
}

main() {
    parse_args "$@"
    umask 022
    case "$COMMAND" in
        install) cmd_install ;;
        uninstall) cmd_uninstall ;;
    esac
}

main "$@"
