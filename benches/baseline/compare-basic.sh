#!/usr/bin/env bash
# Runs eddy's minimal CLI workers (`eddy pipe`, `eddy count`, `eddy join`) and their Kafka
# Streams twins (`baseline.jar pipe|count|join`) on the same backlog, one worker process at a
# time on the same broker, and prints a markdown table.
#
#   benches/baseline/compare-basic.sh [--bootstrap HOST:PORT] [--records N] [--rounds R]
#                                     [--workload pipe|count|join|all] [--timeout-s S]
#                                     [--ks-java-opts "OPTS"] [--ks-set KEY=VALUE]... [--build]
#
# For each workload and round: fresh 4-partition input topics holding N input records written
# beforehand by `baseline.jar load`, the shapes of eddy's own benches:
#   pipe   N records, key key-i, a 100-byte value `value-i-xxx...`  -> upper-cased, N outputs
#   count  N records over 10 000 keys (key-(i mod 10000)), value x  -> a count per key
#   join   N/2 records per side over 10 000 keys, record i of each side at the same timestamp
#          (values l<i>, r<i>), joined within 1 s (grace 1 s); a key's next record is 10 s
#          later, so record i pairs with record i only: N/2 outputs `l<i>+r<i>`
# Timestamps are 1 ms apart and end at the time of writing. Then each engine in turn (eddy
# first in odd rounds, Kafka Streams first in even ones) runs as ONE worker process with a
# fresh application id, state directory and output topic (`message.timestamp.type=
# LogAppendTime`, so every output carries the time the broker appended it). `baseline.jar
# measure` samples the worker's CPU time every 50 ms, waits until the worker's committed
# offsets reach the end of the input, takes its peak RSS (VmHWM), then reads the output and
# checks it: every record once with its value upper-cased; every key's last count equal to its
# number of records; every pair l<i>+r<i> once and nothing else.
#
# Throughput is input records per second over a window that starts at the last output within
# 0.5 s (half the 1 s commit interval) of the first one and ends at the output that completed
# the result (the last new value, the last key to reach its final count, the last pair); the
# input records that the outputs up to its start account for are not counted. So the worker's
# start-up (JVM, group join, stores) is left out, and so is what a first output does not show:
# Kafka Streams writes a cached count only at commit, its first burst (which the window's start
# ends) also holding what was counted before it, and eddy's producer holds back its first
# outputs while it fetches the output topic's metadata. "total s" is from the worker's process
# start to the last output. CPU is utime+stime over the window per 100 000 input records
# ("CPU s": the whole process's, start-up included); RSS is VmHWM at the end.
#
# --bootstrap    the broker to use; default: scripts/kafka/start.sh (and stop.sh at the end
#                if this script started it)
# --records      input records per run (default 1000000; join: half per side)
# --rounds       rounds (default 3)
# --workload     pipe, count, join or all (default all)
# --timeout-s    how long a worker may take (default 600)
# --ks-java-opts JVM options for the Kafka Streams worker (default: none)
# --ks-set       a Kafka Streams or client property for its worker (repeatable), such as
#                statestore.cache.max.bytes=0 (count then writes every update, as eddy's does)
# --eddy-set     a librdkafka property for eddy's worker (repeatable; `consumer.` or
#                `producer.` for one client), for experiments
# --build        rebuild eddy and baseline.jar even if they exist
#
# Needs: java 17+, maven (for the jar), cargo (for eddy, built into $CARGO_TARGET_DIR, default
# ~/.cache/eddy/target, if missing). The topics of a run are deleted after it, the consumer
# groups at the end (the last Kafka Streams groups stay until their 45 s session expires).
# Exit status 1 if a run did not complete or its output was wrong.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jar="$here/target/baseline.jar"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
eddy_bin="$CARGO_TARGET_DIR/release/eddy"

bootstrap=""
records=1000000
rounds=3
workloads="all"
timeout_s=600
ks_java_opts=""
ks_sets=()
eddy_sets=()
build=0
partitions=4
keys=10000
window_ms=1000

name=compare-basic
# shellcheck source=common.sh
source "$here/common.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --bootstrap) bootstrap="${2:?--bootstrap needs a value}"; shift 2 ;;
    --bootstrap=*) bootstrap="${1#*=}"; shift ;;
    --records) records="${2:?--records needs a value}"; shift 2 ;;
    --records=*) records="${1#*=}"; shift ;;
    --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --workload) workloads="${2:?--workload needs a value}"; shift 2 ;;
    --workload=*) workloads="${1#*=}"; shift ;;
    --timeout-s) timeout_s="${2:?--timeout-s needs a value}"; shift 2 ;;
    --timeout-s=*) timeout_s="${1#*=}"; shift ;;
    --ks-java-opts) ks_java_opts="${2?--ks-java-opts needs a value}"; shift 2 ;;
    --ks-java-opts=*) ks_java_opts="${1#*=}"; shift ;;
    --eddy-set) eddy_sets+=(--set "${2:?--eddy-set needs a value}"); shift 2 ;;
    --ks-set) ks_sets+=(--set "${2:?--ks-set needs a value}"); shift 2 ;;
    --ks-set=*) ks_sets+=(--set "${1#*=}"); shift ;;
    --build) build=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$records" =~ ^[1-9][0-9]*$ ]] || die "--records takes a positive number"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds takes a positive number"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die "--timeout-s takes a positive number"
case "$workloads" in
  all) workloads="pipe count join" ;;
  pipe|count|join) ;;
  *) die "--workload is pipe, count, join or all" ;;
esac
if [[ "$workloads" == *join* ]] && ((records % 2)); then die "--records must be even for join"; fi
for tool in java awk date getconf; do command -v "$tool" >/dev/null || die "$tool not found"; done
clk_tck="$(getconf CLK_TCK)"

# ---- binaries -------------------------------------------------------------------------
if [[ $build -eq 1 || ! -x "$eddy_bin" ]]; then
  log "building eddy (release, into $CARGO_TARGET_DIR)"
  [[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
  (cd "$repo" && cargo build --release --quiet --bin eddy)
fi
if [[ $build -eq 1 || ! -f "$jar" || -n "$(find "$here/src" "$here/pom.xml" -newer "$jar" -print -quit)" ]]; then
  log "building $jar"
  mvn -q -B -f "$here/pom.xml" package
fi

# ---- work directory, cleanup ------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/eddy-compare-basic.XXXXXX")"
tag="cmpb$(date +%s)x$$"          # in every topic and group name of this run
worker_pid=""
measure_pid=""

tool() { # the jar's helper commands, small JVM
  java -Xmx512m -XX:+UseSerialGC -jar "$jar" "$@"
}

stop_pid() { # pid: SIGTERM, then SIGKILL after 60 s
  local pid="$1" waited=0
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [[ $waited -lt 600 ]]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still running 60 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$measure_pid"
  stop_pid "$worker_pid"
  if [[ -n "$bootstrap" && -f "$jar" ]]; then
    log "deleting this run's topics and consumer groups (*$tag*)"
    topics --delete ".*$tag.*" --delete-groups ".*$tag.*" >&2 ||
      log "could not delete every topic or group of *$tag*"
  fi
  rm -rf "$work"
  if [[ $started_broker -eq 1 ]]; then
    log "stopping the broker this script started"
    "$repo/scripts/kafka/stop.sh" --nodes 1 >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- broker -----------------------------------------------------------------------------
local_broker
log "broker $bootstrap; $records input records per run, $rounds round(s) of: $workloads; work dir $work"

# ---- one engine, one workload, one round ---------------------------------------------------
# Results by "workload,round,engine,what".
declare -A res=()

inputs_of() { # workload base -> the input topics, comma-separated
  if [[ "$1" == join ]]; then echo "$2-left,$2-right"; else echo "$2-in"; fi
}

run_one() { # workload round engine base
  local workload="$1" round="$2" engine="$3" base="$4"
  local app="$base-$engine" dir="$work/$base-$engine" n="$records" per="$records"
  local out_topic="$base-$engine-out" inputs
  [[ "$workload" == join ]] && per=$((records / 2))
  inputs="$(inputs_of "$workload" "$base")"
  mkdir -p "$dir/state"
  topics --create "$out_topic" --partitions "$partitions" \
    --config message.timestamp.type=LogAppendTime

  tool measure --bootstrap "$bootstrap" --workload "$workload" --group "$app" --inputs "$inputs" \
    --output "$out_topic" --records "$per" --keys "$keys" --timeout-s "$timeout_s" \
    --pid-file "$dir/pid" >"$dir/measure.out" 2>"$dir/measure.log" &
  measure_pid=$!
  until grep -q '^listening' "$dir/measure.out" 2>/dev/null; do
    kill -0 "$measure_pid" 2>/dev/null || { cat "$dir/measure.log" >&2; die "measure failed to start"; }
    sleep 0.05
  done

  local args=() start_ms
  res[$workload,$round,$engine,load]="$(cut -d' ' -f1 /proc/loadavg)"
  if [[ "$engine" == eddy ]]; then
    case "$workload" in
      pipe) args=(pipe --input "$base-in" --output "$out_topic") ;;
      count) args=(count --input "$base-in" --output "$out_topic" --state-dir "$dir/state") ;;
      join) args=(join --left "$base-left" --right "$base-right" --output "$out_topic"
                  --window-ms "$window_ms" --state-dir "$dir/state") ;;
    esac
    start_ms="$(date +%s%3N)"
    # pipe has no --state-dir: TMPDIR keeps whatever it writes in the run's directory.
    TMPDIR="$dir/state" "$eddy_bin" "${args[@]}" --app-id "$app" --brokers "$bootstrap" ${eddy_sets[@]+"${eddy_sets[@]}"} >"$dir/worker.log" 2>&1 &
  else
    case "$workload" in
      pipe) args=(pipe --input "$base-in" --output "$out_topic") ;;
      count) args=(count --input "$base-in" --output "$out_topic") ;;
      join) args=(join --left "$base-left" --right "$base-right" --output "$out_topic" --window-ms "$window_ms") ;;
    esac
    start_ms="$(date +%s%3N)"
    # shellcheck disable=SC2086  # the options are words
    java $ks_java_opts -jar "$jar" "${args[@]}" --app-id "$app" --bootstrap "$bootstrap" \
      --state-dir "$dir/state" ${ks_sets[@]+"${ks_sets[@]}"} >"$dir/worker.log" 2>&1 &
  fi
  worker_pid=$!
  echo "$worker_pid $start_ms" >"$dir/pid"

  wait "$measure_pid" || true
  measure_pid=""
  stop_pid "$worker_pid"
  worker_pid=""

  local m="$dir/measure.out" key="$workload,$round,$engine"
  get() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$m"; }
  res[$key,check]="$(get check)"
  res[$key,outputs]="$(get outputs)"
  res[$key,ok]="$(get ok)"
  if [[ "${res[$key,ok]}" == 1 ]]; then
    local first last start first_inputs t_first t_last t_done hwm
    first="$(get from_ms)"; last="$(get last_ms)"; start="$(get start_ms)"; first_inputs="$(get from_inputs)"
    t_first="$(get ticks_from)"; t_last="$(get ticks_last)"; t_done="$(get ticks_done)"; hwm="$(get hwm_kb)"
    if [[ "$last" -gt "$first" ]]; then
      res[$key,rate]="$(awk -v n="$n" -v f="$first_inputs" -v a="$first" -v b="$last" \
        'BEGIN { printf "%.0f", (n - f) * 1000 / (b - a) }')"
      res[$key,secs]="$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
      res[$key,cpu]="$(awk -v n="$n" -v f="$first_inputs" -v a="$t_first" -v b="$t_last" -v t="$clk_tck" \
        'BEGIN { printf "%.1f", (b - a) * 1000 / t * 100000 / (n - f) }')"
    fi # else the run ended before its window began (small runs): no rate
    res[$key,total]="$(awk -v a="$start" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
    res[$key,cpu_total]="$(awk -v a="$t_done" -v t="$clk_tck" 'BEGIN { printf "%.2f", a / t }')"
    res[$key,rss]="$(awk -v k="$hwm" 'BEGIN { printf "%.0f", k / 1024 }')"
    res[$key,first]="$first_inputs"
  else
    log "$workload round $round, $engine: FAILED ($(get status)): ${res[$key,check]}"
    tail -n 20 "$dir/worker.log" >&2 || true
    cat "$dir/measure.log" >&2 || true
  fi
  log "$workload round $round, $engine: ${res[$key,rate]:-?} records/s (${res[$key,secs]:-?} s; ${res[$key,total]:-?} s from start), CPU ${res[$key,cpu]:-?} ms/100k (${res[$key,cpu_total]:-?} s in all), peak RSS ${res[$key,rss]:-?} MiB, load average ${res[$key,load]} before; ${res[$key,outputs]:-?} outputs (${res[$key,first]:-?} inputs before the window): ${res[$key,check]}"

  topics --delete "$app.*" 2>"$dir/delete.log" ||
    log "could not delete the topics of $app: $(cat "$dir/delete.log")"
  rm -rf "$dir"
}

# ---- rounds ----------------------------------------------------------------------------------
for workload in $workloads; do
  for ((r = 1; r <= rounds; r++)); do
    base="$tag-$workload-r$r"
    inputs="$(inputs_of "$workload" "$base")"
    log "$workload round $r: writing the input ($inputs)"
    topics --create "$inputs" --partitions "$partitions"
    if [[ "$workload" == join ]]; then
      tool load --bootstrap "$bootstrap" --workload join --left "$base-left" --right "$base-right" \
        --records $((records / 2)) --keys "$keys"
    else
      tool load --bootstrap "$bootstrap" --workload "$workload" --topic "$base-in" --records "$records" --keys "$keys"
    fi
    if ((r % 2 == 1)); then order=(eddy kstreams); else order=(kstreams eddy); fi
    for engine in "${order[@]}"; do run_one "$workload" "$r" "$engine" "$base"; done
    topics --delete "$base-(in|left|right)"
  done
done

# ---- table -------------------------------------------------------------------------------------
failed=0
echo
echo "## eddy vs Kafka Streams 4.3.1: pipe, count, join"
echo
echo "$records input records per run (join: $((records / 2)) per side), $partitions partitions, one worker"
echo "process with one stream thread per engine, broker $bootstrap, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)."
echo "records/s: input records over the window from the last output within 0.5 s of the first to the output"
echo "that completed the result (less those the outputs before it account for); total s: from the process start;"
echo "CPU: utime+stime over that window per 100 000 input records; CPU s: the whole process; RSS: VmHWM;"
echo "load: the 1-minute load average before the worker started (other work shares the machine)."
[[ ${#ks_sets[@]} -eq 0 && -z "$ks_java_opts" ]] || echo "Kafka Streams worker options: $ks_java_opts ${ks_sets[*]+${ks_sets[*]}}"
echo
echo "| workload | round | engine | records/s | window s | total s | CPU ms/100k | CPU s | peak RSS MiB | outputs | load | check |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for workload in $workloads; do
  for ((r = 1; r <= rounds; r++)); do
    for engine in eddy kstreams; do
      k="$workload,$r,$engine"
      mark=""
      [[ "${res[$k,ok]:-}" == 1 ]] || { mark="FAILED: "; failed=1; }
      echo "| $workload | $r | $engine | ${res[$k,rate]:--} | ${res[$k,secs]:--} | ${res[$k,total]:--} | ${res[$k,cpu]:--} | ${res[$k,cpu_total]:--} | ${res[$k,rss]:--} | ${res[$k,outputs]:--} | ${res[$k,load]:--} | $mark${res[$k,check]:-} |"
    done
  done
done
echo
echo "| workload | engine | median records/s | median total s | median CPU ms/100k | median peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|"
declare -A med=()
for workload in $workloads; do
  for engine in eddy kstreams; do
    for m in rate total cpu rss; do
      vals=()
      for ((r = 1; r <= rounds; r++)); do vals+=("${res[$workload,$r,$engine,$m]:-}"); done
      med[$workload,$engine,$m]="$(median %s "${vals[@]}")"
    done
    echo "| $workload | $engine | ${med[$workload,$engine,rate]} | ${med[$workload,$engine,total]} | ${med[$workload,$engine,cpu]} | ${med[$workload,$engine,rss]} |"
  done
done
echo
echo "| workload | throughput eddy / KS | total time KS / eddy | CPU per record KS / eddy | peak RSS KS / eddy | outputs equal |"
echo "|---|---:|---:|---:|---:|---|"
for workload in $workloads; do
  # Every run's check must hold, and give the same summary for both engines in every round.
  same=yes
  for ((r = 1; r <= rounds; r++)); do
    [[ "${res[$workload,$r,eddy,ok]:-}" == 1 && "${res[$workload,$r,kstreams,ok]:-}" == 1 &&
       "${res[$workload,$r,eddy,check]:-}" == "${res[$workload,$r,kstreams,check]:-}" ]] || same=NO
  done
  [[ $same == yes ]] || failed=1
  echo "| $workload | $(ratio "${med[$workload,eddy,rate]}" "${med[$workload,kstreams,rate]}") | $(ratio "${med[$workload,kstreams,total]}" "${med[$workload,eddy,total]}") | $(ratio "${med[$workload,kstreams,cpu]}" "${med[$workload,eddy,cpu]}") | $(ratio "${med[$workload,kstreams,rss]}" "${med[$workload,eddy,rss]}") | $same |"
done
[[ $failed -eq 0 ]] || { log "some checks failed"; exit 1; }
