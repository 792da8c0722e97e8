package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.StreamJoined;

/**
 * inventory.toml: joins each successful payment with its order (5 min window), asks the stock
 * reserver for every line through a repartition by product, gathers the answers back per order
 * through a repartition by order id, and writes stock_reserved or stock_unavailable to
 * `inventory`. Releases (stock_released, and the reserved lines of stock_unavailable) go to the
 * reserver too. DSL for the stream part; the Processor API for the reserver and the gather.
 */
final class InventoryService {
    /** A flat_map emits at most this many records per input (eddy's default max_outputs). */
    static final int MAX_OUTPUTS = 10_000;

    private InventoryService() {}

    static Topology build(Topics t, java.util.Properties config) {
        StreamsBuilder b = Service.builder(config);
        var json = Json.JsonSerde.plain();
        var str = Serdes.String();
        KStream<String, JsonNode> orders = Service.source(b, t.orders(), Schemas.ORDER, "orders")
                .mapValues(Mask::itemsOnly, Named.as("items-only"));
        KStream<String, JsonNode> payments = Service.source(b, t.payments(), Schemas.PAYMENT, "payments");
        KStream<String, JsonNode> inventory = Service.source(b, t.inventory(), Schemas.INVENTORY, "inventory");
        KStream<String, JsonNode> stock = Service.source(b, t.stock(), Schemas.STOCK, "stock");

        KStream<String, JsonNode> paid =
                payments.filter((k, v) -> v.get("type").textValue().equals("payment_successful"), Named.as("paid"));
        KStream<String, JsonNode> paidOrders = paid.join(orders,
                (payment, order) -> (JsonNode) Json.object().set("items", order.get("items")),
                JoinWindows.ofTimeDifferenceWithNoGrace(Duration.ofMinutes(5)),
                StreamJoined.with(str, json, json).withName("paid-orders").withStoreName("paid-orders"));

        KStream<String, JsonNode> reserveRequests = paidOrders.flatMap((order, v) -> {
            JsonNode items = v.get("items");
            checkOutputs(items.size());
            List<KeyValue<String, JsonNode>> out = new ArrayList<>(items.size());
            for (int i = 0; i < items.size(); i++) {
                JsonNode item = items.get(i);
                ObjectNode req = Json.object();
                req.put("op", "reserve").put("order_id", order).set("qty", item.get("qty"));
                req.put("line", i).put("lines", items.size());
                out.add(KeyValue.pair(Json.string(item, "product_id"), req));
            }
            return out;
        }, Named.as("reserve-requests"));

        KStream<String, JsonNode> releaseRequests = inventory
                .filter((k, v) -> {
                    String type = v.get("type").textValue();
                    return type.equals("stock_released") || type.equals("stock_unavailable");
                }, Named.as("releases"))
                .flatMap((order, v) -> {
                    JsonNode lines = v.get("type").textValue().equals("stock_released") ? v.get("items") : v.get("released");
                    checkOutputs(lines.size());
                    List<KeyValue<String, JsonNode>> out = new ArrayList<>(lines.size());
                    for (JsonNode item : lines) {
                        ObjectNode req = Json.object();
                        req.put("op", "release").put("order_id", order).set("line", item.get("line"));
                        out.add(KeyValue.pair(Json.string(item, "product_id"), req));
                    }
                    return out;
                }, Named.as("release-requests"));

        KStream<String, JsonNode> byProduct = reserveRequests
                .merge(releaseRequests, Named.as("requests"))
                .repartition(Repartitioned.with(str, json).withName("by-product"));
        KStream<String, JsonNode> stockLevels = stock.mapValues(
                v -> (JsonNode) Json.object().put("op", "set").set("qty", v.get("qty")), Named.as("stock-levels"));

        byProduct.merge(stockLevels, Named.as("stock-ops"))
                .process(StockReserver.supplier(), Named.as("reserve"))
                .repartition(Repartitioned.with(str, json).withName("by-order"))
                .process(Gather.supplier(), Named.as("gathered"))
                .mapValues(InventoryService::answer, Named.as("answered"))
                .to(t.inventory(), Produced.with(str, json).withName("to-inventory"));
        return b.build();
    }

    private static void checkOutputs(int n) {
        if (n > MAX_OUTPUTS) {
            throw new Json.Failure("flat_map: " + n + " outputs, more than max_outputs " + MAX_OUTPUTS);
        }
    }

    /** stock_reserved if every line was reserved, else stock_unavailable with what to give back. */
    static JsonNode answer(String order, JsonNode answers) {
        boolean all = true;
        for (JsonNode a : answers) {
            all &= a.get("ok").booleanValue();
        }
        // Fields in sorted order, as eddy writes them (serde_json's maps are sorted): same bytes.
        ObjectNode out = Json.object();
        if (all) {
            ArrayNode items = out.putArray("items");
            for (JsonNode a : answers) {
                items.add(line(a));
            }
            out.put("order_id", order).put("type", "stock_reserved");
        } else {
            ArrayNode missing = out.putArray("missing");
            out.put("order_id", order);
            ArrayNode released = out.putArray("released");
            out.put("type", "stock_unavailable");
            for (JsonNode a : answers) {
                if (a.get("ok").booleanValue()) {
                    released.add(line(a));
                } else {
                    missing.add(a.get("product_id"));
                }
            }
        }
        return out;
    }

    private static ObjectNode line(JsonNode a) {
        ObjectNode l = Json.object();
        l.set("line", a.get("line"));
        l.set("product_id", a.get("product_id"));
        l.set("qty", a.get("qty"));
        return l;
    }
}
