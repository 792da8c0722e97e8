# Shared by compare.sh and compare-basic.sh (sourced): logging, the usage text, medians and
# ratios, topic admin through baseline.jar, and the local broker. The sourcing script sets
# `name` (its log prefix), `repo`, `jar` and `bootstrap` first.

log() { printf '[%s] %s\n' "$name" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$name" "$*" >&2; exit 1; }
# The script's leading comment block, without the `#`s.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

median() { # printf-format numbers... -> median ("-" if none)
  local fmt="$1"
  shift
  printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g |
    awk -v fmt="$fmt\n" '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf fmt, v[(NR + 1) / 2]; else printf fmt, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }

topics() { # baseline.jar's topic admin (--create/--delete/--delete-groups), small JVM
  java -Xmx512m -XX:+UseSerialGC -jar "$jar" topics --bootstrap "$bootstrap" "$@"
}

# Unless --bootstrap was given: a single-node broker on 127.0.0.1 (EDDY_KAFKA_PORT, 19092),
# started by scripts/kafka/start.sh if none answers there (started_broker=1: stop it at the end).
started_broker=0
local_broker() {
  [[ -z "$bootstrap" ]] || return 0
  local port="${EDDY_KAFKA_PORT:-19092}"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "a broker already answers on 127.0.0.1:$port: using it (and leaving it running)"
  else
    started_broker=1
  fi
  bootstrap="$("$repo/scripts/kafka/start.sh" --nodes 1 | tail -n1)"
}
