package eddy.baseline;

/** The pipeline's topic names, with eddy's `--suffix` rule: `<topic>-<suffix>`. */
record Topics(String suffix) {
    String name(String topic) {
        return suffix == null || suffix.isEmpty() ? topic : topic + "-" + suffix;
    }

    String orders() {
        return name("orders");
    }

    String payments() {
        return name("payments");
    }

    String inventory() {
        return name("inventory");
    }

    String stock() {
        return name("stock");
    }

    String outcomes() {
        return name("order-outcomes");
    }
}
