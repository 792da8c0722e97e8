#!/usr/bin/env bash
# Start a real Apache Kafka (KRaft, combined broker+controller) cluster on 127.0.0.1.
#
#   scripts/kafka/start.sh [--nodes 1|3] [--secured]
#
#   1 node : broker 127.0.0.1:19092, controller 19093                   (rf 1 defaults)
#   3 nodes: brokers 19092/19094/19096, controllers 19093/19095/19097   (rf 3, min.isr 2)
#   (base port from $EDDY_KAFKA_PORT). Data/logs: $EDDY_CACHE/kafka-data/<N>node/node-<id>/
#   --secured (1 node): a SASL_SSL listener at 127.0.0.1:19192 ($EDDY_KAFKA_SECURED_PORT),
#   SCRAM users and ACLs enforced, beside a plaintext cluster if one runs; data, certificates
#   and client settings in $EDDY_CACHE/kafka-data/1node-secured/ (see secured.sh).
#
# Fetches the jars if needed, formats storage on first start, waits until every broker
# answers admin requests (timeout $EDDY_KAFKA_START_TIMEOUT, default 60 s).
# Already running -> no-op. Progress goes to stderr; the LAST stdout line is the
# bootstrap servers string:   BOOTSTRAP=$(scripts/kafka/start.sh | tail -n1)
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

nodes=1
secured=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes|-n) [[ $# -ge 2 ]] || kdie "--nodes needs a value"; nodes="$2"; shift 2 ;;
    --nodes=*) nodes="${1#*=}"; shift ;;
    --secured) secured=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) kdie "unknown argument: $1" ;;
  esac
done
check_nodes "$nodes"
if [[ $secured -eq 1 ]]; then
  [[ "$nodes" -eq 1 ]] || kdie "--secured starts one node only"
  # shellcheck source=secured.sh
  source "$KAFKA_SCRIPT_DIR/secured.sh"
  use_secured
fi
timeout_s="${EDDY_KAFKA_START_TIMEOUT:-60}"
bootstrap="$(bootstrap_servers "$nodes")"
cdir="$(cluster_dir "$nodes")"

# ---- already running? ---------------------------------------------------------------
live="$(live_nodes "$nodes")"
if [[ "$live" -eq "$nodes" ]]; then
  klog "${nodes}-node cluster already running ($cdir)"
  echo "$bootstrap"
  exit 0
elif [[ "$live" -gt 0 ]]; then
  kdie "${nodes}-node cluster is only partly running ($live/$nodes live); run scripts/kafka/stop.sh --nodes $nodes first"
fi
for other in 1 3; do
  [[ "$other" == "$nodes" || $secured -eq 1 ]] && continue
  # The other cluster may run beside this one on other ports ($EDDY_KAFKA_PORT).
  if [[ "$(live_nodes "$other")" -gt 0 ]] &&
    grep -q "^listeners=PLAINTEXT://$KAFKA_HOST:$(broker_port 1)," "$(node_dir "$other" 1)/server.properties" 2>/dev/null; then
    kdie "the ${other}-node cluster is running on the same ports; run scripts/kafka/stop.sh --nodes $other first"
  fi
done
for ((i = 1; i <= nodes; i++)); do
  for p in "$(broker_port "$i")" "$(controller_port "$i")"; do
    port_open "$p" && kdie "port $KAFKA_HOST:$p is already in use by something else"
  done
done

# ---- jars ---------------------------------------------------------------------------
"$KAFKA_SCRIPT_DIR/fetch.sh" >/dev/null
command -v java >/dev/null || kdie "java not found (Kafka needs Java 17+)"

# ---- configs ------------------------------------------------------------------------
if [[ "$nodes" -eq 1 ]]; then
  rf=1; min_isr=1; heap=512m
else
  rf=3; min_isr=2; heap=384m
fi
quorum=""
for ((i = 1; i <= nodes; i++)); do quorum+="${quorum:+,}$KAFKA_HOST:$(controller_port "$i")"; done

mkdir -p "$cdir"
cat >"$cdir/log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Broker logging for scripts/kafka/start.sh: INFO to <node>/logs/server.log, nothing to stdout.
     shutdownHook="disable": keep logging while Kafka's own shutdown hook runs (lines flush immediately). -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="FILE" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="FILE"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.network.RequestChannel$" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <Logger name="org.apache.kafka.common.metrics" level="WARN"/>
  </Loggers>
</Configuration>
XML

fresh=0
for ((i = 1; i <= nodes; i++)); do
  ndir="$(node_dir "$nodes" "$i")"
  [[ -f "$ndir/data/meta.properties" ]] || fresh=1
done
if [[ $fresh -eq 1 ]]; then
  # (Partially) unformatted -> start from scratch.
  for ((i = 1; i <= nodes; i++)); do rm -rf "$(node_dir "$nodes" "$i")"; done
  [[ $secured -eq 1 ]] && secured_tls "$cdir"
fi
[[ $secured -eq 1 ]] && secured_client_files "$cdir"

for ((i = 1; i <= nodes; i++)); do
  ndir="$(node_dir "$nodes" "$i")"
  mkdir -p "$ndir/data" "$ndir/logs"
  cat >"$ndir/server.properties" <<PROPS
# Generated by scripts/kafka/start.sh (Kafka $KAFKA_VERSION, ${nodes}-node KRaft combined mode)
process.roles=broker,controller
node.id=$i
$(if [[ $secured -eq 1 ]]; then
  secured_properties "$cdir" "$(broker_port "$i")" "$(controller_port "$i")"
else
  cat <<LISTENERS
listeners=PLAINTEXT://$KAFKA_HOST:$(broker_port "$i"),CONTROLLER://$KAFKA_HOST:$(controller_port "$i")
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$(broker_port "$i"),CONTROLLER://$KAFKA_HOST:$(controller_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
LISTENERS
fi)
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$quorum
log.dirs=$ndir/data

num.partitions=1
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
# Consumer groups of the KIP-848 protocol (eddy's default): a member that
# stops heartbeating loses its partitions after 6 s (Kafka's default: 45 s).
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=500

# small machine (2 cores): keep thread pools modest
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
background.threads=4
PROPS
done

if [[ $fresh -eq 1 ]]; then
  cluster_id="$(kafka_uuid)"   # same format as `kafka.tools.StorageTool random-uuid`, no JVM
  echo "$cluster_id" >"$cdir/cluster.id"
  if [[ "$nodes" -eq 1 ]]; then
    quorum_args=(--standalone)
  else
    # Dynamic quorum with all three controllers as initial voters: needs each
    # controller's metadata directory id, the same list given to every node.
    initial=""
    for ((i = 1; i <= nodes; i++)); do
      dir_id="$(kafka_uuid)"
      initial+="${initial:+,}$i@$KAFKA_HOST:$(controller_port "$i"):$dir_id"
    done
    quorum_args=(--initial-controllers "$initial")
  fi
  users_args=()
  [[ $secured -eq 1 ]] && mapfile -t users_args < <(secured_format_args)
  klog "formatting storage (cluster id $cluster_id, $nodes node(s))"
  fpids=()
  for ((i = 1; i <= nodes; i++)); do  # format the nodes in parallel
    ndir="$(node_dir "$nodes" "$i")"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$ndir/server.properties" \
      "${quorum_args[@]}" "${users_args[@]}" >"$ndir/logs/format.log" 2>&1 &
    fpids+=($!)
  done
  for ((i = 1; i <= nodes; i++)); do
    wait "${fpids[$((i - 1))]}" || {
      cat "$(node_dir "$nodes" "$i")/logs/format.log" >&2
      kdie "storage format failed for node $i"
    }
  done
else
  klog "reusing formatted data in $cdir (cluster id $(cat "$cdir/cluster.id" 2>/dev/null || echo '?'))"
fi

# ---- launch -------------------------------------------------------------------------
for ((i = 1; i <= nodes; i++)); do
  ndir="$(node_dir "$nodes" "$i")"
  rm -f "$ndir/kafka.pid"
  # setsid: own session, so the broker outlives this script and its terminal.
  # The inner bash writes its own pid, then execs java (same pid).
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$ndir/kafka.pid" \
    java -Xms128m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dkafka.logs.dir="$ndir/logs" -Dlog4j2.configurationFile="$cdir/log4j2.xml" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$ndir/server.properties" \
      </dev/null >>"$ndir/logs/kafka.out" 2>&1 &
done
for ((i = 1; i <= nodes; i++)); do  # wait for the pid files
  for _ in $(seq 50); do [[ -s "$(node_dir "$nodes" "$i")/kafka.pid" ]] && break; sleep 0.1; done
done
klog "launched ${nodes} node(s), pids: $(for ((i = 1; i <= nodes; i++)); do printf '%s ' "$(cat "$(node_dir "$nodes" "$i")/kafka.pid")"; done)"

# ---- wait until ready -----------------------------------------------------------------
fail() {
  klog "ERROR: $*"
  for ((i = 1; i <= nodes; i++)); do
    ndir="$(node_dir "$nodes" "$i")"
    printf '\n----- node %s: tail of %s -----\n' "$i" "$ndir/logs/server.log" >&2
    tail -n 30 "$ndir/logs/server.log" >&2 2>/dev/null || true
    if [[ -s "$ndir/logs/kafka.out" ]]; then
      printf -- '----- node %s: tail of %s -----\n' "$i" "$ndir/logs/kafka.out" >&2
      tail -n 15 "$ndir/logs/kafka.out" >&2
    fi
  done
  klog "stopping the half-started cluster (data kept in $cdir for inspection)"
  stop_args=(--nodes "$nodes")
  [[ $secured -eq 1 ]] && stop_args=(--secured)
  "$KAFKA_SCRIPT_DIR/stop.sh" "${stop_args[@]}" --keep-data >&2 || true
  exit 1
}

start_ts=$SECONDS
deadline=$((SECONDS + timeout_s))
check_alive() {
  local i
  for ((i = 1; i <= nodes; i++)); do
    live_pid "$(node_dir "$nodes" "$i")/kafka.pid" >/dev/null || fail "node $i exited during startup"
  done
}
for ((i = 1; i <= nodes; i++)); do
  until port_open "$(broker_port "$i")"; do
    check_alive
    [[ $SECONDS -lt $deadline ]] || fail "timed out after ${timeout_s}s waiting for port $(broker_port "$i")"
    sleep 0.5
  done
done
# Ports are open; now require every broker to be registered/unfenced and answering
# (BrokerApiVersionsCommand lists the brokers in the cluster metadata).
while :; do
  check_alive
  client_config=()
  [[ $secured -eq 1 ]] && client_config=(--command-config "$cdir/admin.properties")
  out="$(KAFKA_TOOL_TIMEOUT=30 kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
           --bootstrap-server "$bootstrap" "${client_config[@]}" 2>/dev/null || true)"
  seen="$(grep -c '(id: [0-9]* rack' <<<"$out" || true)"
  [[ "$seen" -ge "$nodes" ]] && break
  [[ $SECONDS -lt $deadline ]] || fail "timed out after ${timeout_s}s: only $seen/$nodes broker(s) answering at $bootstrap"
  sleep 1
done
klog "Kafka $KAFKA_VERSION ${nodes}-node cluster ready in $((SECONDS - start_ts))s after launch (logs: $cdir/node-*/logs/server.log)"
echo "$bootstrap"
