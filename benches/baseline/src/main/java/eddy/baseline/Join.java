package eddy.baseline;

import java.time.Duration;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;

/**
 * `eddy join` (src/cli/join.rs): the inner join of the co-partitioned topics {@code --left}
 * and {@code --right} (UTF-8 keys and values), records at most {@code --window-ms} apart
 * (default one hour) joining, with a grace of the same length as eddy's
 * {@code JoinWindows::of(window, window)}; each pair is written to {@code --output} as
 * {@code left+right}. Both sides are buffered in changelogged RocksDB window stores.
 */
final class Join {
    private Join() {}

    static Topology build(Main.Options o, Properties config) {
        StreamsBuilder b = Service.builder(config);
        KStream<String, String> left =
                b.stream(o.required("left"), Consumed.with(Serdes.String(), Serdes.String()).withName("left"));
        KStream<String, String> right =
                b.stream(o.required("right"), Consumed.with(Serdes.String(), Serdes.String()).withName("right"));
        Duration window = Duration.ofMillis(o.number("window-ms", 3_600_000));
        left.join(right, (l, r) -> l + "+" + r,
                        JoinWindows.ofTimeDifferenceAndGrace(window, window),
                        StreamJoined.with(Serdes.String(), Serdes.String(), Serdes.String())
                                .withName("join").withStoreName("join"))
                .to(o.required("output"), Produced.with(Serdes.String(), Serdes.String()).withName("output"));
        return b.build();
    }
}
