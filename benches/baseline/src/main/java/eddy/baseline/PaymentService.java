package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * payment.toml: decides each order's payment (declined above the amount limit, and a
 * deterministic 5 % of the others by the order id's hash) and writes it to `payments`.
 * DSL only: source, filterNot, mapValues, to.
 */
final class PaymentService {
    /** Orders above this amount (cents) are declined (vars.amount_limit). */
    static final long AMOUNT_LIMIT = 500_000;
    /** The share of other orders declined (vars.failure_rate). */
    static final double FAILURE_RATE = 0.05;
    /** Users whose payments are decided elsewhere (vars.manual_users): none. */
    static final Set<String> MANUAL_USERS = Set.of();

    private PaymentService() {}

    static Topology build(Topics t, java.util.Properties config) {
        StreamsBuilder b = Service.builder(config);
        var json = Json.JsonSerde.plain();
        b.stream(t.orders(), Consumed.with(Serdes.String(), Json.JsonSerde.checked(Schemas.ORDER))
                        .withTimestampExtractor(new Schemas.CreatedAt())
                        .withName("orders"))
                .filterNot((k, v) -> MANUAL_USERS.contains(v.get("user_id").textValue()), Named.as("automatic"))
                .mapValues((k, v) -> decide(k, Json.amount(v)), Named.as("decided"))
                .to(t.payments(), Produced.with(Serdes.String(), json).withName("to-payments"));
        return b.build();
    }

    /** hash_unit: murmur2 of the UTF-8 bytes (Kafka's partitioner hash), positive, over 2^31. */
    static double hashUnit(String s) {
        int h = Utils.murmur2(s.getBytes(StandardCharsets.UTF_8)) & 0x7fffffff;
        return h / (double) 0x80000000L;
    }

    static JsonNode decide(String key, long amount) {
        if (key == null) {
            throw new Json.Failure("an order without a key");
        }
        // Fields in sorted order, as eddy writes them (serde_json's maps are sorted): same bytes.
        ObjectNode out = Json.object();
        if (amount > AMOUNT_LIMIT) {
            out.put("amount", amount).put("order_id", key).put("reason", "amount_over_limit")
                    .put("type", "payment_failed");
        } else if (hashUnit(key) < FAILURE_RATE) {
            out.put("amount", amount).put("order_id", key).put("reason", "card_declined")
                    .put("type", "payment_failed");
        } else {
            out.put("amount", amount).put("gateway_ref", "gw-" + key).put("order_id", key)
                    .put("type", "payment_successful");
        }
        return out;
    }
}
