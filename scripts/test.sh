#!/usr/bin/env bash
# Runs every test of the workspace against real components:
#   * PostgreSQL (Debian's `postgresql`): one private cluster for the whole run,
#     shared by the tests through FERRO_TEST_PG_URL (each test gets its own database);
#   * the Docker engine, with the locally built busybox image (scripts/test-image.sh);
#   * OpenSSH's client (Debian's `openssh-client`) as the SFTP peer;
#   * MariaDB (Debian's `mariadb-server`) as the database host for server databases;
#   * moto's S3 server (PyPI `moto[server]`) as the S3 disk for backups.
# Installs what is missing from Debian's packages; fails loudly when something
# cannot be had (tests never skip themselves into a green run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

need_apt=()
command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ] || \
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v sftp >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ] || need_apt+=(mariadb-server)
command -v moto_server >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || \
  python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
if ! command -v moto_server >/dev/null 2>&1; then
  echo "test.sh: installing moto[server] from PyPI (the S3 server of the backup tests)"
  python3 -m pip install --quiet 'moto[server]' 2>/dev/null || \
    python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi

# The container image the wings tests run.
sh scripts/test-image.sh

# One PostgreSQL cluster for the run, stopped on exit.
PGDIR="$(mktemp -d /tmp/ferro-ci-pg.XXXXXX)"
cargo build -q -p ferrodactyl-tests --bin test-pg
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/test-pg" "$PGDIR" > "$PGDIR/url" &
PG_PID=$!
cleanup() { kill "$PG_PID" 2>/dev/null || true; wait "$PG_PID" 2>/dev/null || true; rm -rf "$PGDIR"; }
trap cleanup EXIT
for _ in $(seq 1 300); do [ -s "$PGDIR/url" ] && break; kill -0 "$PG_PID" 2>/dev/null || { echo "test.sh: PostgreSQL did not start"; exit 1; }; sleep 0.1; done
FERRO_TEST_PG_URL="$(head -1 "$PGDIR/url")"
export FERRO_TEST_PG_URL

cargo fmt --all -- --check
cargo clippy -q --workspace --all-targets -- -D warnings
cargo nextest run --workspace --no-fail-fast --test-threads "${TEST_THREADS:-4}"
