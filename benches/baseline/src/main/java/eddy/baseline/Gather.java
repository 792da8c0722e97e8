package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * inventory.toml's `gather` node (eddy's config/gather.rs): collects the answers 0 .. lines-1
 * of an order (part = value.line, parts = value.lines), one store entry per answer beside a
 * progress entry, and once all have come emits them as one list in line order, then starts over
 * for that order. An answer that comes again replaces the first.
 */
final class Gather implements Processor<String, JsonNode, String, JsonNode> {
    static final String STORE = "gathered";

    private ProcessorContext<String, JsonNode> ctx;
    private KeyValueStore<String, JsonNode> store;
    private final StringSerializer prefixes = new StringSerializer();

    static ProcessorSupplier<String, JsonNode, String, JsonNode> supplier() {
        return new ProcessorSupplier<>() {
            @Override
            public Processor<String, JsonNode, String, JsonNode> get() {
                return new Gather();
            }

            @Override
            public Set<StoreBuilder<?>> stores() {
                return Set.of(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STORE), Serdes.String(),
                        Json.JsonSerde.plain()).withCachingEnabled());
            }
        };
    }

    @Override
    public void init(ProcessorContext<String, JsonNode> context) {
        ctx = context;
        store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, JsonNode> r) {
        String key = r.key();
        if (key == null) {
            throw new Json.Failure("gather: a part without a key");
        }
        long parts = Json.integer(r.value(), "lines");
        long part = Json.integer(r.value(), "line");
        if (parts < 1) {
            throw new Json.Failure("gather: \"value.lines\" gave " + parts + ", not a part count of at least 1");
        }
        if (part < 0 || part >= parts) {
            throw new Json.Failure("gather: \"value.line\" gave " + part + ", not a part number from 0 to "
                    + (parts - 1) + " (of " + parts + " parts)");
        }
        // The whole's progress is "<len>:<key>", its parts "<len>:<key>#<part, 20 digits>": the
        // length keeps different keys apart, the padding lists parts in order in a prefix scan.
        String whole = key.getBytes(java.nio.charset.StandardCharsets.UTF_8).length + ":" + key;
        String prefix = whole + "#";
        JsonNode progress = store.get(whole);
        long have = 0;
        if (progress != null) {
            long was = progress.get("parts").asLong();
            if (was != parts) {
                throw new Json.Failure("gather: part " + part + " of a whole of " + parts
                        + " parts, but the whole \"" + key + "\" being gathered has " + was);
            }
            have = progress.get("have").asLong();
        }
        String self = prefix + String.format("%020d", part);
        if (store.get(self) == null) {
            have++;
        }
        store.put(self, r.value());
        if (have < parts) {
            ObjectNode p = Json.object();
            p.put("parts", parts).put("have", have);
            store.put(whole, p);
            return;
        }
        List<KeyValue<String, JsonNode>> gathered = new ArrayList<>();
        try (KeyValueIterator<String, JsonNode> it = store.prefixScan(prefix, prefixes)) {
            it.forEachRemaining(gathered::add);
        }
        if (gathered.size() != parts) {
            throw new Json.Failure("gather: the whole \"" + key + "\" has " + gathered.size()
                    + " parts stored, not " + parts);
        }
        ArrayNode values = Json.array();
        for (KeyValue<String, JsonNode> e : gathered) {
            store.delete(e.key);
            values.add(e.value);
        }
        store.delete(whole);
        ctx.forward(new Record<>(key, (JsonNode) values, r.timestamp(), r.headers()));
    }
}
