#!/usr/bin/env bash
# Debian packages the test suite needs: a real Dovecot (IMAP + LMTP), nginx (the TLS front),
# Chromium (browser tests), systemd-analyze (unit hardening score) and shellcheck (installer).
# Installs what is missing when run as root; otherwise says how.
set -euo pipefail

declare -A need=(
  [/usr/sbin/dovecot]=dovecot-imapd
  [/usr/lib/dovecot/lmtp]=dovecot-lmtpd
  [/usr/sbin/nginx]=nginx
  [/usr/bin/chromium]=chromium
  [/usr/bin/openssl]=openssl
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/shellcheck]=shellcheck
)
missing=()
for path in "${!need[@]}"; do
  [ -e "$path" ] || missing+=("${need[$path]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need these Debian packages: ${missing[*]}" >&2
  echo "Install them once with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
# Debian starts the packaged services; the tests run their own instances on loopback instead.
for svc in dovecot nginx; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
