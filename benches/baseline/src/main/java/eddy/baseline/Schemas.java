package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Set;

/**
 * The constraints of examples/orders/config/schemas/*.json, checked by hand (eddy compiles the
 * JSON Schemas; a schema library would add a dependency and its own cost to the baseline). Only
 * what those five schemas say is checked; a record that fails is a bad record (dead-lettered).
 */
final class Schemas {
    private Schemas() {}

    /** A schema check. */
    interface Schema {
        void check(JsonNode v);
    }

    /** A value that fails its topic's schema. */
    static final class Invalid extends RuntimeException {
        Invalid(String file, String at, String message) {
            super("schema " + file + ": at " + (at.isEmpty() ? "/" : at) + ": " + message, null, false, false);
        }
    }

    /** orders: order_created. */
    static final Schema ORDER = v -> {
        String f = "schemas/order.json";
        object(f, "", v);
        require(f, v, "type", "order_id", "user_id", "items", "created_at");
        if (!v.get("type").isTextual() || !v.get("type").textValue().equals("order_created")) {
            throw new Invalid(f, "/type", v.get("type") + " is not \"order_created\"");
        }
        string(f, "/order_id", v.get("order_id"), 1);
        string(f, "/user_id", v.get("user_id"), 1);
        JsonNode items = v.get("items");
        if (!items.isArray()) {
            throw new Invalid(f, "/items", "not an array");
        }
        if (items.size() < 1 || items.size() > 10_000) {
            throw new Invalid(f, "/items", items.size() + " items, not 1 to 10000");
        }
        for (int i = 0; i < items.size(); i++) {
            JsonNode item = items.get(i);
            String at = "/items/" + i;
            object(f, at, item);
            requireAt(f, item, at, "product_id", "qty", "unit_price");
            string(f, at + "/product_id", item.get("product_id"), 1);
            integer(f, at + "/qty", item.get("qty"), 1, 1_000_000);
            integer(f, at + "/unit_price", item.get("unit_price"), 0, 100_000_000);
        }
        JsonNode created = v.get("created_at");
        if (created.isTextual()) {
            if (CreatedAt.parse(created.textValue()) < 0) {
                throw new Invalid(f, "/created_at", created + " is not an RFC 3339 date-time");
            }
        } else {
            integer(f, "/created_at", created, 0, Long.MAX_VALUE);
        }
    };

    private static final Set<String> PAYMENT_TYPES =
            Set.of("payment_successful", "payment_failed", "payment_refunded");

    /** payments: payment_successful, payment_failed, payment_refunded. */
    static final Schema PAYMENT = v -> {
        String f = "schemas/payment.json";
        object(f, "", v);
        require(f, v, "type", "order_id", "amount");
        String type = oneOf(f, v.get("type"), PAYMENT_TYPES);
        string(f, "/order_id", v.get("order_id"), 1);
        integer(f, "/amount", v.get("amount"), 0, Long.MAX_VALUE);
        if (v.has("gateway_ref")) {
            string(f, "/gateway_ref", v.get("gateway_ref"), 0);
        }
        if (v.has("reason")) {
            string(f, "/reason", v.get("reason"), 0);
        }
        if (type.equals("payment_successful")) {
            require(f, v, "gateway_ref");
        } else if (type.equals("payment_failed")) {
            require(f, v, "reason");
        }
    };

    private static final Set<String> INVENTORY_TYPES =
            Set.of("stock_reserved", "stock_unavailable", "stock_released");

    /** inventory: stock_reserved, stock_unavailable, stock_released. */
    static final Schema INVENTORY = v -> {
        String f = "schemas/inventory.json";
        object(f, "", v);
        require(f, v, "type", "order_id");
        String type = oneOf(f, v.get("type"), INVENTORY_TYPES);
        string(f, "/order_id", v.get("order_id"), 1);
        for (String name : new String[] {"items", "released"}) {
            if (v.has(name)) {
                lines(f, "/" + name, v.get(name));
            }
        }
        if (v.has("missing")) {
            JsonNode missing = v.get("missing");
            if (!missing.isArray()) {
                throw new Invalid(f, "/missing", "not an array");
            }
            for (int i = 0; i < missing.size(); i++) {
                string(f, "/missing/" + i, missing.get(i), 0);
            }
        }
        if (type.equals("stock_unavailable")) {
            require(f, v, "missing", "released");
        } else {
            require(f, v, "items");
        }
    };

    /** stock: the level of a product. */
    static final Schema STOCK = v -> {
        String f = "schemas/stock.json";
        object(f, "", v);
        require(f, v, "product_id", "qty");
        string(f, "/product_id", v.get("product_id"), 1);
        integer(f, "/qty", v.get("qty"), 0, Long.MAX_VALUE);
    };

    private static void lines(String f, String at, JsonNode lines) {
        if (!lines.isArray()) {
            throw new Invalid(f, at, "not an array");
        }
        for (int i = 0; i < lines.size(); i++) {
            JsonNode line = lines.get(i);
            String here = at + "/" + i;
            object(f, here, line);
            requireAt(f, line, here, "product_id", "qty", "line");
            string(f, here + "/product_id", line.get("product_id"), 0);
            integer(f, here + "/qty", line.get("qty"), 1, Long.MAX_VALUE);
            integer(f, here + "/line", line.get("line"), 0, Long.MAX_VALUE);
        }
    }

    private static void object(String f, String at, JsonNode v) {
        if (!v.isObject()) {
            throw new Invalid(f, at, v.getNodeType().toString().toLowerCase() + " is not an object");
        }
    }

    private static void require(String f, JsonNode v, String... names) {
        requireAt(f, v, "", names);
    }

    private static void requireAt(String f, JsonNode v, String at, String... names) {
        for (String n : names) {
            if (!v.has(n)) {
                throw new Invalid(f, at, "\"" + n + "\" is a required property");
            }
        }
    }

    private static String oneOf(String f, JsonNode v, Set<String> allowed) {
        if (!v.isTextual() || !allowed.contains(v.textValue())) {
            throw new Invalid(f, "/type", v + " is not one of " + allowed);
        }
        return v.textValue();
    }

    private static void string(String f, String at, JsonNode v, int minLength) {
        if (!v.isTextual()) {
            throw new Invalid(f, at, v + " is not a string");
        }
        if (v.textValue().codePointCount(0, v.textValue().length()) < minLength) {
            throw new Invalid(f, at, v + " is shorter than " + minLength + " character");
        }
    }

    private static void integer(String f, String at, JsonNode v, long min, long max) {
        if (!Json.isInteger(v)) {
            throw new Invalid(f, at, v + " is not an integer");
        }
        long n = v.asLong();
        if (n < min) {
            throw new Invalid(f, at, n + " is less than the minimum of " + min);
        }
        if (n > max) {
            throw new Invalid(f, at, n + " is greater than the maximum of " + max);
        }
    }

    /** Event time from an order's created_at (RFC 3339 text or epoch ms). */
    static final class CreatedAt implements org.apache.kafka.streams.processor.TimestampExtractor {
        /** Epoch ms of an RFC 3339 date-time, or -1. */
        static long parse(String s) {
            try {
                return OffsetDateTime.parse(s, DateTimeFormatter.ISO_OFFSET_DATE_TIME).toInstant().toEpochMilli();
            } catch (DateTimeParseException | ArithmeticException e) {
                return -1;
            }
        }

        @Override
        public long extract(org.apache.kafka.clients.consumer.ConsumerRecord<Object, Object> record, long partitionTime) {
            // The value passed ORDER (the source's deserializer checks it): created_at is valid.
            JsonNode created = ((JsonNode) record.value()).get("created_at");
            return created.isTextual() ? parse(created.textValue()) : created.asLong();
        }
    }
}
