package eddy.baseline;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The command line: one service per process, plus the load generator and the outcome check;
 * and the three basic workers of compare-basic.sh with their load generator, meter and topic admin.
 *
 * <pre>
 * java -jar baseline.jar payment|inventory|saga --bootstrap HOST:PORT [--app-id ID] [--suffix S]
 *      [--state-dir DIR] [--commit-interval-ms 1000] [--set streams.or.client.property=value ...]
 * java -jar baseline.jar generate --bootstrap HOST:PORT --suffix S[,S2...] [--count 1000] [--seed 1]
 *      [--products 100] [--stock 1000000 | --stock -1 (none)] [--rate 0 (as fast as possible)]
 *      [--linger-ms 5]
 * java -jar baseline.jar check --bootstrap HOST:PORT --suffix S[,S2] --expect N [--timeout-s 120]
 *
 * java -jar baseline.jar pipe  --bootstrap HOST:PORT --input T --output U [--app-id eddy-pipe] [...]
 * java -jar baseline.jar count --bootstrap HOST:PORT --input T --output U [--app-id eddy-count] [--store counts] [...]
 * java -jar baseline.jar join  --bootstrap HOST:PORT --left L --right R --output O [--app-id eddy-join]
 *      [--window-ms 3600000] [...]          (... = --state-dir, --commit-interval-ms, --set as above)
 * java -jar baseline.jar load    --bootstrap HOST:PORT --workload pipe|count|join (--topic T | --left L --right R)
 *      [--records 1000000] [--keys 10000]
 * java -jar baseline.jar measure --bootstrap HOST:PORT --workload W --group APP --inputs T[,T2] --output U
 *      --pid-file F [--records N] [--keys 10000] [--timeout-s 600]
 * java -jar baseline.jar topics  --bootstrap HOST:PORT [--create A,B --partitions 4 [--config K=V,...]]
 *      [--delete REGEX] [--delete-groups REGEX]
 * </pre>
 */
public final class Main {
    private Main() {}

    static final String USAGE = String.join("\n",
            "usage: java -jar baseline.jar <command> [options]",
            "  payment|inventory|saga --bootstrap HOST:PORT [--app-id ID] [--suffix S] [--state-dir DIR]",
            "                         [--commit-interval-ms MS] [--set KEY=VALUE]...",
            "  describe --service payment|inventory|saga [--suffix S]   (prints the topology)",
            "  generate --bootstrap HOST:PORT --suffix S[,S2...] [--count N] [--seed N] [--products N]",
            "           [--stock QTY|-1] [--rate PER_S|0] [--linger-ms 5]",
            "  check --bootstrap HOST:PORT --suffix S[,S2] --expect N [--timeout-s S] [--dump FILE]",
            "  pipe|count --bootstrap HOST:PORT --input T --output U [--app-id ID] [--store NAME (count)]",
            "  join --bootstrap HOST:PORT --left L --right R --output O [--app-id ID] [--window-ms MS]",
            "       (pipe, count, join: also --state-dir, --commit-interval-ms, --set as the services)",
            "  load --bootstrap HOST:PORT --workload pipe|count|join (--topic T | --left L --right R)",
            "       [--records N] [--keys N]",
            "  measure --bootstrap HOST:PORT --workload W --group APP --inputs T[,T2] --output U --pid-file F",
            "          [--records N] [--keys N] [--timeout-s S]",
            "  topics --bootstrap HOST:PORT [--create A,B --partitions N [--config K=V,...]] [--delete REGEX]",
            "         [--delete-groups REGEX]");

    public static void main(String[] args) throws Exception {
        // Kafka logs through slf4j-simple: warnings and errors only, unless asked otherwise.
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        if (args.length == 0 || args[0].equals("-h") || args[0].equals("--help")) {
            System.out.println(USAGE);
            return;
        }
        String command = args[0];
        Options o = new Options(args);
        int code;
        switch (command) {
            case "payment", "inventory", "saga" -> code = Service.run(command, o);
            case "describe" -> code = Service.describe(o);
            case "generate" -> code = Generate.run(o);
            case "check" -> code = Check.run(o);
            case "pipe", "count", "join" -> code = BasicWorker.run(command, o);
            case "load" -> code = Load.run(o);
            case "measure" -> code = Measure.run(o);
            case "topics" -> code = TopicAdmin.run(o);
            default -> {
                System.err.println("baseline: unknown command " + command + "\n" + USAGE);
                code = 2;
            }
        }
        System.exit(code);
    }

    /** `--name value` options; `--set` may repeat. */
    static final class Options {
        private final Map<String, String> values = new HashMap<>();
        final List<String> sets = new ArrayList<>();

        Options(String[] args) {
            for (int i = 1; i < args.length; i++) {
                String a = args[i];
                if (!a.startsWith("--")) {
                    fail("unexpected argument " + a);
                }
                String name = a.substring(2);
                String value;
                int eq = name.indexOf('=');
                if (eq >= 0 && !name.equals("set")) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                } else {
                    if (i + 1 >= args.length) {
                        fail(a + " needs a value");
                    }
                    value = args[++i];
                }
                if (name.equals("set")) {
                    sets.add(value);
                } else {
                    values.put(name, value);
                }
            }
        }

        String get(String name, String dflt) {
            return values.getOrDefault(name, dflt);
        }

        String required(String name) {
            String v = values.get(name);
            if (v == null) {
                fail("--" + name + " is required");
            }
            return v;
        }

        long number(String name, long dflt) {
            String v = values.get(name);
            try {
                return v == null ? dflt : Long.parseLong(v);
            } catch (NumberFormatException e) {
                fail("--" + name + " takes a number, not " + v);
                return dflt;
            }
        }

        static void fail(String message) {
            System.err.println("baseline: " + message + "\n" + USAGE);
            System.exit(2);
        }
    }
}
