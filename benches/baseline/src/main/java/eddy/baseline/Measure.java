package eddy.baseline;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Watches one run of a basic workload (`pipe`, `count` or `join`, on eddy or Kafka Streams)
 * and checks its output; compare-basic.sh's measuring side. In order:
 * <ol>
 * <li>prints {@code listening}, then waits for {@code PID START_MS} in {@code --pid-file} (the
 *     worker the script has just started, and the wall clock just before);</li>
 * <li>every 50 ms notes the worker's CPU time ({@code /proc/PID/stat} utime+stime) and lists
 *     the consumer group {@code --group}'s committed offsets: once they reach the end of the
 *     input topics {@code --inputs} (written before the worker started), the worker has
 *     processed and flushed everything; its peak RSS ({@code VmHWM}) is taken then;</li>
 * <li>reads {@code --output} from its beginning to its end and checks it against what the
 *     workload must produce from {@code --records} records ({@code --keys} keys).</li>
 * </ol>
 * The output topic has {@code message.timestamp.type=LogAppendTime}: each output record carries
 * the time the broker appended it, so the reading can come afterwards. The measured window runs
 * from {@code from_ms}, the last output within 0.5 s of the first ({@code first_output_ms}), to
 * the output that completed the expected result ({@code last_ms}: the last new value, the last
 * key to reach its final count, the last pair); the input records that the outputs up to
 * {@code from_ms} account for ({@code from_inputs}) are not counted in it. Starting there leaves
 * out what a first output does not show: a cached count is written only at commit (Kafka
 * Streams), so its first burst (which ends at {@code from_ms}; the next comes a commit interval
 * later) also holds what was counted before it, and a producer still fetching the output
 * topic's metadata holds back the first outputs (eddy). CPU ticks at both ends of the window
 * are interpolated from the 50 ms samples.
 * Prints {@code name value} lines; exit status 0 if the output is complete and correct.
 */
final class Measure {
    /**
     * The window starts at the last output this long after the first: half the workers' 1 s
     * commit interval, so that a count written at commit ends its first burst there.
     */
    static final long WARM_UP_MS = 500;

    private Measure() {}

    /** What a workload's output must be. */
    interface Outputs {
        void add(int partition, String key, byte[] value, long appendedAt);

        /** Complete and correct. */
        boolean ok();

        /** When the output became complete. */
        long last();

        /**
         * Where the window starts, given the first output's time, and how many input records
         * the outputs up to then account for.
         */
        long[] windowStart(long firstMs);

        String summary();
    }

    static int run(Main.Options o) throws Exception {
        String workload = o.required("workload");
        String group = o.required("group");
        String output = o.required("output");
        List<String> inputs = List.of(o.required("inputs").split(","));
        long n = o.number("records", 1_000_000);
        long keys = o.number("keys", 10_000);
        long timeoutMs = o.number("timeout-s", 600) * 1000;
        Path pidFile = Path.of(o.required("pid-file"));
        Outputs outputs = switch (workload) {
            case "pipe" -> new PipeOutputs(n);
            case "count" -> new CountOutputs(n, keys);
            case "join" -> new JoinOutputs(n, keys);
            default -> {
                Main.Options.fail("--workload is pipe, count or join, not " + workload);
                yield null;
            }
        };
        Properties p = new Properties();
        p.put("bootstrap.servers", o.required("bootstrap"));
        Map<String, String> out = new LinkedHashMap<>();
        String status;
        List<long[]> cpu = new ArrayList<>(); // {wall clock ms, ticks}
        try (Admin admin = Admin.create(p)) {
            Map<TopicPartition, Long> ends = endOffsets(admin, inputs);
            System.out.println("listening");
            System.out.flush();
            String[] started = waitForPid(pidFile, timeoutMs);
            String pid = started[0];
            out.put("start_ms", started[1]);
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (true) {
                long now = System.currentTimeMillis();
                long[] at = proc(pid);
                if (at[0] < 0) {
                    status = "exited";
                    break;
                }
                cpu.add(new long[] {now, at[0]});
                if (committedToEnd(admin, group, ends)) {
                    out.put("done_ms", String.valueOf(now));
                    out.put("ticks_done", String.valueOf(at[0]));
                    out.put("hwm_kb", String.valueOf(at[1]));
                    status = "complete";
                    break;
                }
                if (now > deadline) {
                    status = "timeout";
                    break;
                }
                Thread.sleep(50);
            }
        }
        long[] read = readOutput(p, output, outputs);
        long[] from = outputs.windowStart(read[1]);
        out.put("status", status);
        out.put("outputs", String.valueOf(read[0]));
        out.put("first_output_ms", String.valueOf(read[1]));
        out.put("from_ms", String.valueOf(from[0]));
        out.put("from_inputs", String.valueOf(from[1]));
        out.put("last_ms", String.valueOf(outputs.last()));
        out.put("ticks_from", String.valueOf(ticksAt(cpu, from[0])));
        out.put("ticks_last", String.valueOf(ticksAt(cpu, outputs.last())));
        out.put("ok", outputs.ok() && status.equals("complete") ? "1" : "0");
        out.put("check", outputs.summary());
        out.forEach((k, v) -> System.out.println(k + " " + v));
        return out.get("ok").equals("1") ? 0 : 1;
    }

    /** CPU ticks at wall clock {@code ms}, interpolated between the samples around it (-1: none). */
    static double ticksAt(List<long[]> samples, long ms) {
        long[] before = null;
        for (long[] s : samples) {
            if (s[0] >= ms) {
                if (before == null) {
                    return s[1];
                }
                return before[1] + (s[1] - before[1]) * (double) (ms - before[0]) / Math.max(1, s[0] - before[0]);
            }
            before = s;
        }
        return before == null ? -1 : before[1];
    }

    /** The pid and start time the script writes once it has started the worker. */
    static String[] waitForPid(Path file, long timeoutMs) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (true) {
            if (Files.exists(file)) {
                String[] f = Files.readString(file).trim().split("\\s+");
                if (f.length == 2) {
                    return f;
                }
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("no pid in " + file);
            }
            Thread.sleep(10);
        }
    }

    static Map<TopicPartition, Long> endOffsets(Admin admin, List<String> topics) throws Exception {
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        admin.describeTopics(topics).allTopicNames().get(30, TimeUnit.SECONDS).forEach((t, d) ->
                d.partitions().forEach(pi -> latest.put(new TopicPartition(t, pi.partition()), OffsetSpec.latest())));
        Map<TopicPartition, Long> ends = new HashMap<>();
        admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).forEach((tp, r) -> ends.put(tp, r.offset()));
        return ends;
    }

    static boolean committedToEnd(Admin admin, String group, Map<TopicPartition, Long> ends) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(5, TimeUnit.SECONDS);
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            OffsetAndMetadata c = committed.get(e.getKey());
            if (e.getValue() > 0 && (c == null || c.offset() < e.getValue())) {
                return false;
            }
        }
        return true;
    }

    /** utime+stime (clock ticks) and VmHWM (kB) of a process; -1 when it is gone. */
    static long[] proc(String pid) {
        try {
            String stat = Files.readString(Path.of("/proc", pid, "stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            long hwm = -1;
            for (String line : Files.readAllLines(Path.of("/proc", pid, "status"))) {
                if (line.startsWith("VmHWM:")) {
                    hwm = Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
            return new long[] {Long.parseLong(f[11]) + Long.parseLong(f[12]), hwm};
        } catch (Exception e) {
            return new long[] {-1, -1};
        }
    }

    /** Feeds the whole topic (to its current end) to {@code outputs}: {records, first append time}. */
    static long[] readOutput(Properties p, String topic, Outputs outputs) {
        Properties c = new Properties();
        c.putAll(p);
        c.put("max.poll.records", 10_000);
        long records = 0;
        long first = -1;
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            consumer.partitionsFor(topic).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
            while (tps.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    if (r.timestampType() != TimestampType.LOG_APPEND_TIME) {
                        throw new IllegalStateException(topic + " does not have LogAppendTime timestamps");
                    }
                    records++;
                    first = first < 0 ? r.timestamp() : Math.min(first, r.timestamp());
                    String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
                    outputs.add(r.partition(), key, r.value(), r.timestamp());
                }
            }
        }
        return new long[] {records, first};
    }

    /** The number after {@code prefix} in {@code s} ({@code -1} if there is none). */
    static long number(String s, String prefix) {
        if (s == null || !s.startsWith(prefix)) {
            return -1;
        }
        try {
            return Long.parseLong(s.substring(prefix.length()));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /**
     * Outputs that each stand for {@code inputs} input records and must come once each, output
     * i of {@code n} first appended at {@code at[i]}.
     */
    abstract static class OnceEach implements Outputs {
        final long[] at;
        final int inputs;
        final String noun;
        long dups;
        long bad;

        OnceEach(long n, int inputs, String noun) {
            at = new long[(int) n];
            Arrays.fill(at, -1);
            this.inputs = inputs;
            this.noun = noun;
        }

        /** Output i came, appended at {@code appendedAt}; i < 0: a wrong output. */
        void seen(long i, long appendedAt) {
            if (i < 0 || i >= at.length) {
                bad++;
            } else if (at[(int) i] >= 0) {
                dups++;
            } else {
                at[(int) i] = appendedAt;
            }
        }

        long count() {
            return Arrays.stream(at).filter(t -> t >= 0).count();
        }

        @Override
        public boolean ok() {
            return count() == at.length && dups == 0 && bad == 0;
        }

        @Override
        public long last() {
            return Arrays.stream(at).max().orElse(-1);
        }

        @Override
        public long[] windowStart(long firstMs) {
            long from = Arrays.stream(at).filter(t -> t >= 0 && t <= firstMs + WARM_UP_MS).max().orElse(firstMs);
            return new long[] {from, inputs * Arrays.stream(at).filter(t -> t >= 0 && t <= from).count()};
        }

        @Override
        public String summary() {
            return String.format("%d/%d %s once, %d duplicates, %d wrong", count(), at.length, noun, dups, bad);
        }
    }

    /** pipe: every input record once, its value upper-cased. */
    static final class PipeOutputs extends OnceEach {
        PipeOutputs(long n) {
            super(n, 1, "records");
        }

        @Override
        public void add(int partition, String key, byte[] value, long appendedAt) {
            long i = number(key, "key-");
            seen(i >= 0 && Arrays.equals(value, expected(i)) ? i : -1, appendedAt);
        }

        static byte[] expected(long i) {
            StringBuilder v = new StringBuilder(100).append("VALUE-").append(i).append('-');
            while (v.length() < 100) {
                v.append('X');
            }
            return v.toString().getBytes(StandardCharsets.UTF_8);
        }
    }

    /** count: the last count of each key is its number of input records. */
    static final class CountOutputs implements Outputs {
        final long n;
        final int keys;
        final long[] latest;
        final long[] reachedAt;
        final List<long[]> all = new ArrayList<>(); // {appended at, key, count}
        long bad;

        CountOutputs(long n, long keys) {
            this.n = n;
            this.keys = (int) keys;
            latest = new long[this.keys];
            reachedAt = new long[this.keys];
            Arrays.fill(reachedAt, -1);
        }

        long expected(int k) {
            return n / keys + (k < n % keys ? 1 : 0);
        }

        @Override
        public void add(int partition, String key, byte[] value, long appendedAt) {
            long k = number(key, "key-");
            if (k < 0 || k >= keys || value == null || value.length != 8) {
                bad++;
                return;
            }
            long count = ByteBuffer.wrap(value).getLong();
            all.add(new long[] {appendedAt, k, count});
            latest[(int) k] = count;
            if (count == expected((int) k) && reachedAt[(int) k] < 0) {
                reachedAt[(int) k] = appendedAt;
            }
        }

        int right() {
            int right = 0;
            for (int k = 0; k < keys; k++) {
                right += latest[k] == expected(k) ? 1 : 0;
            }
            return right;
        }

        @Override
        public boolean ok() {
            return right() == keys && bad == 0;
        }

        @Override
        public long last() {
            return Arrays.stream(reachedAt).max().orElse(-1);
        }

        /** The input records counted by then: the sum of each key's last count written by then. */
        @Override
        public long[] windowStart(long firstMs) {
            long from = all.stream().mapToLong(r -> r[0]).filter(t -> t <= firstMs + WARM_UP_MS).max().orElse(firstMs);
            long[] upTo = new long[keys];
            for (long[] r : all) {
                if (r[0] <= from) {
                    upTo[(int) r[1]] = Math.max(upTo[(int) r[1]], r[2]);
                }
            }
            return new long[] {from, Arrays.stream(upTo).sum()};
        }

        @Override
        public String summary() {
            return String.format("%d/%d keys at their final count, %d wrong", right(), keys, bad);
        }
    }

    /** join: record i of the left joined with record i of the right, once each, and nothing else. */
    static final class JoinOutputs extends OnceEach {
        final long keys;

        JoinOutputs(long n, long keys) {
            super(n, 2, "pairs");
            this.keys = keys;
        }

        @Override
        public void add(int partition, String key, byte[] value, long appendedAt) {
            String v = value == null ? "" : new String(value, StandardCharsets.UTF_8);
            int plus = v.indexOf('+');
            long i = plus < 0 ? -1 : number(v.substring(0, plus), "l");
            long j = plus < 0 ? -1 : number(v.substring(plus + 1), "r");
            seen(i == j && i >= 0 && number(key, "key-") == i % keys ? i : -1, appendedAt);
        }
    }
}
