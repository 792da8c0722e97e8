package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Set;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * payment.toml: charges each order through the payment gateway over HTTP and writes the
 * answer to `payments`, as Kafka Streams users do it: a synchronous call per record inside
 * the topology (here `mapValues`), on the stream thread, with the same idempotency key,
 * tries and backoff as eddy's call operator. The gateway is `EDDY_GATEWAY_URL` (default
 * payment.toml's, http://127.0.0.1:8181): `eddy-orders gateway`, which compare.sh starts.
 * DSL only: source, filterNot, mapValues, to.
 */
final class PaymentService {
    /** Where the gateway listens. */
    static final String GATEWAY =
            System.getenv().getOrDefault("EDDY_GATEWAY_URL", "http://127.0.0.1:8181");
    /** Tries in all, and the backoff bounds (payment.toml's attempts, backoff, max_backoff). */
    static final int ATTEMPTS = 8;
    static final long BACKOFF_MS = 100;
    static final long MAX_BACKOFF_MS = 2_000;
    static final HttpClient HTTP = HttpClient.newBuilder()
            .connectTimeout(Duration.ofSeconds(2))
            .followRedirects(HttpClient.Redirect.NEVER)
            .version(HttpClient.Version.HTTP_1_1)
            .build();
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

    static JsonNode decide(String key, long amount) {
        if (key == null) {
            throw new Json.Failure("an order without a key");
        }
        JsonNode answer = charge(key, amount);
        // Fields in sorted order, as eddy writes them (serde_json's maps are sorted): same bytes.
        ObjectNode out = Json.object();
        if (answer != null && "approved".equals(answer.path("status").textValue())) {
            out.put("amount", amount).put("gateway_ref", answer.path("charge_id").textValue())
                    .put("order_id", key).put("type", "payment_successful");
        } else {
            String reason = answer == null ? "gateway_unavailable" : answer.path("reason").textValue();
            out.put("amount", amount).put("order_id", key).put("reason", reason)
                    .put("type", "payment_failed");
        }
        return out;
    }

    /** The gateway's answer to one charge (null when it keeps failing), on this thread. */
    static JsonNode charge(String key, long amount) {
        ObjectNode body = Json.object();
        body.put("order_id", key).put("amount", amount);
        HttpRequest request = HttpRequest.newBuilder(URI.create(GATEWAY + "/charges"))
                .timeout(Duration.ofSeconds(2))
                .header("Idempotency-Key", key + ":charge")
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofByteArray(Json.write(body)))
                .build();
        for (int attempt = 1; ; attempt++) {
            try {
                HttpResponse<byte[]> r = HTTP.send(request, HttpResponse.BodyHandlers.ofByteArray());
                int status = r.statusCode();
                if (status == 200) {
                    return Json.MAPPER.readTree(r.body());
                }
                boolean again = status == 408 || status == 409 || status == 429 || status >= 500;
                if (!again || attempt >= ATTEMPTS) {
                    return null;
                }
            } catch (IOException e) {
                if (attempt >= ATTEMPTS) {
                    return null;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while charging " + key, e);
            }
            long ceiling = Math.min(MAX_BACKOFF_MS, BACKOFF_MS << (attempt - 1));
            try {
                Thread.sleep((long) (ceiling * Math.random()));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while charging " + key, e);
            }
        }
    }
}
