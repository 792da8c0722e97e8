package eddy.baseline;

import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Writes the input of one basic workload, the records eddy's own benches use, with timestamps
 * 1 ms apart that end now (benches/common's first_timestamp): record i at {@code t0 + i}.
 * <ul>
 * <li>pipe ({@code --topic}): key {@code key-i}, value {@code value-i-} padded with {@code x} to
 *     100 bytes (benches/pipeline.rs);</li>
 * <li>count ({@code --topic}): key {@code key-(i mod keys)}, value {@code x} (benches/windowed.rs);</li>
 * <li>join ({@code --left}, {@code --right}): record i of each side keyed {@code key-(i mod keys)},
 *     values {@code l<i>} and {@code r<i>}, both at {@code t0 + i} (benches/join.rs, with the
 *     index in the value so that a checker can tell that record i joined record i).</li>
 * </ul>
 * The Java client's default partitioner (murmur2 of the key) co-partitions the join's topics.
 */
final class Load {
    private Load() {}

    static int run(Main.Options o) throws Exception {
        String workload = o.required("workload");
        long n = o.number("records", 1_000_000);
        long keys = o.number("keys", 10_000);
        Properties p = new Properties();
        p.put("bootstrap.servers", o.required("bootstrap"));
        p.put("acks", "all");
        p.put("linger.ms", 10);
        p.put("batch.size", 256 * 1024);
        AtomicLong failed = new AtomicLong();
        AtomicReference<Exception> first = new AtomicReference<>();
        long t0 = System.currentTimeMillis() - n;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (long i = 0; i < n; i++) {
                long ts = t0 + i;
                for (ProducerRecord<String, String> r : records(workload, o, i, keys, ts)) {
                    producer.send(r, (meta, e) -> {
                        if (e != null) {
                            failed.incrementAndGet();
                            first.compareAndSet(null, e);
                        }
                    });
                }
            }
            producer.flush();
        }
        if (failed.get() > 0) {
            System.err.println("load: " + failed.get() + " records not written: " + first.get());
            return 1;
        }
        System.err.printf("load: %s, %d records%s%n", workload, n, workload.equals("join") ? " per side" : "");
        return 0;
    }

    /** The record(s) number i of a workload: one, or one per side for the join. */
    static List<ProducerRecord<String, String>> records(String workload, Main.Options o, long i, long keys, long ts) {
        switch (workload) {
            case "pipe" -> {
                StringBuilder v = new StringBuilder(100).append("value-").append(i).append('-');
                while (v.length() < 100) {
                    v.append('x');
                }
                return List.of(new ProducerRecord<>(o.required("topic"), null, ts, "key-" + i, v.toString()));
            }
            case "count" -> {
                return List.of(new ProducerRecord<>(o.required("topic"), null, ts, "key-" + (i % keys), "x"));
            }
            case "join" -> {
                String key = "key-" + (i % keys);
                return List.of(new ProducerRecord<>(o.required("left"), null, ts, key, "l" + i),
                        new ProducerRecord<>(o.required("right"), null, ts, key, "r" + i));
            }
            default -> {
                Main.Options.fail("--workload is pipe, count or join, not " + workload);
                return List.of();
            }
        }
    }
}
