package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/** Jackson helpers and the JSON serdes of the three services. */
final class Json {
    static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {}

    static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    static ArrayNode array() {
        return MAPPER.createArrayNode();
    }

    static byte[] write(Object value) {
        try {
            return MAPPER.writeValueAsBytes(value);
        } catch (IOException e) {
            throw new SerializationException("cannot write JSON: " + e.getMessage(), e);
        }
    }

    /** A field's text, or the JSON text of a non-string value (as eddy's stock reserver names lines). */
    static String text(JsonNode v) {
        return v.isTextual() ? v.textValue() : v.toString();
    }

    /** The string field {@code name} of {@code v}; fails if it is missing or not a string. */
    static String string(JsonNode v, String name) {
        JsonNode f = v == null ? null : v.get(name);
        if (f == null || !f.isTextual()) {
            throw new Failure("no string field \"" + name + "\"");
        }
        return f.textValue();
    }

    /** The integer field {@code name} of {@code v} (2, 2.0 and 2e3 all count, as in eddy). */
    static long integer(JsonNode v, String name) {
        JsonNode f = v == null ? null : v.get(name);
        if (f == null || !isInteger(f)) {
            throw new Failure("no integer field \"" + name + "\"");
        }
        return f.asLong();
    }

    static boolean isInteger(JsonNode n) {
        return n.isNumber() && n.canConvertToExactIntegral() && n.canConvertToLong();
    }

    /** The sum of qty * unit_price over an order's items, failing on 64-bit overflow as CEL does. */
    static long amount(JsonNode order) {
        long sum = 0;
        for (JsonNode item : order.get("items")) {
            try {
                sum = Math.addExact(sum, Math.multiplyExact(integer(item, "qty"), integer(item, "unit_price")));
            } catch (ArithmeticException e) {
                throw new Failure("integer overflow summing the order's amount");
            }
        }
        return sum;
    }

    /** A failure of a record's content: the record goes to the dead-letter topic (or rejects a saga). */
    static final class Failure extends RuntimeException {
        Failure(String message) {
            super(message, null, false, false);
        }
    }

    /** JSON values; when reading, the value must parse and pass {@code schema}, else it is a bad record. */
    static final class JsonSerde implements Serde<JsonNode>, Serializer<JsonNode>, Deserializer<JsonNode> {
        private final Schemas.Schema schema;

        private JsonSerde(Schemas.Schema schema) {
            this.schema = schema;
        }

        /** For internal topics and stores: no schema. */
        static JsonSerde plain() {
            return new JsonSerde(null);
        }

        /** For a source topic: parsed, then checked against {@code schema}. */
        static JsonSerde checked(Schemas.Schema schema) {
            return new JsonSerde(schema);
        }

        @Override
        public byte[] serialize(String topic, JsonNode data) {
            return data == null ? null : write(data);
        }

        @Override
        public JsonNode deserialize(String topic, byte[] data) {
            if (data == null) {
                if (schema != null) {
                    throw new SerializationException("null value on topic " + topic);
                }
                return null;
            }
            JsonNode v;
            try {
                v = MAPPER.readTree(data);
            } catch (IOException e) {
                throw new SerializationException("value is not JSON: " + e.getMessage().lines().findFirst().orElse(""));
            }
            if (v == null || v.isMissingNode()) {
                throw new SerializationException("value is empty, not JSON");
            }
            if (schema != null) {
                try {
                    schema.check(v);
                } catch (Schemas.Invalid e) {
                    throw new SerializationException(e.getMessage());
                }
            }
            return v;
        }

        @Override
        public void configure(java.util.Map<String, ?> configs, boolean isKey) {}

        @Override
        public void close() {}

        @Override
        public Serializer<JsonNode> serializer() {
            return this;
        }

        @Override
        public Deserializer<JsonNode> deserializer() {
            return this;
        }
    }
}
