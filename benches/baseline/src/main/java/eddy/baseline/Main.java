package eddy.baseline;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The command line: one service per process, plus the load generator and the outcome check.
 *
 * <pre>
 * java -jar baseline.jar payment|inventory|saga --bootstrap HOST:PORT [--app-id ID] [--suffix S]
 *      [--state-dir DIR] [--commit-interval-ms 1000] [--set streams.or.client.property=value ...]
 * java -jar baseline.jar generate --bootstrap HOST:PORT --suffix S[,S2...] [--count 1000] [--seed 1]
 *      [--products 100] [--stock 1000000 | --stock -1 (none)] [--rate 0 (as fast as possible)]
 * java -jar baseline.jar check --bootstrap HOST:PORT --suffix S[,S2] --expect N [--timeout-s 120]
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
            "           [--stock QTY|-1] [--rate PER_S|0]",
            "  check --bootstrap HOST:PORT --suffix S[,S2] --expect N [--timeout-s S] [--dump FILE]");

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
