package eddy.baseline;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;

/**
 * compare-basic.sh's topic and group administration:
 * {@code topics --create a,b --partitions 4 [--config k=v,...]} creates topics and waits until
 * every partition has a leader; {@code topics --delete REGEX} deletes the topics whose whole
 * name matches, and {@code --delete-groups REGEX} the consumer groups (a group whose member has
 * not left yet, as a closed Kafka Streams instance's until its session times out, stays).
 */
final class TopicAdmin {
    private TopicAdmin() {}

    static int run(Main.Options o) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", o.required("bootstrap"));
        try (Admin admin = Admin.create(p)) {
            String create = o.get("create", null);
            if (create != null) {
                create(admin, List.of(create.split(",")), (int) o.number("partitions", 4), o.get("config", ""));
            }
            String delete = o.get("delete", null);
            if (delete != null) {
                Pattern names = Pattern.compile(delete);
                List<String> topics = admin.listTopics().names().get(60, TimeUnit.SECONDS).stream()
                        .filter(t -> names.matcher(t).matches()).sorted().toList();
                admin.deleteTopics(topics).all().get(120, TimeUnit.SECONDS);
                System.err.println("topics: deleted " + topics.size() + " topic(s)");
            }
            String groups = o.get("delete-groups", null);
            if (groups != null) {
                Pattern names = Pattern.compile(groups);
                List<String> ids = admin.listGroups().all().get(60, TimeUnit.SECONDS).stream()
                        .map(GroupListing::groupId).filter(g -> names.matcher(g).matches()).sorted().toList();
                int deleted = 0;
                for (var e : admin.deleteConsumerGroups(ids).deletedGroups().entrySet()) {
                    try {
                        e.getValue().get(60, TimeUnit.SECONDS);
                        deleted++;
                    } catch (Exception ex) {
                        System.err.println("topics: group " + e.getKey() + " not deleted (still has a member?)");
                    }
                }
                System.err.println("topics: deleted " + deleted + " of " + ids.size() + " consumer group(s)");
            }
        }
        return 0;
    }

    static void create(Admin admin, List<String> topics, int partitions, String config) throws Exception {
        Map<String, String> configs = new HashMap<>();
        for (String kv : config.split(",")) {
            int eq = kv.indexOf('=');
            if (eq > 0) {
                configs.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
        List<NewTopic> nt = new ArrayList<>();
        for (String t : topics) {
            nt.add(new NewTopic(t, Optional.of(partitions), Optional.empty()).configs(configs));
        }
        admin.createTopics(nt).all().get(60, TimeUnit.SECONDS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            boolean ready;
            try {
                ready = admin.describeTopics(topics).allTopicNames().get(10, TimeUnit.SECONDS).values().stream()
                        .allMatch((TopicDescription d) -> d.partitions().size() == partitions
                                && d.partitions().stream().allMatch(pi -> pi.leader() != null && !pi.leader().isEmpty()));
            } catch (Exception e) {
                ready = false;
            }
            if (ready) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("topics have no leaders after 60 s");
            }
            Thread.sleep(200);
        }
    }
}
