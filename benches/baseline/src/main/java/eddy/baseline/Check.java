package eddy.baseline;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads a pipeline's `order-outcomes` until the expected number of orders has an outcome (and
 * a few quiet seconds more), then its `payments` and `inventory` topics to their ends, and
 * prints the count of each event kind and reason; checks that every order got exactly one
 * outcome. With two suffixes, also compares the outcome (kind and reason) of every order.
 */
final class Check {
    private Check() {}

    static int run(Main.Options o) throws Exception {
        String bootstrap = o.required("bootstrap");
        String[] suffixes = o.required("suffix").split(",");
        long expect = o.number("expect", -1);
        long timeoutS = o.number("timeout-s", 120);
        String dump = o.get("dump", null);
        int bad = 0;
        List<Map<String, String>> outcomes = new ArrayList<>();
        for (String s : suffixes) {
            Topics t = new Topics(s);
            Map<String, List<String>> byOrder = new HashMap<>();
            Map<String, Integer> kinds = new TreeMap<>();
            readOutcomes(bootstrap, t.outcomes(), expect, timeoutS, byOrder, kinds);
            int dup = 0;
            Map<String, String> one = new TreeMap<>();
            for (Map.Entry<String, List<String>> e : byOrder.entrySet()) {
                if (e.getValue().size() > 1) {
                    dup++;
                }
                one.put(e.getKey(), e.getValue().get(0));
            }
            outcomes.add(one);
            Map<String, Integer> others = new TreeMap<>();
            for (String topic : List.of(t.payments(), t.inventory())) {
                readToEnd(bootstrap, topic, others);
            }
            System.out.printf("%s: %d orders with an outcome (expected %d), %d with more than one%n",
                    t.outcomes(), byOrder.size(), expect, dup);
            kinds.forEach((k, n) -> System.out.printf("  %-40s %d%n", k, n));
            System.out.printf("%s + %s:%n", t.payments(), t.inventory());
            others.forEach((k, n) -> System.out.printf("  %-40s %d%n", k, n));
            if (dup > 0 || (expect >= 0 && byOrder.size() != expect)) {
                bad++;
            }
            if (dump != null) {
                try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(Path.of(dump + "." + s)))) {
                    one.forEach((k, v) -> w.println(k + " " + v));
                }
            }
        }
        if (outcomes.size() == 2) {
            int differ = 0;
            int shown = 0;
            Map<String, String> a = outcomes.get(0);
            Map<String, String> b = outcomes.get(1);
            java.util.Set<String> keys = new java.util.TreeSet<>(a.keySet());
            keys.addAll(b.keySet());
            for (String k : keys) {
                if (!java.util.Objects.equals(a.get(k), b.get(k))) {
                    differ++;
                    if (shown++ < 10) {
                        System.out.printf("  differs: %s: %s / %s%n", k, a.get(k), b.get(k));
                    }
                }
            }
            System.out.printf("orders whose outcome differs between %s and %s: %d%n", suffixes[0], suffixes[1], differ);
            if (differ > 0) {
                bad++;
            }
        }
        return bad == 0 ? 0 : 1;
    }

    private static KafkaConsumer<String, String> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("isolation.level", "read_uncommitted");
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    private static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic)) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        return tps;
    }

    private static String kind(String value) {
        try {
            JsonNode v = Json.MAPPER.readTree(value);
            String type = v.path("type").asText("?");
            return v.has("reason") ? type + " (" + v.get("reason").asText() + ")" : type;
        } catch (Exception e) {
            return "(not JSON)";
        }
    }

    private static void readOutcomes(String bootstrap, String topic, long expect, long timeoutS,
                                     Map<String, List<String>> byOrder, Map<String, Integer> kinds) {
        try (KafkaConsumer<String, String> c = consumer(bootstrap)) {
            List<TopicPartition> tps = partitions(c, topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + timeoutS * 1_000_000_000L;
            long quietSince = System.nanoTime();
            while (System.nanoTime() < deadline) {
                var records = c.poll(Duration.ofMillis(200));
                if (!records.isEmpty()) {
                    quietSince = System.nanoTime();
                }
                for (ConsumerRecord<String, String> r : records) {
                    String k = kind(r.value());
                    kinds.merge(k, 1, Integer::sum);
                    byOrder.computeIfAbsent(r.key(), x -> new ArrayList<>()).add(k);
                }
                boolean complete = expect >= 0 && byOrder.size() >= expect;
                if (complete && System.nanoTime() - quietSince > 5_000_000_000L) {
                    break;
                }
            }
        }
    }

    private static void readToEnd(String bootstrap, String topic, Map<String, Integer> kinds) {
        try (KafkaConsumer<String, String> c = consumer(bootstrap)) {
            List<TopicPartition> tps = partitions(c, topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (System.nanoTime() < deadline) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    done &= c.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    kinds.merge(kind(r.value()), 1, Integer::sum);
                }
            }
        }
    }
}
