package eddy.baseline;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serde;
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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The `saga` operator of order-saga.toml, written for this one saga (eddy's operators/saga.rs
 * runs any saga a file describes). Per order id it keeps an instance: state, deadline, reason,
 * the events applied (by type), when each state was entered, events held back because they came
 * too early, and when it expires. Semantics as eddy's:
 * <ul>
 *   <li>each event type is applied once per order (a duplicate changes nothing);
 *   <li>an event with no transition from the current state is held back until a later
 *       transition allows it, or dropped in a final state;
 *   <li>a state's timeout fires when stream time reaches its deadline (a punctuator every 1 s of
 *       stream time scans a RocksDB index of deadlines), or first thing when an event of that
 *       order carries a later timestamp; what it emits carries the deadline as timestamp;
 *   <li>an event whose step fails (for example no payment to refund) rejects the order:
 *       order_rejected with the error as reason;
 *   <li>an instance is removed an hour of event time after its last change (ten times the
 *       longest timeout, at least an hour).
 * </ul>
 * Outputs are keyed by order id and carry the timestamp of the event (or deadline) that made them.
 */
final class SagaProcessor implements Processor<String, JsonNode, String, JsonNode> {
    static final String INSTANCES = "saga";
    static final String DEADLINES = "saga-deadlines";
    static final String SUMMARY = "order-summary";

    static final String INITIAL = "new";
    static final Set<String> FINALS = Set.of("completed", "cancelled", "rejected");
    static final long TIMEOUT_MS = Duration.ofSeconds(30).toMillis();
    static final long RETENTION_MS = Math.max(10 * TIMEOUT_MS, Duration.ofHours(1).toMillis());
    static final Duration CHECK_EVERY = Duration.ofSeconds(1);
    /** Ends the index key of an expiry (a byte no UTF-8 key holds); a timeout's has none. */
    static final byte EXPIRY = (byte) 0xff;

    private static final Logger LOG = LoggerFactory.getLogger(SagaProcessor.class);

    /** What an emit expression sees. */
    record Scope(String key, JsonNode event, Map<String, JsonNode> events, String reason) {}

    interface Emit {
        JsonNode apply(Scope s);
    }

    /** A transition or timeout: the state it goes to, the reason it sets (or null), what it emits. */
    record Step(String to, String reason, List<Emit> emit) {}

    // ---- the saga of order-saga.toml ----------------------------------------------------------

    // Fields in sorted order, as eddy writes them (serde_json's maps are sorted): same bytes.

    private static final Emit ORDER_CANCELLED = s -> Json.object()
            .put("order_id", s.key()).put("reason", s.reason()).put("type", "order_cancelled");
    private static final Emit ORDER_COMPLETED = s -> Json.object()
            .put("order_id", s.key()).put("type", "order_completed");
    private static final Emit ORDER_REJECTED = s -> Json.object()
            .put("order_id", s.key()).put("reason", s.reason()).put("type", "order_rejected");

    /** payment_refunded of the payment applied (events.payment_successful.amount), with the step's reason. */
    private static final Emit REFUND_PAYMENT = s -> refund(
            field(s.events().get("payment_successful"), "events.payment_successful", "amount"), s.key(), s.reason());

    /** payment_refunded of the event that came late (event.amount). */
    private static Emit refundEvent(String reason) {
        return s -> refund(field(s.event(), "event", "amount"), s.key(), reason);
    }

    private static JsonNode refund(JsonNode amount, String key, String reason) {
        ObjectNode o = Json.object();
        o.set("amount", amount);
        return o.put("order_id", key).put("reason", reason).put("type", "payment_refunded");
    }

    /** stock_released of the reservation that came late (event.items). */
    private static Emit releaseEvent(String reason) {
        return s -> {
            ObjectNode o = Json.object();
            o.set("items", field(s.event(), "event", "items"));
            return o.put("order_id", s.key()).put("reason", reason).put("type", "stock_released");
        };
    }

    private static JsonNode field(JsonNode v, String what, String name) {
        if (v == null) {
            throw new Json.Failure("no such key: " + what.substring(what.indexOf('.') + 1));
        }
        JsonNode f = v.get(name);
        if (f == null) {
            throw new Json.Failure("no such key: " + name);
        }
        return f;
    }

    /** transitions[from][on]. */
    static final Map<String, Map<String, Step>> TRANSITIONS = Map.of(
            "new", Map.of("order_created", new Step("awaiting_payment", null, List.of())),
            "awaiting_payment", Map.of(
                    "payment_successful", new Step("awaiting_stock", null, List.of()),
                    "payment_failed", new Step("cancelled", "payment_failed", List.of(ORDER_CANCELLED))),
            "awaiting_stock", Map.of(
                    "stock_reserved", new Step("completed", null, List.of(ORDER_COMPLETED)),
                    "stock_unavailable", new Step("cancelled", "stock_unavailable",
                            List.of(REFUND_PAYMENT, ORDER_CANCELLED))),
            "cancelled", Map.of(
                    "payment_successful", new Step("cancelled", null, List.of(refundEvent("late_payment"))),
                    "stock_reserved", new Step("cancelled", null, List.of(releaseEvent("late_reservation")))),
            "rejected", Map.of(
                    "payment_successful", new Step("rejected", null, List.of(refundEvent("order_rejected"))),
                    "stock_reserved", new Step("rejected", null, List.of(releaseEvent("order_rejected")))));

    /** timeouts[state]: after TIMEOUT_MS. */
    static final Map<String, Step> TIMEOUTS = Map.of(
            "awaiting_payment", new Step("cancelled", "payment_timeout", List.of(ORDER_CANCELLED)),
            "awaiting_stock", new Step("cancelled", "stock_timeout", List.of(REFUND_PAYMENT, ORDER_CANCELLED)));

    /** [nodes.saga.rejected]. */
    static final Step REJECTED = new Step("rejected", null, List.of(ORDER_REJECTED));

    static Step transition(String state, String kind) {
        Map<String, Step> from = TRANSITIONS.get(state);
        return from == null ? null : from.get(kind);
    }

    // ---- instances ----------------------------------------------------------------------------

    /** An instance as stored (JSON). */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public static final class Instance {
        public String state;
        public Long deadline;
        public String reason;
        public LinkedHashMap<String, JsonNode> events = new LinkedHashMap<>();
        public LinkedHashMap<String, Long> history = new LinkedHashMap<>();
        public ArrayList<Deferred> deferred = new ArrayList<>();
        public Long expires;
    }

    /** An event held back. */
    public static final class Deferred {
        public String kind;
        public JsonNode event;
        public long ts;

        public Deferred() {}

        Deferred(String kind, JsonNode event, long ts) {
            this.kind = kind;
            this.event = event;
            this.ts = ts;
        }
    }

    static final class InstanceSerde implements Serde<Instance> {
        @Override
        public org.apache.kafka.common.serialization.Serializer<Instance> serializer() {
            return (topic, v) -> v == null ? null : Json.write(v);
        }

        @Override
        public org.apache.kafka.common.serialization.Deserializer<Instance> deserializer() {
            return (topic, data) -> {
                if (data == null) {
                    return null;
                }
                try {
                    return Json.MAPPER.readValue(data, Instance.class);
                } catch (IOException e) {
                    throw new SerializationException("saga instance unreadable: " + e.getMessage(), e);
                }
            };
        }
    }

    static ProcessorSupplier<String, JsonNode, String, JsonNode> supplier() {
        return new ProcessorSupplier<>() {
            @Override
            public Processor<String, JsonNode, String, JsonNode> get() {
                return new SagaProcessor();
            }

            @Override
            public Set<StoreBuilder<?>> stores() {
                return Set.of(
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(INSTANCES), Serdes.String(),
                                new InstanceSerde()).withCachingEnabled(),
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(DEADLINES), Serdes.Bytes(),
                                Serdes.ByteArray()).withCachingEnabled(),
                        Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(SUMMARY), Serdes.String(),
                                Json.JsonSerde.plain()).withCachingEnabled());
            }
        };
    }

    private ProcessorContext<String, JsonNode> ctx;
    private KeyValueStore<String, Instance> instances;
    private KeyValueStore<Bytes, byte[]> deadlines;
    private KeyValueStore<String, JsonNode> summary;
    /** What the current step emitted, with timestamps. */
    private final List<KeyValue<JsonNode, Long>> outputs = new ArrayList<>();

    @Override
    public void init(ProcessorContext<String, JsonNode> context) {
        ctx = context;
        instances = context.getStateStore(INSTANCES);
        deadlines = context.getStateStore(DEADLINES);
        summary = context.getStateStore(SUMMARY);
        context.schedule(CHECK_EVERY, PunctuationType.STREAM_TIME, this::punctuate);
    }

    @Override
    public void process(Record<String, JsonNode> r) {
        JsonNode type = r.value().get("type");
        if (type == null || !type.isTextual()) {
            throw new Json.Failure("saga: saga event has no string field \"type\"");
        }
        if (r.key() == null) {
            throw new Json.Failure("saga: an event without a key");
        }
        String key = r.key();
        Instance inst = load(key);
        Long oldDeadline = inst.deadline;
        Long oldExpires = inst.expires;
        try {
            if (apply(inst, key, type.textValue(), r.value(), r.timestamp())) {
                keepFrom(inst, r.timestamp());
                commit(key, inst, oldDeadline, oldExpires, r.headers());
            }
        } catch (Json.Failure error) {
            outputs.clear();
            try {
                reject(key, error.getMessage(), r.timestamp(), r.headers());
            } catch (Json.Failure again) {
                outputs.clear();
                throw new Json.Failure("saga: " + error.getMessage() + "; rejecting the instance failed too: "
                        + again.getMessage());
            }
        }
    }

    /** Applies one event (and the held-back events it unblocks); returns whether the instance changed. */
    private boolean apply(Instance inst, String key, String kind, JsonNode event, long ts) {
        if (inst.events.containsKey(kind) || inst.deferred.stream().anyMatch(d -> d.kind.equals(kind))) {
            return false;
        }
        boolean changed = false;
        if (inst.deadline != null && ts >= inst.deadline) {
            changed = fireTimeout(inst, key, inst.deadline);
        }
        Step step = transition(inst.state, kind);
        if (step != null) {
            inst.events.put(kind, event);
            take(inst, key, step, kind, ts);
            retryDeferred(inst, key);
            return true;
        }
        if (FINALS.contains(inst.state)) {
            return changed;
        }
        inst.deferred.add(new Deferred(kind, event, ts));
        return true;
    }

    /** Retries held-back events, oldest first, until none moves the instance. */
    private void retryDeferred(Instance inst, String key) {
        while (true) {
            int i = -1;
            for (int j = 0; j < inst.deferred.size(); j++) {
                if (transition(inst.state, inst.deferred.get(j).kind) != null) {
                    i = j;
                    break;
                }
            }
            if (i < 0) {
                break;
            }
            Deferred d = inst.deferred.remove(i);
            apply(inst, key, d.kind, d.event, d.ts);
        }
        if (FINALS.contains(inst.state)) {
            inst.deferred.clear();
        }
    }

    private boolean fireTimeout(Instance inst, String key, long deadline) {
        Step step = TIMEOUTS.get(inst.state);
        if (step == null) {
            return false;
        }
        take(inst, key, step, null, deadline);
        return true;
    }

    /** Moves the instance along {@code step} at {@code ts} and collects what it emits. */
    private void take(Instance inst, String key, Step step, String kind, long ts) {
        inst.state = step.to();
        if (step.reason() != null) {
            inst.reason = step.reason();
        }
        inst.history.putIfAbsent(step.to(), ts);
        inst.deadline = TIMEOUTS.containsKey(step.to()) ? StockReserver.saturatingAdd(ts, TIMEOUT_MS) : null;
        Scope scope = new Scope(key, kind == null ? null : inst.events.get(kind), inst.events, inst.reason);
        for (Emit e : step.emit()) {
            outputs.add(KeyValue.pair(e.apply(scope), ts));
        }
    }

    /** The read model (order-saga.toml's summary), served by eddy at /orders/{id}; here only stored. */
    private static JsonNode summarize(String key, Instance inst) {
        ObjectNode s = Json.object();
        s.put("order_id", key).put("status", inst.state).put("reason", inst.reason);
        JsonNode created = inst.events.get("order_created");
        if (!inst.state.equals("rejected") && created != null) {
            s.put("amount", Json.amount(created));
            s.set("customer", created.has("email") ? created.get("email") : null);
        } else {
            s.putNull("amount");
        }
        s.put("paid", inst.events.containsKey("payment_successful"));
        ObjectNode entered = s.putObject("entered_at");
        inst.history.forEach(entered::put);
        return s;
    }

    /** Stores the instance, its index entries and summary, and forwards what it emitted. */
    private void commit(String key, Instance inst, Long oldDeadline, Long oldExpires, Headers headers) {
        JsonNode read = summarize(key, inst);
        reindex(key, null, oldDeadline, inst.deadline);
        reindex(key, EXPIRY, oldExpires, inst.expires);
        instances.put(key, inst);
        summary.put(key, read);
        for (KeyValue<JsonNode, Long> out : outputs) {
            ctx.forward(new Record<>(key, out.key, out.value, headers));
        }
        outputs.clear();
    }

    private void reindex(String key, Byte suffix, Long old, Long now) {
        if (Objects.equals(old, now)) {
            return;
        }
        byte[] s = suffix == null ? new byte[0] : new byte[] {suffix};
        if (old != null) {
            deadlines.delete(TimeKeys.of(old, key, s));
        }
        if (now != null) {
            deadlines.put(TimeKeys.of(now, key, s), new byte[0]);
        }
    }

    private Instance load(String key) {
        Instance found = instances.get(key);
        if (found != null) {
            return found;
        }
        Instance fresh = new Instance();
        fresh.state = INITIAL;
        return fresh;
    }

    private void keepFrom(Instance inst, long ts) {
        long until = StockReserver.saturatingAdd(ts, RETENTION_MS);
        inst.expires = inst.expires == null ? until : Math.max(inst.expires, until);
    }

    /** Moves the order, as stored, to `rejected` with the error as reason. */
    private void reject(String key, String error, long ts, Headers headers) {
        Instance inst = load(key);
        if (FINALS.contains(inst.state)) {
            throw new Json.Failure("the instance is " + inst.state + " already");
        }
        Long oldDeadline = inst.deadline;
        Long oldExpires = inst.expires;
        inst.reason = error;
        inst.deferred.clear();
        take(inst, key, REJECTED, null, ts);
        keepFrom(inst, ts);
        commit(key, inst, oldDeadline, oldExpires, headers);
    }

    /** Fires the timeouts and expiries due at stream time {@code now}. */
    private void punctuate(long now) {
        List<Bytes> due = new ArrayList<>();
        try (KeyValueIterator<Bytes, byte[]> it = deadlines.range(null, TimeKeys.upTo(now))) {
            while (it.hasNext()) {
                Bytes k = it.next().key;
                if (TimeKeys.time(k) <= now) {
                    due.add(k);
                }
            }
        }
        for (Bytes k : due) {
            long at = TimeKeys.time(k);
            byte[] rest = TimeKeys.rest(k);
            boolean expiry = rest.length > 0 && rest[rest.length - 1] == EXPIRY;
            String key = new String(rest, 0, expiry ? rest.length - 1 : rest.length, StandardCharsets.UTF_8);
            try {
                if (expiry) {
                    remove(key, at);
                } else {
                    timeout(key, at);
                }
            } catch (Json.Failure e) {
                // One timeout that cannot be applied must not hold back the others.
                outputs.clear();
                LOG.error("saga timeout of {} at {} dropped: {}", key, at, e.getMessage());
                deadlines.delete(k);
            }
        }
    }

    private void timeout(String key, long deadline) {
        Instance inst = load(key);
        if (inst.deadline == null || inst.deadline != deadline) {
            deadlines.delete(TimeKeys.of(deadline, key)); // a leftover index entry
            return;
        }
        Long oldDeadline = inst.deadline;
        Long oldExpires = inst.expires;
        fireTimeout(inst, key, deadline);
        retryDeferred(inst, key);
        keepFrom(inst, deadline);
        commit(key, inst, oldDeadline, oldExpires, new RecordHeaders());
    }

    /** Removes an instance whose retention ended at {@code at}, unless it changed since. */
    private void remove(String key, long at) {
        Instance inst = instances.get(key);
        deadlines.delete(TimeKeys.of(at, key, EXPIRY));
        if (inst == null || inst.expires == null || inst.expires != at) {
            return;
        }
        if (inst.deadline != null) {
            deadlines.delete(TimeKeys.of(inst.deadline, key));
        }
        instances.delete(key);
    }
}
