#!/usr/bin/env bash
# Thin wrapper around Kafka's ConsumerGroupCommand (kafka-consumer-groups.sh)
# for the running cluster.
#
#   scripts/kafka/consumer-groups.sh --describe --group my-app
#   scripts/kafka/consumer-groups.sh --list
#
# --bootstrap-server is filled in: $EDDY_KAFKA_BOOTSTRAP if set, else the running
# cluster started by start.sh (3-node if it is up, else 1-node). Other args pass through.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

case "${1:-}" in -h|--help) sed -n '2,10p' "$0"; exit 0 ;; esac
libs_ready || kdie "Kafka jars not fetched yet; run scripts/kafka/fetch.sh (or start.sh)"
bs="$(running_bootstrap)"
for a in "$@"; do [[ "$a" == --bootstrap-server* ]] && kdie "--bootstrap-server is filled in by this script"; done
kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$bs" "$@"
