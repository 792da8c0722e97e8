package eddy.baseline;

import java.util.Properties;
import org.apache.kafka.streams.Topology;

/**
 * Runs `pipe`, `count` or `join` (the Kafka Streams twins of eddy's minimal CLI workers) as one
 * Kafka Streams application with the baseline's settings ({@link Service#config}: one stream
 * thread, at-least-once, 1 s commits as eddy's workers' default, producer linger 1 ms) until
 * SIGINT/SIGTERM. Without {@code --app-id}, eddy's default ids: eddy-pipe, eddy-count, eddy-join.
 */
final class BasicWorker {
    private BasicWorker() {}

    static int run(String command, Main.Options o) throws Exception {
        String appId = o.get("app-id", "eddy-" + command);
        Properties p = Service.config(o, appId);
        Topology topology = switch (command) {
            case "pipe" -> Pipe.build(o, p);
            case "count" -> Count.build(o, p);
            default -> Join.build(o, p);
        };
        Service.createDeadLetterTopic(p, topology, appId + "-dlq");
        return Service.runUntilStopped(command, appId, topology, p);
    }
}
