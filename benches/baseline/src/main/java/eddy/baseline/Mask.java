package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The masking of the order pipeline's files: order-saga.toml's `masked-orders` (the e-mail as
 * its HMAC-SHA256 in hex, keyed by EDDY_PII_KEY; name, street and postal code of the shipping
 * address dropped) and inventory.toml's `items-only` (both fields dropped).
 */
final class Mask {
    private Mask() {}

    private static final ThreadLocal<Mac> MAC = ThreadLocal.withInitial(() -> {
        String key = System.getenv("EDDY_PII_KEY");
        if (key == null) {
            throw new IllegalStateException("EDDY_PII_KEY is not set");
        }
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            return mac;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    });

    /** order-saga.toml's `masked-orders`. */
    static JsonNode saga(JsonNode order) {
        if (order instanceof ObjectNode o) {
            JsonNode email = o.get("email");
            if (email != null && email.isTextual()) {
                byte[] mac = MAC.get().doFinal(email.textValue().getBytes(StandardCharsets.UTF_8));
                o.put("email", HexFormat.of().formatHex(mac));
            }
            if (o.get("shipping_address") instanceof ObjectNode a) {
                a.remove("name");
                a.remove("street");
                a.remove("postal_code");
            }
        }
        return order;
    }

    /** inventory.toml's `items-only`. */
    static JsonNode itemsOnly(JsonNode order) {
        if (order instanceof ObjectNode o) {
            o.remove("email");
            o.remove("shipping_address");
        }
        return order;
    }
}
