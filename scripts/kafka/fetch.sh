#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (and admin tools) from Maven Central into
#   ${EDDY_KAFKA_HOME:-${EDDY_CACHE:-~/.cache/eddy}/kafka-<version>}/libs
# Idempotent: does nothing when that dir is already complete for this pom+version.
# Prints the libs dir on stdout (last line). Usage: scripts/kafka/fetch.sh [--force]
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

force=0
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) kdie "unknown argument: $a" ;;
  esac
done

pom="$KAFKA_SCRIPT_DIR/pom.xml"
stamp="$KAFKA_VERSION $(sha256sum "$pom" | cut -d' ' -f1)"

if [[ $force -eq 0 ]] && libs_ready && [[ "$(cat "$KAFKA_HOME/.fetched")" == "$stamp" ]]; then
  echo "$KAFKA_LIBS"
  exit 0
fi

command -v mvn >/dev/null || kdie "mvn not found (needed to fetch Kafka $KAFKA_VERSION from Maven Central)"
command -v java >/dev/null || kdie "java not found (Kafka $KAFKA_VERSION needs Java 17+)"

klog "fetching Apache Kafka $KAFKA_VERSION jars with mvn into $KAFKA_LIBS ..."
mkdir -p "$KAFKA_HOME"
tmp="$(mktemp -d "$KAFKA_HOME/.libs.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# Maven's output goes to a log (shown only on failure) so stdout stays just the libs dir.
mvnlog="$KAFKA_HOME/fetch.log"
if ! mvn -q -B -Dstyle.color=never -f "$pom" \
    -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvnlog" 2>&1; then
  tail -n 60 "$mvnlog" >&2
  kdie "mvn dependency:copy-dependencies failed for Kafka $KAFKA_VERSION (full log: $mvnlog)"
fi
compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null \
  || kdie "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing in $tmp"

rm -rf "$KAFKA_LIBS" "$KAFKA_HOME/config"
mv "$tmp" "$KAFKA_LIBS"
trap - EXIT
echo "$stamp" >"$KAFKA_HOME/.fetched"
klog "fetched $(find "$KAFKA_LIBS" -name "*.jar" | wc -l) jars ($(du -sh "$KAFKA_LIBS" | cut -f1))"
echo "$KAFKA_LIBS"
