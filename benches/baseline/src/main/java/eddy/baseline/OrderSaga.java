package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Set;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * order-saga.toml: merges orders, payment results and stock results per order id into the saga
 * ({@link SagaProcessor}), and routes what it emits: outcomes to `order-outcomes`, refunds to
 * `payments`, releases to `inventory`.
 */
final class OrderSaga {
    static final Set<String> OUTCOMES = Set.of("order_completed", "order_cancelled", "order_rejected");
    static final Set<String> PAYMENT_RESULTS = Set.of("payment_successful", "payment_failed");
    static final Set<String> STOCK_RESULTS = Set.of("stock_reserved", "stock_unavailable");

    private OrderSaga() {}

    private static String type(JsonNode v) {
        return v.get("type").textValue();
    }

    static Topology build(Topics t, java.util.Properties config) {
        StreamsBuilder b = Service.builder(config);
        var json = Json.JsonSerde.plain();
        var str = Serdes.String();
        KStream<String, JsonNode> orders = Service.source(b, t.orders(), Schemas.ORDER, "orders")
                .mapValues(Mask::saga, Named.as("masked-orders"));
        KStream<String, JsonNode> payments = Service.source(b, t.payments(), Schemas.PAYMENT, "payments");
        KStream<String, JsonNode> inventory = Service.source(b, t.inventory(), Schemas.INVENTORY, "inventory");

        KStream<String, JsonNode> saga = orders
                .merge(payments.filter((k, v) -> PAYMENT_RESULTS.contains(type(v)), Named.as("payment-results")),
                        Named.as("events-1"))
                .merge(inventory.filter((k, v) -> STOCK_RESULTS.contains(type(v)), Named.as("stock-results")),
                        Named.as("events"))
                .process(SagaProcessor.supplier(), Named.as("saga"));

        saga.filter((k, v) -> OUTCOMES.contains(type(v)), Named.as("outcomes"))
                .to(t.outcomes(), Produced.with(str, json).withName("to-outcomes"));
        saga.filter((k, v) -> type(v).equals("payment_refunded"), Named.as("refunds"))
                .to(t.payments(), Produced.with(str, json).withName("to-payments"));
        saga.filter((k, v) -> type(v).equals("stock_released"), Named.as("releases"))
                .to(t.inventory(), Produced.with(str, json).withName("to-inventory"));
        return b.build();
    }
}
