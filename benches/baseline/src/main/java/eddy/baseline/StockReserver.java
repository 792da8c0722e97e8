package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The `stock-reserver` processor of inventory.toml (eddy-orders' src/stock.rs), keyed by product:
 * `set` sets the level, `reserve` takes qty if that many are left and answers once per order
 * line (a repeated request gets the first answer), `release` gives a successful reservation
 * back once. Reservations are forgotten an hour of event time after they were made.
 */
final class StockReserver implements Processor<String, JsonNode, String, JsonNode> {
    static final String STOCK = "stock-levels";
    static final String RESERVATIONS = "reservations";
    static final String EXPIRY = "reservations-expiry";
    static final long RETENTION_MS = Duration.ofHours(1).toMillis();

    private ProcessorContext<String, JsonNode> ctx;
    private KeyValueStore<String, Long> stock;
    private KeyValueStore<String, JsonNode> reservations;
    private KeyValueStore<Bytes, byte[]> expiry;

    static ProcessorSupplier<String, JsonNode, String, JsonNode> supplier() {
        return new ProcessorSupplier<>() {
            @Override
            public Processor<String, JsonNode, String, JsonNode> get() {
                return new StockReserver();
            }

            @Override
            public Set<StoreBuilder<?>> stores() {
                return Set.of(
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(STOCK), Serdes.String(), Serdes.Long())
                                .withCachingEnabled(),
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(RESERVATIONS), Serdes.String(),
                                Json.JsonSerde.plain()).withCachingEnabled(),
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(EXPIRY), Serdes.Bytes(),
                                Serdes.ByteArray()).withCachingEnabled());
            }
        };
    }

    @Override
    public void init(ProcessorContext<String, JsonNode> context) {
        ctx = context;
        stock = context.getStateStore(STOCK);
        reservations = context.getStateStore(RESERVATIONS);
        expiry = context.getStateStore(EXPIRY);
        context.schedule(Duration.ofSeconds(1), PunctuationType.STREAM_TIME, this::expire);
    }

    @Override
    public void process(Record<String, JsonNode> r) {
        String product = r.key();
        JsonNode v = r.value();
        if (product == null) {
            throw new Json.Failure("stock-reserver: a request without a product key");
        }
        JsonNode opNode = v.get("op");
        if (opNode == null) {
            throw new Json.Failure("stock-reserver: stock request without \"op\"");
        }
        String op = opNode.isTextual() ? opNode.textValue() : "";
        if (op.equals("set")) {
            long qty = Json.integer(v, "qty");
            if (qty < 0) {
                throw new Json.Failure("stock-reserver: stock level " + qty + " for \"" + product + "\" is negative");
            }
            stock.put(product, qty);
            return;
        }
        JsonNode orderNode = v.get("order_id");
        JsonNode lineNode = v.get("line");
        if (orderNode == null || lineNode == null) {
            throw new Json.Failure("stock-reserver: stock request without \"order_id\" or \"line\"");
        }
        String order = Json.text(orderNode);
        String id = product + "\u0000" + order + "\u0000" + Json.text(lineNode);
        JsonNode existing = reservations.get(id);
        switch (op) {
            case "reserve" -> {
                long qty = Json.integer(v, "qty");
                if (qty <= 0) {
                    throw new Json.Failure("stock-reserver: reservation of " + qty + " items");
                }
                boolean ok;
                if (existing != null) {
                    ok = existing.get("ok").booleanValue();
                } else {
                    Long level = stock.get(product);
                    long available = level == null ? 0 : level;
                    ok = available >= qty;
                    if (ok) {
                        stock.put(product, available - qty);
                    }
                    long expires = saturatingAdd(r.timestamp(), RETENTION_MS);
                    ObjectNode made = Json.object();
                    made.put("qty", qty).put("ok", ok).put("released", false).put("expires", expires);
                    reservations.put(id, made);
                    expiry.put(TimeKeys.of(expires, id), new byte[0]);
                }
                ObjectNode answer = ((ObjectNode) v).deepCopy();
                answer.remove("op");
                answer.put("type", "reservation").put("product_id", product).put("ok", ok);
                ctx.forward(new Record<>(order, (JsonNode) answer, r.timestamp(), r.headers()));
            }
            case "release" -> {
                if (existing != null && existing.get("ok").booleanValue() && !existing.get("released").booleanValue()) {
                    Long level = stock.get(product);
                    long available = level == null ? 0 : level;
                    stock.put(product, available + existing.get("qty").asLong());
                    ObjectNode released = ((ObjectNode) existing).deepCopy();
                    released.put("released", true);
                    reservations.put(id, released);
                }
            }
            default -> throw new Json.Failure("stock-reserver: unknown stock operation \"" + op + "\"");
        }
    }

    /** Forgets the reservations whose retention ended by {@code now} (stream time). */
    private void expire(long now) {
        List<Bytes> due = new ArrayList<>();
        try (KeyValueIterator<Bytes, byte[]> it = expiry.range(null, TimeKeys.upTo(now))) {
            while (it.hasNext()) {
                KeyValue<Bytes, byte[]> e = it.next();
                if (TimeKeys.time(e.key) <= now) {
                    due.add(e.key);
                }
            }
        }
        for (Bytes k : due) {
            long at = TimeKeys.time(k);
            String id = new String(TimeKeys.rest(k), StandardCharsets.UTF_8);
            JsonNode found = reservations.get(id);
            if (found != null && found.has("expires") && found.get("expires").asLong() == at) {
                reservations.delete(id);
            }
            expiry.delete(k);
        }
    }

    static long saturatingAdd(long a, long b) {
        long s = a + b;
        return ((a ^ s) & (b ^ s)) < 0 ? (a < 0 ? Long.MIN_VALUE : Long.MAX_VALUE) : s;
    }
}
