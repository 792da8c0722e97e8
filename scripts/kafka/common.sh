# shellcheck shell=bash
# Shared settings/helpers for scripts/kafka/*.sh. Sourced, not executed.
#
# Environment knobs (all optional):
#   EDDY_CACHE            cache root                      (default ~/.cache/eddy)
#   EDDY_KAFKA_VERSION    Kafka version to fetch/run      (default 4.3.1)
#   EDDY_KAFKA_HOME       where libs/ go                  (default $EDDY_CACHE/kafka-$EDDY_KAFKA_VERSION)
#   EDDY_KAFKA_DATA       root of per-cluster data dirs   (default $EDDY_CACHE/kafka-data)
#   EDDY_KAFKA_PORT       first broker port               (default 19092; node i uses PORT+2(i-1),
#                                                          its controller listener that +1)
#   EDDY_KAFKA_SECURED_PORT   first broker port of the secured mode (default 19192)
#   EDDY_KAFKA_START_TIMEOUT  seconds start.sh waits      (default 60)

# shellcheck disable=SC2034  # used by the scripts that source this file
KAFKA_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EDDY_CACHE="${EDDY_CACHE:-$HOME/.cache/eddy}"
KAFKA_VERSION="${EDDY_KAFKA_VERSION:-4.3.1}"
KAFKA_HOME="${EDDY_KAFKA_HOME:-$EDDY_CACHE/kafka-$KAFKA_VERSION}"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA_ROOT="${EDDY_KAFKA_DATA:-$EDDY_CACHE/kafka-data}"
KAFKA_BASE_PORT="${EDDY_KAFKA_PORT:-19092}"
KAFKA_HOST=127.0.0.1
# "-secured" for the secured mode (start.sh/stop.sh --secured): its own folder and ports.
KAFKA_FLAVOR=""

# Switches the helpers below to the secured mode's cluster.
use_secured() {
  KAFKA_FLAVOR="-secured"
  KAFKA_BASE_PORT="${EDDY_KAFKA_SECURED_PORT:-19192}"
}

klog() { printf '[kafka] %s\n' "$*" >&2; }
kdie() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }

# Parse "--nodes N" / "--nodes=N" / "-n N"; validates 1|3.
check_nodes() {
  case "$1" in 1|3) ;; *) kdie "--nodes must be 1 or 3 (got '$1')" ;; esac
}

cluster_dir()     { echo "$KAFKA_DATA_ROOT/${1}node$KAFKA_FLAVOR"; }  # $1 = node count
node_dir()        { echo "$(cluster_dir "$1")/node-$2"; }    # $1 = node count, $2 = node id
broker_port()     { echo $((KAFKA_BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $(( $(broker_port "$1") + 1 )); }

bootstrap_servers() { # $1 = node count
  local i out=""
  for ((i = 1; i <= $1; i++)); do out+="${out:+,}$KAFKA_HOST:$(broker_port "$i")"; done
  echo "$out"
}

libs_ready() { [[ -f "$KAFKA_HOME/.fetched" && -n "$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar")" ]]; }

# Is the pid in pidfile a live kafka.Kafka process? Prints the pid if so.
live_pid() {
  local pidfile="$1" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

# Running (not just a zombie waiting to be reaped) process?
pid_running() {
  local st
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# A Kafka-style Uuid (16 random bytes, base64url, no padding) without starting a JVM;
# like Uuid.randomUuid(), never one starting with '-'.
kafka_uuid() {
  local u
  while :; do
    u="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ ${#u} -eq 22 && "$u" != -* && "$u" != AAAAAAAAAAAAAAAAAAAAA* ]] && { echo "$u"; return; }
  done
}

# Number of live nodes of a cluster (by pid files).
live_nodes() {
  local n="$1" i c=0
  for ((i = 1; i <= n; i++)); do
    live_pid "$(node_dir "$n" "$i")/kafka.pid" >/dev/null && c=$((c + 1))
  done
  echo "$c"
}

port_open() { (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null; }

# log4j2 config for CLI tools: warnings and errors only, to stderr.
tools_log4j_conf() {
  local f="$KAFKA_HOME/config/tools-log4j2.xml"
  if [[ ! -f "$f" ]]; then
    mkdir -p "$(dirname "$f")"
    cat >"$f" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
XML
  fi
  echo "$f"
}

# Run a Kafka CLI main class with the fetched jars: kafka_tool <main-class> [args...]
# (KAFKA_TOOL_TIMEOUT=<secs> bounds its run time.)
kafka_tool() {
  local conf
  local pre=()
  conf="$(tools_log4j_conf)"
  [[ -n "${KAFKA_TOOL_TIMEOUT:-}" ]] && pre=(timeout "$KAFKA_TOOL_TIMEOUT")
  "${pre[@]}" java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$conf" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# The bootstrap servers of the cluster the tools talk to: $EDDY_KAFKA_BOOTSTRAP
# if set, else the running cluster started by start.sh (3-node if it is up,
# else 1-node).
running_bootstrap() {
  if [[ -n "${EDDY_KAFKA_BOOTSTRAP:-}" ]]; then
    echo "$EDDY_KAFKA_BOOTSTRAP"
  elif [[ "$(live_nodes 3)" -gt 0 ]]; then
    bootstrap_servers 3
  elif [[ "$(live_nodes 1)" -gt 0 ]]; then
    bootstrap_servers 1
  else
    kdie "no cluster running (start one with scripts/kafka/start.sh, or set EDDY_KAFKA_BOOTSTRAP)"
  fi
}
