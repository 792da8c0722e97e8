package eddy.baseline;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyDescription;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.LogAndContinueProcessingExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

/** Runs one service as a Kafka Streams application until SIGINT/SIGTERM. */
final class Service {
    /** eddy's order pipeline files set commit_interval = "1s" (eddy's own default is 30 s, as Kafka Streams'). */
    static final long COMMIT_INTERVAL_MS = 1000;

    private Service() {}

    /** A builder that sees the application's configuration (as Kafka Streams recommends). */
    static org.apache.kafka.streams.StreamsBuilder builder(Properties config) {
        return new org.apache.kafka.streams.StreamsBuilder(
                new org.apache.kafka.streams.TopologyConfig(new StreamsConfig(config)));
    }

    /** A source of JSON values checked against {@code schema}, node named {@code name}; orders take their time from created_at. */
    static org.apache.kafka.streams.kstream.KStream<String, com.fasterxml.jackson.databind.JsonNode> source(
            org.apache.kafka.streams.StreamsBuilder b, String topic, Schemas.Schema schema, String name) {
        var consumed = org.apache.kafka.streams.kstream.Consumed.with(
                org.apache.kafka.common.serialization.Serdes.String(), Json.JsonSerde.checked(schema));
        if (schema == Schemas.ORDER) {
            consumed = consumed.withTimestampExtractor(new Schemas.CreatedAt());
        }
        return b.stream(topic, consumed.withName(name));
    }

    static Topology topology(String service, Topics topics, Properties config) {
        return switch (service) {
            case "payment" -> PaymentService.build(topics, config);
            case "inventory" -> InventoryService.build(topics, config);
            case "saga" -> OrderSaga.build(topics, config);
            default -> {
                Main.Options.fail("unknown service " + service);
                yield null;
            }
        };
    }

    static int describe(Main.Options o) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, "describe");
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, true);
        System.out.println(topology(o.required("service"), new Topics(o.get("suffix", null)), p).describe());
        return 0;
    }

    static int run(String service, Main.Options o) throws Exception {
        Topics topics = new Topics(o.get("suffix", null));
        String defaultId = switch (service) {
            case "payment" -> "payment-service";
            case "inventory" -> "inventory-service";
            default -> "order-saga";
        };
        // Without --app-id, eddy's rule: the file's id, plus -<suffix>.
        String appId = o.get("app-id", topics.name(defaultId));
        Properties p = config(o, appId);
        Topology topology = topology(service, topics, p);
        createDeadLetterTopic(p, topology, appId + "-dlq");
        return runUntilStopped(service, appId, topology, p);
    }

    /**
     * The settings every baseline application shares (one thread, at-least-once, the commit
     * interval, state directory, dead-lettering, producer linger), then the {@code --set} ones.
     */
    static Properties config(Main.Options o, String appId) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, o.number("commit-interval-ms", COMMIT_INTERVAL_MS));
        p.put(StreamsConfig.STATE_DIR_CONFIG,
                o.get("state-dir", Path.of(System.getProperty("java.io.tmpdir"), "eddy-baseline").toString()));
        // Bad records (unparsable, failing the schema, failing a step) go to <app-id>-dlq with
        // KIP-1034's headers, and processing goes on: eddy's on_error = "dead_letter".
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueProcessingExceptionHandler.class);
        p.put(StreamsConfig.ERRORS_DEAD_LETTER_QUEUE_TOPIC_NAME_CONFIG, appId + "-dlq");
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, true); // no global stores; quiets a warning
        // eddy's producers linger 1 ms (Kafka Streams' default for its producer is 100 ms).
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 1);
        for (String s : o.sets) {
            int eq = s.indexOf('=');
            if (eq <= 0) {
                Main.Options.fail("--set takes KEY=VALUE, not " + s);
            }
            p.put(s.substring(0, eq), s.substring(eq + 1));
        }
        return p;
    }

    /**
     * Runs {@code topology} until SIGINT/SIGTERM or a failure; prints "{@code baseline <name>: running
     * (application.id ...)}" to stderr once it is running. 0 after a clean stop, 1 after a failure.
     */
    static int runUntilStopped(String name, String appId, Topology topology, Properties p) throws Exception {
        KafkaStreams streams = new KafkaStreams(topology, p);
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean failed = new AtomicBoolean();
        AtomicBoolean announced = new AtomicBoolean();
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("baseline " + name + ": stream thread failed: " + e);
            failed.set(true);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && announced.compareAndSet(false, true)) {
                System.err.println("baseline " + name + ": running (application.id " + appId + ")");
            }
            if (now == KafkaStreams.State.ERROR) {
                failed.set(true);
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            stopped.countDown();
        }, "baseline-shutdown"));
        streams.start();
        stopped.await();
        if (failed.get()) {
            streams.close(Duration.ofSeconds(30));
            return 1;
        }
        return 0;
    }

    /**
     * Creates the dead-letter topic if it is missing, with as many partitions as the largest
     * source topic (as eddy does); the broker may refuse automatic topic creation.
     */
    static void createDeadLetterTopic(Properties p, Topology topology, String dlq) throws Exception {
        List<String> sources = new ArrayList<>();
        for (TopologyDescription.Subtopology st : topology.describe().subtopologies()) {
            for (TopologyDescription.Node n : st.nodes()) {
                if (n instanceof TopologyDescription.Source s && s.topicSet() != null) {
                    for (String t : s.topicSet()) {
                        if (!t.endsWith("-repartition")) {
                            sources.add(t);
                        }
                    }
                }
            }
        }
        Properties ap = new Properties();
        ap.put("bootstrap.servers", p.get(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG));
        try (Admin admin = Admin.create(ap)) {
            Set<String> existing = admin.listTopics().names().get();
            if (existing.contains(dlq)) {
                return;
            }
            int partitions = 1;
            List<String> present = sources.stream().filter(existing::contains).distinct().toList();
            if (!present.isEmpty()) {
                for (Map.Entry<String, TopicDescription> e : admin.describeTopics(present).allTopicNames().get().entrySet()) {
                    partitions = Math.max(partitions, e.getValue().partitions().size());
                }
            }
            try {
                admin.createTopics(List.of(new NewTopic(dlq, java.util.Optional.of(partitions), java.util.Optional.empty())))
                        .all().get();
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
    }
}
