#!/usr/bin/env bash
# Runs the order pipeline (payment, inventory, order saga) on eddy and on the Kafka Streams
# baseline, one after the other on the same broker, and prints a table. Both payment services
# charge each order through a fresh `eddy-orders gateway` (answering at once): eddy with its
# call operator, Kafka Streams with a synchronous call per record, as its users write it.
#
#   benches/baseline/compare.sh [--bootstrap HOST:PORT] [--orders N] [--rounds R]
#                               [--timeout-s S] [--ks-java-opts "OPTS"] [--linger-ms MS] [--build]
#                               [--loads 10,50,90] [--load-secs 10] [--warmup-secs 3]
#
# Each round runs both engines, eddy first in odd rounds and Kafka Streams first in even
# ones. For each engine and round: fresh 4-partition topics (orders, payments, inventory,
# stock, order-outcomes) under a fresh suffix, 100 products of 1 000 000 units on `stock`,
# the three services as three processes (state under a temporary directory), a wait until
# they are ready (eddy: /ready and assigned partitions; Kafka Streams: its "running" line),
# then a burst of N orders from `baseline.jar generate` (seed 1: the same orders every
# time). A reader of `order-outcomes` takes the time at which the N-th order's outcome
# arrives, and the services' CPU time (/proc/<pid>/stat) and peak RSS (VmHWM) at that
# moment; it then reads on until 3 s pass without an outcome, to catch duplicates.
# Throughput is N over the time from the first order's timestamp (the wall clock when
# `generate` sent it) to that arrival. Then, for each load L of --loads, orders are paced at
# L % of the throughput this engine just reached (new order ids, the same services) for
# --warmup-secs (not counted) and --load-secs more, and a reader of `order-outcomes` reports p50/p99/max of each outcome's latency
# (its arrival minus its timestamp, which is its order's creation time on both engines).
#
# --warmup-secs  paced seconds before each load's measured ones, not counted (default 3): the
#                first seconds after a burst are the services' and the broker's catching up
# --bootstrap    the broker to use; default: scripts/kafka/start.sh (and stop.sh at the end
#                if this script started it)
# --orders       orders per burst (default 20000)
# --rounds       rounds (default 3)
# --timeout-s    how long to wait for all outcomes of a burst (default 600)
# --ks-java-opts JVM options for the three Kafka Streams services (default: none)
# --linger-ms    the producers' linger on both engines (default: each side's, 1 ms)
# --engines      which engines run (default eddy,kstreams; one alone for a diagnosis, whose
#                table then shows no ratio)
# --eddy-set     KEY=VALUE passed to each eddy service as --set (repeatable; experiments)
# --backlog      the burst is a backlog: the services are stopped (SIGSTOP) while the generator
#                writes it and continued (SIGCONT) after; throughput and CPU count from the
#                moment they continue. Without it, the services run during the burst, which then
#                competes for the machine with the generator's JVM (JIT compilation, Jackson)
#                and times its pace as well as theirs
# --keep         keep the work directory (services' logs, state) for a diagnosis
# --build        rebuild eddy-orders and baseline.jar even if they exist
# --loads        the paced loads, in % of each engine's burst throughput (default 10,50,90;
#                "" for none); the generator lingers as the engines' producers do
# --load-secs    how long each paced load lasts (default 10)
#
# Needs: java 17+ with javac, curl. eddy-orders comes from $CARGO_TARGET_DIR (default
# ~/.cache/eddy/target)/release, built if missing. Each run's topics are deleted after it, the
# consumer groups at the end. Exit status 1 if a burst did not complete, an order got no or
# more than one outcome, or the outcome kinds differ between the engines.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jar="$here/target/baseline.jar"
config_dir="$repo/examples/orders/config"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
# The key both pipelines hash customers' e-mail addresses with.
export EDDY_PII_KEY="${EDDY_PII_KEY:-a bench key for hashing e-mails}"
eddy_bin="$CARGO_TARGET_DIR/release/eddy-orders"

bootstrap=""
orders=20000
rounds=3
timeout_s=600
ks_java_opts=""
build=0
linger_set=()
gen_linger=1
loads="10,50,90"
load_secs=10
warmup_secs=3
partitions=4
products=100
stock_qty=1000000
quiet_ms=3000
engines=(eddy kstreams)
backlog=0
keep=0
eddy_sets=()

name=compare
# shellcheck source=common.sh
source "$here/common.sh"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --bootstrap) bootstrap="${2:?--bootstrap needs a value}"; shift 2 ;;
    --bootstrap=*) bootstrap="${1#*=}"; shift ;;
    --orders) orders="${2:?--orders needs a value}"; shift 2 ;;
    --orders=*) orders="${1#*=}"; shift ;;
    --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --timeout-s) timeout_s="${2:?--timeout-s needs a value}"; shift 2 ;;
    --timeout-s=*) timeout_s="${1#*=}"; shift ;;
    --ks-java-opts) ks_java_opts="${2?--ks-java-opts needs a value}"; shift 2 ;;
    --ks-java-opts=*) ks_java_opts="${1#*=}"; shift ;;
    --linger-ms) linger_set=(--set "producer.linger.ms=${2:?--linger-ms needs a value}"); gen_linger="$2"; shift 2 ;;
    --loads) loads="${2?--loads needs a value}"; shift 2 ;;
    --loads=*) loads="${1#*=}"; shift ;;
    --load-secs) load_secs="${2:?--load-secs needs a value}"; shift 2 ;;
    --load-secs=*) load_secs="${1#*=}"; shift ;;
    --warmup-secs) warmup_secs="${2:?--warmup-secs needs a value}"; shift 2 ;;
    --warmup-secs=*) warmup_secs="${1#*=}"; shift ;;
    --engines) IFS=, read -r -a engines <<<"${2:?--engines needs a value}"; shift 2 ;;
    --eddy-set) eddy_sets+=(--set "${2:?--eddy-set needs a value}"); shift 2 ;;
    --backlog) backlog=1; shift ;;
    --keep) keep=1; shift ;;
    --build) build=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$orders" =~ ^[1-9][0-9]*$ ]] || die "--orders takes a positive number"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds takes a positive number"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die "--timeout-s takes a positive number"
[[ "$load_secs" =~ ^[1-9][0-9]*$ ]] || die "--load-secs takes a positive number"
[[ "$warmup_secs" =~ ^[0-9]+$ ]] || die "--warmup-secs takes a number"
[[ -z "$loads" || "$loads" =~ ^[1-9][0-9]?(,[1-9][0-9]?)*$ ]] || die "--loads takes percentages below 100, comma-separated"
IFS=, read -r -a load_list <<<"$loads"
for tool in java javac curl awk getconf; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
clk_tck="$(getconf CLK_TCK)"

# ---- binaries -------------------------------------------------------------------------
if [[ $build -eq 1 || ! -x "$eddy_bin" ]]; then
  log "building eddy-orders (release, into $CARGO_TARGET_DIR)"
  [[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
  (cd "$repo" && cargo build --release --quiet -p eddy-orders --bin eddy-orders)
fi
if [[ $build -eq 1 || ! -f "$jar" ]]; then
  log "building $jar"
  mvn -q -B -f "$here/pom.xml" package
fi

# ---- work directory, cleanup ------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/eddy-compare.XXXXXX")"
tag="cmp$(date +%s)x$$"          # in every topic and group name of this run
svc_pids=()
reader_pid=""
gateway_pid=""

stop_services() {
  local pid waited
  [[ ${#svc_pids[@]} -gt 0 ]] || return 0
  for pid in "${svc_pids[@]}"; do kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${svc_pids[@]}"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && [[ $waited -lt 600 ]]; do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still running 60 s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  svc_pids=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$reader_pid" ]]; then kill -TERM "$reader_pid" 2>/dev/null || true; wait "$reader_pid" 2>/dev/null || true; fi
  stop_services
  if [[ -n "$gateway_pid" ]]; then kill -TERM "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
  if [[ -n "$bootstrap" && -f "$jar" ]]; then
    log "deleting this run's topics and consumer groups (*$tag*)"
    topics --delete ".*$tag.*" --delete-groups ".*$tag.*" >&2 || log "could not delete every topic or group of *$tag*"
  fi
  if [[ $keep -eq 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
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
log "broker $bootstrap; $orders orders per burst, $rounds round(s); work dir $work"

# ---- helper: the outcome reader (Java, kafka-clients of baseline.jar) ----------------------
mkdir -p "$work/helper"
cat >"$work/helper/CompareHelper.java" <<'JAVA'
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/** compare.sh's helper: read one burst's outcomes. */
public class CompareHelper {
    public static void main(String[] a) throws Exception {
        switch (a[0]) {
            case "await" -> System.exit(await(a[1], a[2], a[3], Long.parseLong(a[4]), Long.parseLong(a[5]),
                    Long.parseLong(a[6]), a.length > 7 ? a[7] : ""));
            case "latency" -> System.exit(latency(a[1], a[2], a[3], Long.parseLong(a[4]), Long.parseLong(a[5]),
                    Long.parseLong(a[6])));
            default -> throw new IllegalArgumentException("unknown command " + a[0]);
        }
        System.exit(0);
    }

    /** utime+stime (clock ticks) and VmHWM (kB) of a process. */
    static String proc(String pid) {
        try {
            String stat = Files.readString(Path.of("/proc", pid, "stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]);
            long hwm = -1;
            for (String line : Files.readAllLines(Path.of("/proc", pid, "status"))) {
                if (line.startsWith("VmHWM:")) {
                    hwm = Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
            return "proc " + pid + " " + ticks + " " + hwm;
        } catch (Exception e) {
            return "proc " + pid + " -1 -1";
        }
    }

    static final com.fasterxml.jackson.databind.ObjectMapper MAPPER = new com.fasterxml.jackson.databind.ObjectMapper();

    static String kind(String value) {
        String type = "?";
        String reason = null;
        try {
            var v = MAPPER.readTree(value);
            type = v.path("type").asText("?");
            if (v.has("reason")) {
                reason = v.get("reason").asText();
            }
        } catch (Exception e) {
            type = "not-json";
        }
        String k = reason == null ? type : type + "/" + reason;
        return k.replaceAll("[\\s=]+", "_");
    }

    static KafkaConsumer<String, String> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("fetch.max.wait.ms", "100");
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    static List<TopicPartition> partitions(KafkaConsumer<String, String> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic)) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        return tps;
    }

    /** A consumer of every partition of topic, at its end or its beginning; prints "listening". */
    static KafkaConsumer<String, String> listen(String bootstrap, String topic, boolean atEnd) {
        KafkaConsumer<String, String> c = consumer(bootstrap);
        List<TopicPartition> tps = partitions(c, topic);
        c.assign(tps);
        if (atEnd) {
            c.seekToEnd(tps);
        } else {
            c.seekToBeginning(tps);
        }
        for (TopicPartition tp : tps) {
            c.position(tp);
        }
        System.out.println("listening");
        System.out.flush();
        return c;
    }

    /**
     * Reads the outcomes written from now on until the orders prefix + i, i from skip to n - 1,
     * have one; prints the percentiles of their latency (arrival minus the outcome's timestamp,
     * which is its order's creation time on both engines). Orders before skip are the warm-up.
     */
    static int latency(String bootstrap, String outcomes, String prefix, long n, long skip, long timeoutS) {
        List<Long> latencies = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> c = listen(bootstrap, outcomes, true)) {
            long deadline = System.currentTimeMillis() + timeoutS * 1000;
            while (seen.size() < n - skip && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> batch = c.poll(Duration.ofMillis(50));
                long now = System.currentTimeMillis();
                for (ConsumerRecord<String, String> r : batch) {
                    String k = r.key();
                    if (k == null || !k.startsWith(prefix)) {
                        continue;
                    }
                    long i = Long.parseLong(k.substring(prefix.length()));
                    if (i >= skip && seen.add(k)) {
                        latencies.add(now - r.timestamp());
                    }
                }
            }
        }
        Collections.sort(latencies);
        boolean complete = seen.size() == n - skip;
        System.out.println("status " + (complete ? "complete" : "timeout"));
        if (!latencies.isEmpty()) {
            int k = latencies.size();
            long p50 = latencies.get(Math.max(1, (int) Math.ceil(k * 0.5)) - 1);
            long p99 = latencies.get(Math.max(1, (int) Math.ceil(k * 0.99)) - 1);
            System.out.println("latency " + p50 + " " + p99 + " " + latencies.get(k - 1) + " " + k);
        }
        return complete ? 0 : 1;
    }

    static int await(String bootstrap, String outcomes, String ordersTopic, long n, long timeoutS,
                     long quietMs, String pids) throws Exception {
        Map<String, Integer> perOrder = new HashMap<>();
        Map<String, Integer> kinds = new TreeMap<>();
        long records = 0;
        long doneAt = -1;
        List<String> atDone = new ArrayList<>();
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> c = listen(bootstrap, outcomes, false)) {
            long deadline = System.currentTimeMillis() + timeoutS * 1000;
            long lastRecord = System.currentTimeMillis();
            while (true) {
                ConsumerRecords<String, String> batch = c.poll(Duration.ofMillis(50));
                long now = System.currentTimeMillis();
                for (ConsumerRecord<String, String> r : batch) {
                    records++;
                    values.add(r.value()); // parsed once the burst is done: the reader competes for the CPU
                    if (perOrder.merge(String.valueOf(r.key()), 1, Integer::sum) == 1
                            && perOrder.size() == n && doneAt < 0) {
                        doneAt = now;
                        for (String pid : pids.split(",")) {
                            if (!pid.isEmpty()) {
                                atDone.add(proc(pid));
                            }
                        }
                    }
                }
                if (!batch.isEmpty()) {
                    lastRecord = now;
                }
                if (doneAt >= 0 && now - lastRecord >= quietMs) {
                    break;
                }
                if (doneAt < 0 && now > deadline) {
                    break;
                }
            }
        }
        long first = -1;
        long produced = 0;
        try (KafkaConsumer<String, String> c = consumer(bootstrap)) {
            List<TopicPartition> tps = partitions(c, ordersTopic);
            for (long end : c.endOffsets(tps).values()) {
                produced += end;
            }
            Map<TopicPartition, Long> zero = new HashMap<>();
            tps.forEach(tp -> zero.put(tp, 0L));
            for (OffsetAndTimestamp ot : c.offsetsForTimes(zero).values()) {
                if (ot != null && (first < 0 || ot.timestamp() < first)) {
                    first = ot.timestamp();
                }
            }
        }
        values.forEach(v -> kinds.merge(kind(v), 1, Integer::sum));
        long dups = perOrder.values().stream().filter(v -> v > 1).count();
        System.out.println("status " + (doneAt >= 0 ? "complete" : "timeout"));
        System.out.println("first_ms " + first);
        System.out.println("last_ms " + doneAt);
        System.out.println("orders_produced " + produced);
        System.out.println("orders_with_outcome " + perOrder.size());
        System.out.println("outcome_records " + records);
        System.out.println("orders_with_several " + dups);
        atDone.forEach(System.out::println);
        kinds.forEach((k, v) -> System.out.println("kind " + k + " " + v));
        return doneAt >= 0 ? 0 : 1;
    }
}
JAVA
javac -nowarn -cp "$jar" -d "$work/helper" "$work/helper/CompareHelper.java" 2>"$work/helper/javac.log" ||
  { cat "$work/helper/javac.log" >&2; die "could not compile the helper"; }
helper() {
  java -Xmx256m -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$work/helper:$jar" CompareHelper "$@"
}

# ---- one engine, one round ------------------------------------------------------------------
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

eddy_ready() { # port
  local m
  curl -sf -m 2 "http://127.0.0.1:$1/ready" >/dev/null || return 1
  m="$(curl -sf -m 2 "http://127.0.0.1:$1/metrics")" || return 1
  awk '/^eddy_thread_assigned_partitions[{ ]/ { s += $NF } END { exit !(s > 0) }' <<<"$m"
}

cpu_ticks() { # pid -> utime+stime in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Results by "round,engine,what" (what: rate, secs, cpu, rss, kinds, ok, check; for each load
# L: rateL and latL, "p50 p99 max").
declare -A res=()

paced_load() { # key suffix dir load%: orders at load% of res[key,rate] for load_secs
  local key="$1" suffix="$2" dir="$3" pct="$4" rate count skip out pid rc=0
  rate="$(awk -v r="${res[$key,rate]}" -v p="$pct" 'BEGIN { x = int(r * p / 100 + 0.5); print (x < 1 ? 1 : x) }')"
  skip=$((rate * warmup_secs))
  count=$((rate * (warmup_secs + load_secs)))
  out="$dir/latency-$pct.out"
  helper latency "$bootstrap" order-outcomes-"$suffix" "order-$((100 + pct))-" "$count" "$skip" \
    $((warmup_secs + load_secs + 120)) \
    >"$out" 2>"$dir/logs/latency-$pct.log" &
  pid=$!
  reader_pid=$pid
  until grep -q '^listening' "$out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/logs/latency-$pct.log" >&2; die "the latency reader failed"; }
    sleep 0.1
  done
  java -jar "$jar" generate --bootstrap "$bootstrap" --suffix "$suffix" --count "$count" --seed $((100 + pct)) \
    --products "$products" --stock -1 --rate "$rate" --linger-ms "$gen_linger" >"$dir/logs/generate-$pct.log" 2>&1 ||
    { cat "$dir/logs/generate-$pct.log" >&2; die "generate failed"; }
  wait "$pid" || rc=$?
  reader_pid=""
  res[$key,rate$pct]=$rate
  if [[ $rc -eq 0 ]]; then
    res[$key,lat$pct]="$(awk '$1 == "latency" { print $2, $3, $4 }' "$out")"
  else
    res[$key,ok]=0
    res[$key,check]+="; load $pct %: $(awk '$1 == "latency" { print $5 }' "$out") of $((count - skip)) outcomes"
  fi
  log "round ${key%%,*}, ${key#*,}: $pct % load, $rate orders/s for $load_secs s: p50/p99/max ${res[$key,lat$pct]:-?} ms"
}

run_one() { # engine round
  local engine="$1" round="$2"
  local suffix="$tag-r$round-$engine" dir="$work/r$round-$engine"
  local names=() services=() ports=() logs=() i pid
  mkdir -p "$dir/state" "$dir/logs"
  log "round $round, $engine: topics *-$suffix"
  topics --partitions "$partitions" \
    --create "orders-$suffix,payments-$suffix,inventory-$suffix,stock-$suffix,order-outcomes-$suffix"
  java -jar "$jar" generate --bootstrap "$bootstrap" --suffix "$suffix" --count 0 \
    --products "$products" --stock "$stock_qty" >"$dir/logs/stock.log" 2>&1 ||
    { cat "$dir/logs/stock.log" >&2; die "seeding the stock failed"; }

  # A fresh payment gateway per run (answering at once, the pipeline's rules): both
  # engines' payment services charge every order through it.
  local gateway_port
  gateway_port="$(free_port)"
  gateway_url="http://127.0.0.1:$gateway_port"
  "$eddy_bin" gateway --addr "127.0.0.1:$gateway_port" >"$dir/logs/gateway.log" 2>&1 &
  gateway_pid=$!
  until curl -sf "$gateway_url/stats" >/dev/null; do
    kill -0 "$gateway_pid" 2>/dev/null || { cat "$dir/logs/gateway.log" >&2; die "the gateway did not start"; }
    sleep 0.1
  done

  if [[ "$engine" == eddy ]]; then
    names=(payment inventory order-saga)
  else
    names=(payment inventory saga)
  fi
  for i in 0 1 2; do
    logs[i]="$dir/logs/${names[i]}.log"
    if [[ "$engine" == eddy ]]; then
      ports[i]="$(free_port)"
      "$eddy_bin" run --config "$config_dir/${names[i]}.toml" --brokers "$bootstrap" --suffix "$suffix" \
        --state-dir "$dir/state/${names[i]}" --http "127.0.0.1:${ports[i]}" "${linger_set[@]}" "${eddy_sets[@]}" \
        --var "gateway_url=$gateway_url" >"${logs[i]}" 2>&1 &
    else
      # shellcheck disable=SC2086  # the options are words
      EDDY_GATEWAY_URL="$gateway_url" java $ks_java_opts -jar "$jar" "${names[i]}" --bootstrap "$bootstrap" --suffix "$suffix" \
        --state-dir "$dir/state/${names[i]}" "${linger_set[@]}" >"${logs[i]}" 2>&1 &
    fi
    svc_pids+=($!)
  done

  local deadline=$((SECONDS + 180)) ready
  while :; do
    ready=0
    for i in 0 1 2; do
      pid="${svc_pids[i]}"
      kill -0 "$pid" 2>/dev/null || { tail -n 30 "${logs[i]}" >&2; die "$engine ${names[i]} exited at start"; }
      if [[ "$engine" == eddy ]]; then
        eddy_ready "${ports[i]}" && ready=$((ready + 1))
      else
        grep -q ': running (' "${logs[i]}" && ready=$((ready + 1))
      fi
    done
    [[ $ready -eq 3 ]] && break
    [[ $SECONDS -lt $deadline ]] || die "$engine services not ready after 180 s (logs in $dir/logs)"
    sleep 0.5
  done
  log "round $round, $engine: services ready (pids ${svc_pids[*]})"

  local out="$dir/reader.out"
  helper await "$bootstrap" order-outcomes-"$suffix" orders-"$suffix" "$orders" "$timeout_s" "$quiet_ms" \
    "$(IFS=,; echo "${svc_pids[*]}")" >"$out" 2>"$dir/logs/reader.log" &
  reader_pid=$!
  until grep -q '^listening' "$out" 2>/dev/null; do
    kill -0 "$reader_pid" 2>/dev/null || { cat "$dir/logs/reader.log" >&2; die "the outcome reader failed"; }
    sleep 0.1
  done
  local before=() resumed=""
  if [[ $backlog -eq 1 ]]; then
    for i in 0 1 2; do kill -STOP "${svc_pids[i]}"; done
  fi
  for i in 0 1 2; do before[i]="$(cpu_ticks "${svc_pids[i]}")"; done

  java -jar "$jar" generate --bootstrap "$bootstrap" --suffix "$suffix" --count "$orders" --seed 1 \
    --products "$products" --stock -1 >"$dir/logs/generate.log" 2>&1 ||
    { cat "$dir/logs/generate.log" >&2; die "generate failed"; }
  if [[ $backlog -eq 1 ]]; then
    resumed="$(date +%s%3N)"
    for i in 0 1 2; do kill -CONT "${svc_pids[i]}"; done
  fi
  local reader_rc=0
  wait "$reader_pid" || reader_rc=$?
  reader_pid=""
  [[ -s "$out" ]] || { cat "$dir/logs/reader.log" >&2; die "the outcome reader printed nothing"; }

  # Parse the reader's answer.
  local key="$round,$engine" status first last produced with several cpu_ms=0 rss_kb=0 kinds="" per=""
  status="$(awk '$1 == "status" { print $2 }' "$out")"
  first="$(awk '$1 == "first_ms" { print $2 }' "$out")"
  [[ -z "$resumed" ]] || first="$resumed"
  last="$(awk '$1 == "last_ms" { print $2 }' "$out")"
  produced="$(awk '$1 == "orders_produced" { print $2 }' "$out")"
  with="$(awk '$1 == "orders_with_outcome" { print $2 }' "$out")"
  several="$(awk '$1 == "orders_with_several" { print $2 }' "$out")"
  kinds="$(awk '$1 == "kind" { printf "%s%s=%s", sep, $2, $3; sep = " " }' "$out")"
  local ok=1
  if [[ "$status" == complete && $reader_rc -eq 0 ]]; then
    for i in 0 1 2; do
      local line ticks hwm ms
      line="$(awk -v p="${svc_pids[i]}" '$1 == "proc" && $2 == p' "$out")"
      ticks="$(awk '{ print $3 }' <<<"$line")"
      hwm="$(awk '{ print $4 }' <<<"$line")"
      ms="$(awk -v a="$ticks" -v b="${before[i]}" -v t="$clk_tck" 'BEGIN { printf "%.0f", (a - b) * 1000 / t }')"
      cpu_ms=$((cpu_ms + ms))
      rss_kb=$((rss_kb + hwm))
      per+="${per:+, }${names[i]} ${ms} ms / $((hwm / 1024)) MiB"
    done
    res[$key,rate]="$(awk -v n="$orders" -v a="$first" -v b="$last" 'BEGIN { printf "%.1f", n * 1000 / (b - a) }')"
    res[$key,cpu]="$(awk -v c="$cpu_ms" -v n="$orders" 'BEGIN { printf "%.1f", c * 1000 / n }')"
    res[$key,rss]="$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')"
    res[$key,secs]="$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
  else
    ok=0
    log "round $round, $engine: INCOMPLETE: $with of $orders orders got an outcome within ${timeout_s} s"
  fi
  [[ "$produced" == "$orders" ]] || { ok=0; log "round $round, $engine: $produced orders on the topic, not $orders"; }
  [[ "$with" == "$orders" && "$several" == 0 ]] || ok=0
  res[$key,ok]=$ok
  res[$key,kinds]="$kinds"
  res[$key,check]="$with/$orders with an outcome, $several with several"
  log "round $round, $engine: ${res[$key,rate]:-?} orders/s (${res[$key,secs]:-?} s); CPU and peak RSS: ${per:-?}; ${res[$key,check]}"
  if [[ $ok -eq 1 ]]; then
    for pct in "${load_list[@]}"; do paced_load "$key" "$suffix" "$dir" "$pct"; done
  fi

  stop_services
  log "round $round, $engine: gateway $(curl -sf "$gateway_url/stats" || echo unreachable)"
  kill -TERM "$gateway_pid" 2>/dev/null || true
  wait "$gateway_pid" 2>/dev/null || true
  gateway_pid=""
  topics --delete ".*$suffix.*" >"$dir/logs/delete.log" 2>&1 ||
    log "could not delete the topics of $suffix: $(cat "$dir/logs/delete.log")"
  [[ $keep -eq 1 ]] || rm -rf "$dir"
}

# ---- rounds ----------------------------------------------------------------------------------
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2 == 1)); then order=("${engines[@]}"); else order=(); for e in "${engines[@]}"; do order=("$e" "${order[@]}"); done; fi
  for engine in "${order[@]}"; do run_one "$engine" "$r"; done
done

# ---- table -------------------------------------------------------------------------------------
failed=0
echo
echo "order pipeline, eddy vs Kafka Streams 4.3.1: $orders orders per burst, $partitions partitions, broker $bootstrap"
if [[ $backlog -eq 1 ]]; then
  echo "(the burst written while the services were stopped: throughput and CPU from their SIGCONT to the last outcome)"
fi
echo "(CPU: utime+stime of the three services from before the burst to the last outcome; RSS: sum of their VmHWM)"
echo
fmt='%-6s %-9s %10s %10s %9s %10s  %s\n'
# shellcheck disable=SC2059
printf "$fmt" round engine "orders/s" "seconds" "CPU ms/1k" "RSS MiB" "outcomes"
for ((r = 1; r <= rounds; r++)); do
  for engine in "${engines[@]}"; do
    k="$r,$engine"
    mark=""
    [[ "${res[$k,ok]:-}" == 1 ]] || { mark=" [FAILED: ${res[$k,check]:-}]"; failed=1; }
    # shellcheck disable=SC2059
    printf "$fmt" "$r" "$engine" "${res[$k,rate]:--}" "${res[$k,secs]:--}" "${res[$k,cpu]:--}" \
      "${res[$k,rss]:--}" "${res[$k,kinds]:-}$mark"
  done
done
echo
declare -A med=()
for engine in "${engines[@]}"; do
  for m in rate cpu rss; do
    vals=()
    for ((r = 1; r <= rounds; r++)); do vals+=("${res[$r,$engine,$m]:-}"); done
    med[$engine,$m]="$(median %.1f "${vals[@]}")"
  done
  # shellcheck disable=SC2059
  printf "$fmt" median "$engine" "${med[$engine,rate]}" "" "${med[$engine,cpu]}" "${med[$engine,rss]}" ""
done
echo
if [[ ${#engines[@]} -eq 2 ]]; then
  echo "throughput, eddy / Kafka Streams:           $(ratio "${med[eddy,rate]}" "${med[kstreams,rate]}")"
  echo "CPU per order, Kafka Streams / eddy:        $(ratio "${med[kstreams,cpu]}" "${med[eddy,cpu]}")"
  echo "peak RSS, Kafka Streams / eddy:             $(ratio "${med[kstreams,rss]}" "${med[eddy,rss]}")"
fi

if [[ ${#load_list[@]} -gt 0 ]]; then
  echo
  echo "latency, order_created -> outcome, at each load (% of the engine's own burst throughput),"
  echo "${load_secs} s each after ${warmup_secs} s not counted; ms (median of the rounds for each column, rounds in brackets)"
  lfmt='%-9s %5s %16s %22s %22s %22s\n'
  # shellcheck disable=SC2059
  printf "$lfmt" engine load "orders/s" p50 p99 max
  for engine in "${engines[@]}"; do
    for pct in "${load_list[@]}"; do
      cols=()
      for c in 1 2 3; do
        vals=()
        for ((r = 1; r <= rounds; r++)); do
          vals+=("$(awk -v c="$c" '{ print $c }' <<<"${res[$r,$engine,lat$pct]:-}")")
        done
        cols+=("$(median %.0f "${vals[@]}") ($(IFS=/; echo "${vals[*]}"))")
      done
      rates=()
      for ((r = 1; r <= rounds; r++)); do rates+=("${res[$r,$engine,rate$pct]:-}"); done
      # shellcheck disable=SC2059
      printf "$lfmt" "$engine" "$pct %" "$(IFS=/; echo "${rates[*]}")" "${cols[@]}"
    done
  done
fi

# The same orders every time: the counts per outcome kind must agree between the engines.
reference="${res[1,${engines[0]},kinds]:-}"
same=1
for ((r = 1; r <= rounds; r++)); do
  for engine in "${engines[@]}"; do
    [[ "${res[$r,$engine,kinds]:-}" == "$reference" ]] || same=0
  done
done
if [[ $same -eq 1 ]]; then
  echo "outcome kinds: the same counts for both engines in every round"
else
  echo "outcome kinds: DIFFER between engines or rounds (see the table)"
  failed=1
fi
[[ $failed -eq 0 ]] || { log "some checks failed"; exit 1; }
