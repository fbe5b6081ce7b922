#!/usr/bin/env bash
# Starts the whole Ferrodactyl stack on this machine and prints how to reach it:
#   * panel-api on its embedded PostgreSQL (Debian's `postgresql`, installed if
#     missing), seeded with an admin, a location, a node for the local wings, the
#     generic egg, and a fresh admin application key;
#   * a wings node attached to it (needs the Docker engine);
#   * the Discord bot, when DISCORD_TOKEN is set.
# Everything runs in the foreground; Ctrl-C stops it all. State lives in .data/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DATA="${FERRO_DATA:-$ROOT/.data}"
PANEL_BIND="${PANEL_BIND:-127.0.0.1:8000}"
export WINGS_PORT="${WINGS_PORT:-8080}"
export WINGS_SFTP_PORT="${WINGS_SFTP_PORT:-2022}"
export WINGS_DATA="${WINGS_DATA:-$DATA/wings/volumes}"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "dev-up: installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

packages=(-p panel-api -p wings)
[ -n "${DISCORD_TOKEN:-}" ] && packages+=(-p bot)
echo "dev-up: building ${packages[*]} (release)"
cargo build --release -q "${packages[@]}"

mkdir -p "$DATA/panel" "$DATA/wings"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

docker_ok=1
if ! docker info >/dev/null 2>&1; then
  docker_ok=0
  echo "dev-up: the Docker engine is not reachable; starting the panel without a wings node"
else
  sh scripts/test-image.sh   # the generic egg's image (built locally from busybox-static)
fi

PANEL_DATA_DIR="$DATA/panel" PANEL_BIND="$PANEL_BIND" APP_URL="${APP_URL:-http://$PANEL_BIND}" \
  "$ROOT/target/release/panel-api" serve --quickstart --credentials-file "$DATA/quickstart.env" \
  > "$DATA/panel.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://$PANEL_BIND/openapi.json" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "dev-up: panel-api exited:"; tail -20 "$DATA/panel.log"; exit 1; }
  sleep 0.2
done
# shellcheck disable=SC1091
. "$DATA/quickstart.env"

if [ "$docker_ok" = 1 ]; then
  "$ROOT/target/release/wings" --config "$DATA/wings/config.yml" configure \
    --panel-url "$PANEL_URL" --token "$PANEL_APPLICATION_KEY" --node "$PANEL_NODE_ID" --override >/dev/null
  "$ROOT/target/release/wings" --config "$DATA/wings/config.yml" > "$DATA/wings.log" 2>&1 &
  pids+=($!)
fi

if [ -n "${DISCORD_TOKEN:-}" ]; then
  # The bot refuses to start without a Fernet key; the quick start makes one once.
  if [ -z "${BOT_FERNET_KEY:-}" ]; then
    [ -s "$DATA/bot.key" ] || (umask 077; "$ROOT/target/release/bot" gen-key > "$DATA/bot.key")
    BOT_FERNET_KEY="$(cat "$DATA/bot.key")"
  fi
  BOT_FERNET_KEY="$BOT_FERNET_KEY" BOT_DATA_DIR="${BOT_DATA_DIR:-$DATA/bot}" \
    "$ROOT/target/release/bot" > "$DATA/bot.log" 2>&1 &
  pids+=($!)
fi

cat <<TXT

Ferrodactyl is up.
  Panel API:        $PANEL_URL   (OpenAPI document: $PANEL_URL/openapi.json)
  Application key:  $PANEL_APPLICATION_KEY
  Admin login:      admin${PANEL_ADMIN_PASSWORD:+ / $PANEL_ADMIN_PASSWORD}
  Wings node:       $( [ "$docker_ok" = 1 ] && echo "http://127.0.0.1:$WINGS_PORT (node $PANEL_NODE_ID)" || echo "not started (no Docker)" )
  Discord bot:      $( [ -n "${DISCORD_TOKEN:-}" ] && echo running || echo "not started (set DISCORD_TOKEN)" )
  Logs:             $DATA/*.log

Try: curl -H "Authorization: Bearer $PANEL_APPLICATION_KEY" -H "Accept: application/json" $PANEL_URL/api/application/users
Ctrl-C stops everything.
TXT
wait -n "${pids[@]}" || true
echo "dev-up: a component exited; stopping the rest (see $DATA/*.log)"
