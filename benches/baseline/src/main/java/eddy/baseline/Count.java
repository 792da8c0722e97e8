package eddy.baseline;

import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * `eddy count` (src/cli/count.rs): counts the records of {@code --input} per (UTF-8) key in a
 * persistent, changelogged, cached store named {@code --store} (default "counts", so the
 * changelog is {@code <app-id>-counts-changelog} on both sides) and writes each new count to
 * {@code --output} as an 8-byte big-endian long (Kafka's LongSerializer, eddy's I64Serde).
 * DSL: source, groupByKey, count, toStream, to.
 */
final class Count {
    private Count() {}

    static Topology build(Main.Options o, Properties config) {
        StreamsBuilder b = Service.builder(config);
        b.stream(o.required("input"), Consumed.with(Serdes.String(), Serdes.String()).withName("input"))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
                .count(Named.as("count"), Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(o.get("store", "counts"))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()))
                .toStream(Named.as("changes"))
                .to(o.required("output"), Produced.with(Serdes.String(), Serdes.Long()).withName("output"));
        return b.build();
    }
}
