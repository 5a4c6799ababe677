#!/usr/bin/env bash
# Build an air-gapped MailFlow bundle: every wheel the package needs plus the installer,
# the systemd unit and short instructions, as a directory and a .tar.gz.
#
#   installer/build-bundle.sh                 # -> dist/mailflow-<version>/ and dist/mailflow-<version>.tar.gz
#   installer/build-bundle.sh --python python3.11 --out /tmp/out
#
# Build it on a machine with network access and the same CPU architecture and Python
# minor version as the target; then on the target:
#   tar xzf mailflow-<version>.tar.gz && cd mailflow-<version> && sudo ./install.sh install --wheels ./wheels
set -euo pipefail

readonly PROG="${0##*/}"
SCRIPT_DIR="$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd)"
readonly SCRIPT_DIR
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd)"
readonly REPO

usage() {
    cat <<EOF
Usage: $PROG [--out DIR] [--python PATH] [--no-tar] [--no-check]

Build an offline installation bundle of MailFlow from $REPO.

Options:
  --out DIR      Where to write the bundle (default: $REPO/dist).
  --python PATH  Interpreter whose version and platform the wheels are built for
                 (default: python3). Use the target host's Python minor version.
  --no-tar       Only build the directory, not the .tar.gz.
  --no-check     Skip the offline test install into a throw-away virtualenv.
  -h, --help     Show this help.
EOF
}

step() { printf '==> %s\n' "$*"; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

OUT="$REPO/dist"
PYTHON=python3
MAKE_TAR=1
CHECK=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT="$2"; shift ;;
        --out=*) OUT="${1#*=}" ;;
        --python) [[ $# -ge 2 ]] || die "--python needs a value"; PYTHON="$2"; shift ;;
        --python=*) PYTHON="${1#*=}" ;;
        --no-tar) MAKE_TAR=0 ;;
        --no-check) CHECK=0 ;;
        -h | --help) usage; exit 0 ;;
        *) printf '%s: unknown argument: %s\n' "$PROG" "$1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

command -v -- "$PYTHON" >/dev/null 2>&1 || die "python not found: $PYTHON"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$PYTHON is older than Python 3.11"
[[ -f "$REPO/pyproject.toml" ]] || die "no pyproject.toml in $REPO"

VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
ARCH="$(uname -m)"
NAME="mailflow-$VERSION"
mkdir -p -- "$OUT"
OUT="$(cd -- "$OUT" && pwd)"
BUNDLE="$OUT/$NAME"

step "Bundle $BUNDLE (mailflow $VERSION, Python $PYVER, $ARCH)"
rm -rf -- "$BUNDLE" "$OUT/$NAME.tar.gz"
mkdir -p -- "$BUNDLE/wheels"

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

# Build from a clean copy: setuptools builds in the source tree, and a stale build/
# directory there could leak deleted modules into the wheel.
step "Source: clean copy of $REPO"
tar -C "$REPO" --exclude=.git --exclude=./build --exclude=./dist --exclude=./var \
    --exclude=./.venv --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.hypothesis -cf - . | tar -C "$tmp" --one-top-level=src -xf -

step "Wheels: pip wheel (mailflow and all its dependencies)"
"$PYTHON" -m pip wheel --disable-pip-version-check --no-input --quiet \
    --wheel-dir "$BUNDLE/wheels" "$tmp/src" \
    || die "pip wheel failed"
if compgen -G "$BUNDLE/wheels/*.tar.gz" >/dev/null || compgen -G "$BUNDLE/wheels/*.zip" >/dev/null; then
    die "pip left source archives in wheels/; every dependency must be a wheel"
fi
printf '    %s wheels\n' "$(find "$BUNDLE/wheels" -name '*.whl' | wc -l)"

step "Installer, systemd unit, nginx example"
mkdir -p -- "$BUNDLE/installer" "$BUNDLE/systemd"
install -m 0755 "$SCRIPT_DIR/install.sh" "$BUNDLE/installer/install.sh"
install -m 0644 "$SCRIPT_DIR/nginx-mailflow.conf" "$BUNDLE/installer/nginx-mailflow.conf"
install -m 0644 "$REPO/systemd/mailflow.service" "$BUNDLE/systemd/mailflow.service"
cat >"$BUNDLE/install.sh" <<'EOF'
#!/usr/bin/env bash
# Bundle entry point: runs installer/install.sh, installing from this bundle's wheels/.
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
for arg in "$@"; do
    case "$arg" in --wheels | --wheels=* | --source | --source=*) exec "$here/installer/install.sh" "$@" ;; esac
done
exec "$here/installer/install.sh" "$@" --wheels "$here/wheels"
EOF
chmod 0755 "$BUNDLE/install.sh"

step "INSTALL.txt"
cat >"$BUNDLE/INSTALL.txt" <<EOF
MailFlow $VERSION: offline installation bundle
=============================================

Built for: Linux $ARCH, CPython $PYVER. The target host needs the same CPU
architecture and Python minor version, because some wheels are compiled.

Requirements on the target
  - systemd 250 or newer, with python$PYVER and its venv module
    (Debian/Ubuntu: apt-get install python3 python3-venv).
  - No network access is needed during installation.

Install (or upgrade: the same command, it keeps configuration, key and data)
  1. Check the transfer:       sha256sum -c SHA256SUMS
  2. Install as root:          sudo ./install.sh install --wheels ./wheels
  3. BACK UP the master key /etc/mailflow/master.key to a safe place, away from
     the data backups. Without it the encrypted database cannot be read.
  4. Edit /etc/mailflow/mailflow.toml (public_url, trusted_proxies) and
     restart: sudo systemctl restart mailflow
  5. Optional TLS front: installer/nginx-mailflow.conf (also installed as
     /opt/mailflow/share/nginx-mailflow.conf); read the comments at its top.

The service
  systemctl status mailflow        journalctl -u mailflow
  MailFlow listens on 127.0.0.1:8025 (plain HTTP, loopback only).
  CLI commands as the service user, with its key:
      sudo /opt/mailflow/bin/mailflowctl --help

Uninstall
  sudo ./install.sh uninstall            keeps /var/lib/mailflow and /etc/mailflow
  sudo ./install.sh uninstall --purge    deletes them too (data and key: irreversible)

Run ./install.sh --help for all options.
EOF

if [[ "$CHECK" -eq 1 ]]; then
    step "Check: offline install into a throw-away virtualenv"
    "$PYTHON" -m venv "$tmp/venv"
    # Only the bundle's wheels: no pip configuration, no index.
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS="" PIP_EXTRA_INDEX_URL="" PIP_CONSTRAINT="" \
        "$tmp/venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
        --no-index --find-links "$BUNDLE/wheels" mailflow \
        || die "the wheels do not install offline"
    "$tmp/venv/bin/mailflow" --help >/dev/null || die "mailflow --help fails in the test install"
fi

step "SHA256SUMS"
(cd -- "$BUNDLE" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) >"$OUT/.$NAME.sums"
mv -f -- "$OUT/.$NAME.sums" "$BUNDLE/SHA256SUMS"

if [[ "$MAKE_TAR" -eq 1 ]]; then
    step "Tarball $OUT/$NAME.tar.gz"
    tar -C "$OUT" --owner=0 --group=0 --numeric-owner --sort=name -czf "$OUT/$NAME.tar.gz" "$NAME"
fi
step "Done. On the target: tar xzf $NAME.tar.gz && cd $NAME && sudo ./install.sh install --wheels ./wheels"
