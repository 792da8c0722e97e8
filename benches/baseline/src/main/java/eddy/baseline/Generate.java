package eddy.baseline;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Produces the order pipeline's input as eddy's order bench does: the stock level of each
 * product (`stock` topic, timestamp 0), then `order_created` events keyed by order id, with the
 * same deterministic generator as eddy-orders' `order_created` (src/generate.rs). Each record is
 * written to the topics of every suffix given, so that two pipelines can get the same input.
 */
final class Generate {
    private Generate() {}

    /** splitmix64, as generate.rs's mix. */
    static long mix(long i) {
        long z = i + 0x9e3779b97f4a7c15L;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    private static final DateTimeFormatter SECONDS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss").withZone(ZoneOffset.UTC);

    /** RFC 3339 in UTC with the fraction's trailing zeros dropped, as the Rust `time` crate writes it. */
    static String rfc3339(long ms) {
        String s = SECONDS.format(Instant.ofEpochMilli(ms));
        long frac = Math.floorMod(ms, 1000L);
        if (frac == 0) {
            return s + "Z";
        }
        String f = String.format("%03d", frac).replaceAll("0+$", "");
        return s + "." + f + "Z";
    }

    /** Where the customers live, as generate.rs's CITIES. */
    private static final String[][] CITIES = {
        {"Lyon", "FR"}, {"Porto", "PT"}, {"Leeds", "GB"}, {"Graz", "AT"},
        {"Ghent", "BE"}, {"Turku", "FI"}, {"Bergen", "NO"}, {"Cork", "IE"},
    };

    /** Order i of generator seed: 1-3 items of `products` products, 1-4 of each, at 1.00-99.99. */
    static ObjectNode orderCreated(long seed, long i, long products, long createdAtMs) {
        long r = mix((seed * 1_000_003L) ^ i);
        long n = 1 + Long.remainderUnsigned(r, 3);
        long p = Math.max(products, 1);
        // Keys in the order serde_json writes them (sorted), so the bytes match eddy's generator.
        ObjectNode o = Json.object();
        long user = (r >>> 40) % 1000;
        o.put("created_at", rfc3339(createdAtMs));
        o.put("email", "shopper." + user + "@example.com");
        ArrayNode items = o.putArray("items");
        for (long j = 0; j < n; j++) {
            long x = mix(r ^ j);
            items.addObject()
                    .put("product_id", "product-" + Long.remainderUnsigned(x, p))
                    .put("qty", 1 + (x >>> 20) % 4)
                    .put("unit_price", 100 + (x >>> 32) % 9_900);
        }
        o.put("order_id", "order-" + seed + "-" + i);
        String[] city = CITIES[(int) (user % CITIES.length)];
        o.putObject("shipping_address")
                .put("city", city[0])
                .put("country", city[1])
                .put("name", "Shopper " + user)
                .put("postal_code", String.format("PC-%05d", (user * 7_919) % 100_000))
                .put("street", (1 + user % 97) + " Harbour Street");
        o.put("type", "order_created");
        o.put("user_id", "user-" + user);
        return o;
    }

    static int run(Main.Options o) throws Exception {
        String bootstrap = o.required("bootstrap");
        String[] suffixes = o.required("suffix").split(",");
        long count = o.number("count", 1000);
        long seed = o.number("seed", 1);
        long products = o.number("products", 100);
        long stock = o.number("stock", 1_000_000);
        long rate = o.number("rate", 0);
        long linger = o.number("linger-ms", 5);

        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", Long.toString(linger));
        try (KafkaProducer<String, String> producer =
                     new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            if (stock >= 0) {
                for (long i = 0; i < products; i++) {
                    String id = "product-" + i;
                    ObjectNode level = Json.object().put("product_id", id).put("qty", stock);
                    String value = Json.MAPPER.writeValueAsString(level);
                    for (String s : suffixes) {
                        sent.add(producer.send(new ProducerRecord<>(new Topics(s).stock(), null, 0L, id, value)));
                    }
                }
                producer.flush();
                for (Future<RecordMetadata> f : sent) {
                    f.get(30, TimeUnit.SECONDS);
                }
                sent.clear();
            }
            long start = System.nanoTime();
            for (long i = 0; i < count; i++) {
                if (rate > 0) {
                    long due = start + i * 1_000_000_000L / rate;
                    long wait = due - System.nanoTime();
                    if (wait > 0) {
                        TimeUnit.NANOSECONDS.sleep(wait);
                    }
                }
                long now = System.currentTimeMillis();
                ObjectNode order = orderCreated(seed, i, products, now);
                String id = order.get("order_id").textValue();
                String value = Json.MAPPER.writeValueAsString(order);
                for (String s : suffixes) {
                    sent.add(producer.send(new ProducerRecord<>(new Topics(s).orders(), null, now, id, value)));
                }
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) {
                f.get(60, TimeUnit.SECONDS);
            }
            double secs = (System.nanoTime() - start) / 1e9;
            System.out.printf("produced %d order_created events to each of %s in %.2f s%n",
                    count, String.join(", ", List.of(suffixes).stream().map(s -> new Topics(s).orders()).toList()), secs);
        }
        return 0;
    }
}
