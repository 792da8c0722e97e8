package eddy.baseline;

import java.util.Locale;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * `eddy pipe` (src/cli/pipe.rs): upper-cases the UTF-8 values of {@code --input} into
 * {@code --output}, keys (nullable) and timestamps unchanged. DSL: source, mapValues, to.
 */
final class Pipe {
    private Pipe() {}

    static Topology build(Main.Options o, Properties config) {
        StreamsBuilder b = Service.builder(config);
        b.stream(o.required("input"), Consumed.with(Serdes.String(), Serdes.String()).withName("input"))
                .mapValues(v -> v.toUpperCase(Locale.ROOT), Named.as("upper"))
                .to(o.required("output"), Produced.with(Serdes.String(), Serdes.String()).withName("output"));
        return b.build();
    }
}
