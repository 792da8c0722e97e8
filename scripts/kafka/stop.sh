#!/usr/bin/env bash
# Stop the Kafka cluster(s) started by scripts/kafka/start.sh.
#
#   scripts/kafka/stop.sh [--nodes 1|3 | --secured] [--keep-data] [--kill]
#
# Without --nodes or --secured, stops every cluster (1- and 3-node, and the secured one). SIGTERM to each broker, waits
# up to $EDDY_KAFKA_STOP_TIMEOUT (default 30) s, then SIGKILL. Then wipes the cluster's
# data dir so the next start is fresh, unless --keep-data. 3-node: all nodes get SIGTERM
# together; once no controller majority is left, stragglers (a broker waiting forever for
# its controlled-shutdown ack) get SIGKILL after $EDDY_KAFKA_NOQUORUM_GRACE (default 5) s.
# --kill: SIGKILL at once (fast: a clean 3-node shutdown takes ~7 s; data is wiped anyway).
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

which_nodes=(1 3 1-secured)
keep=0
sig=TERM
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes|-n) [[ $# -ge 2 ]] || kdie "--nodes needs a value"; check_nodes "$2"; which_nodes=("$2"); shift 2 ;;
    --nodes=*) check_nodes "${1#*=}"; which_nodes=("${1#*=}"); shift ;;
    --secured) which_nodes=(1-secured); shift ;;
    --all) which_nodes=(1 3 1-secured); shift ;;
    --keep-data) keep=1; shift ;;
    --kill) sig=KILL; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) kdie "unknown argument: $1" ;;
  esac
done
stop_timeout="${EDDY_KAFKA_STOP_TIMEOUT:-30}"

for which in "${which_nodes[@]}"; do
  n="${which%%-*}"
  KAFKA_FLAVOR=""
  [[ "$which" == *-secured ]] && KAFKA_FLAVOR="-secured"
  cdir="$(cluster_dir "$n")"
  [[ -d "$cdir" ]] || continue
  pids=()
  for ((i = 1; i <= n; i++)); do
    ndir="$(node_dir "$n" "$i")"
    if pid="$(live_pid "$ndir/kafka.pid")"; then pids+=("$pid"); fi
  done
  # Strays of this cluster without a (valid) pid file: match on our own config path only.
  while read -r pid; do
    [[ -n "$pid" ]] || continue
    [[ " ${pids[*]:-} " == *" $pid "* ]] || pids+=("$pid")
  done < <(pgrep -f "kafka\.Kafka $cdir/node-[0-9]+/server\.properties" || true)

  if [[ ${#pids[@]} -gt 0 ]]; then
    klog "stopping ${which}-node cluster (SIG$sig to pids ${pids[*]})"
    kill -"$sig" "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + stop_timeout))
    # Multi-node: once fewer than a majority of the controllers are left, a broker still
    # in controlled shutdown waits (minutes) for a quorum that can't come back; give the
    # survivors a short grace to finish on their own, then SIGKILL them.
    majority=$((n / 2 + 1))
    noquorum_grace="${EDDY_KAFKA_NOQUORUM_GRACE:-5}"
    noquorum_deadline=""
    while :; do
      alive=()
      for pid in "${pids[@]}"; do pid_running "$pid" && alive+=("$pid"); done
      [[ ${#alive[@]} -eq 0 ]] && break
      if [[ $n -gt 1 && ${#alive[@]} -lt $majority && -z "$noquorum_deadline" ]]; then
        noquorum_deadline=$((SECONDS + noquorum_grace))
      fi
      if [[ $SECONDS -ge $deadline || ( -n "$noquorum_deadline" && $SECONDS -ge $noquorum_deadline ) ]]; then
        if [[ $SECONDS -ge $deadline ]]; then
          klog "still alive after ${stop_timeout}s, SIGKILL: ${alive[*]}"
        else
          klog "controller quorum gone, SIGKILL the rest: ${alive[*]}"
        fi
        kill -KILL "${alive[@]}" 2>/dev/null || true
        for pid in "${alive[@]}"; do
          for _ in $(seq 50); do pid_running "$pid" || break; sleep 0.1; done
        done
        break
      fi
      sleep 0.2
    done
  fi
  rm -f "$cdir"/node-*/kafka.pid
  if [[ $keep -eq 0 ]]; then
    rm -rf "$cdir"
    klog "${which}-node cluster stopped, data wiped"
  else
    klog "${which}-node cluster stopped, data kept in $cdir"
  fi
done
