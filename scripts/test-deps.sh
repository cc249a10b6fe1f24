#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine, and nothing
# that is already there: a C compiler for the race detector, the real
# OpenSSH server and clients the SSH gateway is tested against, the real
# PostgreSQL server and psql the PostgreSQL gateway is tested against, tmux
# and asciinema.
set -euo pipefail

if ! command -v go >/dev/null 2>&1; then
  echo "test-deps: Go 1.26 or newer is required (https://go.dev/dl/)" >&2
  exit 1
fi

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
for c in ssh scp sftp ssh-keygen; do
  command -v "$c" >/dev/null 2>&1 || { missing+=(openssh-client); break; }
done
# internal/pgtest runs the newest /usr/lib/postgresql/*/bin/postgres.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# tmux gives the real ssh client a real terminal to resize; asciinema
# checks that exported recordings play.
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v asciinema >/dev/null 2>&1 || missing+=(asciinema)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
