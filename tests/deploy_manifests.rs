//! The deployment files of `deploy/` agree with the code and with the
//! topology they run.
//!
//! `deploy/k8s/` runs the order pipeline's payment service
//! (`examples/orders/config/payment.toml`) on Kubernetes, from the image
//! `deploy/Dockerfile` builds. Nothing there is compiled, so nothing else
//! notices when the code, the topology file or one manifest changes and the
//! others do not. This test reads them all (no cluster, no broker) and
//! checks that:
//!
//! - the autoscalers watch the topology's consumer group (its application
//!   id) and its input topic, stop at that topic's partition count, and
//!   the HPA scales on the lag metric eddy exports;
//! - the probes ask eddy's HTTP server for routes it answers, on the port
//!   the worker serves (`--http`), the port the container, the Service, the
//!   scrape annotations and the image name too;
//! - the grace period outlasts a commit interval;
//! - the container runs the topology file read here, from where the image
//!   copies it, with the brokers of the ConfigMap and its state directory
//!   on the pod's volume claim;
//! - the StatefulSet, the PodDisruptionBudget, the Service and the HPA's
//!   metric select the workers' pods.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy::config::{Pipeline, Registry};
use eddy::kafka::StreamsConfig;
use eddy::observability::{HttpServer, Metrics};
use yaml_serde::Value;

/// Partitions of `orders`, the payment service's input topic: the order
/// pipeline's demo creates each of its topics with this many
/// (`eddy-orders demo --partitions`, default 4, in
/// `examples/orders/src/demo/mod.rs`), and `deploy/README.md` asks for as
/// many on a real cluster. A worker beyond that count would hold no
/// partition, so both autoscalers stop there.
const INPUT_PARTITIONS: u64 = 4;

/// The topology file the StatefulSet runs, from the workspace root.
const TOPOLOGY: &str = "examples/orders/config/payment.toml";

/// Where the image puts the topology file's folder.
const IMAGE_CONFIG_DIR: &str = "/app/config";

/// The gauge of consumer lag per owned input partition, labelled `topic`
/// and `partition` (`src/observability/metrics.rs`).
const LAG_METRIC: &str = "eddy_consumer_lag";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The payment service's topology, compiled as its worker compiles it (it
/// names no custom processor, so eddy's own registry is enough).
fn topology() -> Pipeline {
    Pipeline::load(&root().join(TOPOLOGY), &Registry::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// The topology's input topic: the autoscalers watch one topic.
fn input_topic(p: &Pipeline) -> String {
    let topics = p.topology.input_topics(&p.config.application_id);
    assert_eq!(topics.len(), 1, "one input topic expected: {topics:?}");
    topics[0].clone()
}

/// Every manifest of `deploy/k8s/`, by kind (one of each).
fn manifests() -> BTreeMap<String, Value> {
    let dir = root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut by_kind = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // One document per file: yaml_serde refuses more.
        let manifest: Value =
            yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let kind = text_at(&manifest, &["kind"]).to_owned();
        let other = by_kind.insert(kind.clone(), manifest);
        assert!(other.is_none(), "two manifests of kind {kind}");
    }
    by_kind
}

/// The manifest of `kind`.
fn kind<'a>(all: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    all.get(name)
        .unwrap_or_else(|| panic!("no {name} in deploy/k8s/"))
}

/// The value under the keys of `path` (null if one is missing).
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| &v[*key])
}

/// The string under `path`.
fn text_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

/// The whole number under `path`.
fn number_at(v: &Value, path: &[&str]) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("no whole number at {}", path.join(".")))
}

/// The sequence under `path`.
fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("no list at {}", path.join(".")))
}

/// Labels, or a label selector's `matchLabels`, as name-value pairs.
fn labels(v: &Value) -> Vec<(&str, &str)> {
    v.as_mapping()
        .unwrap_or_else(|| panic!("labels are a mapping, not {v:?}"))
        .iter()
        .map(|(k, v)| (k.as_str().unwrap(), v.as_str().expect("a string value")))
        .collect()
}

/// Fails unless `selector` is not empty and every pair of it is among
/// `pods`' labels.
fn assert_selects<'a>(selector: &[(&'a str, &'a str)], pods: &[(&'a str, &'a str)], who: &str) {
    assert!(!selector.is_empty(), "{who} selects every pod");
    for pair in selector {
        assert!(
            pods.contains(pair),
            "{who} selects {pair:?}, which the workers' pods lack: {pods:?}"
        );
    }
}

/// The StatefulSet's only container.
fn container(sts: &Value) -> &Value {
    let containers = list_at(sts, &["spec", "template", "spec", "containers"]);
    assert_eq!(containers.len(), 1, "the worker runs alone in its pod");
    &containers[0]
}

/// The container's arguments.
fn args(container: &Value) -> Vec<&str> {
    list_at(container, &["args"])
        .iter()
        .map(|a| a.as_str().expect("string arguments"))
        .collect()
}

/// The value `args` gives the flag `name` (exactly once).
fn flag<'a>(args: &[&'a str], name: &str) -> &'a str {
    let values: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1])
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{name} given {} times: {args:?}",
        values.len()
    );
    values[0]
}

/// A port as a probe or a Service names it, a number or the name of one
/// of the container's ports, as a number.
fn port_number(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port number or name");
    list_at(container, &["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .map(|p| number_at(p, &["containerPort"]))
        .unwrap_or_else(|| panic!("the container has no port named {name}"))
}

/// The ScaledObject's only trigger, a Kafka one.
fn kafka_trigger(scaled_object: &Value) -> &Value {
    let triggers = list_at(scaled_object, &["spec", "triggers"]);
    assert_eq!(triggers.len(), 1, "one trigger expected");
    assert_eq!(text_at(&triggers[0], &["type"]), "kafka");
    &triggers[0]
}

/// The HPA's only metric, an External one (its `external` part).
fn external_metric(hpa: &Value) -> &Value {
    let metrics = list_at(hpa, &["spec", "metrics"]);
    assert_eq!(metrics.len(), 1, "one metric expected");
    assert_eq!(text_at(&metrics[0], &["type"]), "External");
    &metrics[0]["external"]
}

/// Whether `metrics` has a metric named `name`. Its registry refuses a
/// second metric of a name it holds, and asking is the only way to tell:
/// `gather()` and [`Metrics::encode`] leave out labelled metrics without
/// samples, such as the lag of a worker that owns no partition yet.
fn exports(metrics: &Metrics, name: &str) -> bool {
    let probe = prometheus::IntGauge::new(name, "probe").expect("a valid metric name");
    match metrics.registry().register(Box::new(probe)) {
        Ok(()) => false,
        Err(prometheus::Error::AlreadyReg) => true,
        Err(e) => panic!("registering {name}: {e}"),
    }
}

/// The status eddy's HTTP server answers `GET path` with.
fn status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// The instructions of `deploy/Dockerfile` (name, arguments), with
/// continued lines joined and comments left out.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut line = String::new();
    for part in text.lines().map(str::trim) {
        if part.is_empty() || part.starts_with('#') {
            continue;
        }
        if let Some(start) = part.strip_suffix('\\') {
            line.push_str(start);
            line.push(' ');
            continue;
        }
        line.push_str(part);
        let (name, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        instructions.push((name.to_uppercase(), rest.trim().to_owned()));
        line.clear();
    }
    instructions
}

/// The arguments of the Dockerfile's only `name` instruction.
fn instruction<'a>(instructions: &'a [(String, String)], name: &str) -> &'a str {
    let found: Vec<&str> = instructions
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one {name} expected in deploy/Dockerfile");
    found[0]
}

/// Whether a `COPY` of the Dockerfile copies `source` to `destination`.
fn copies(instructions: &[(String, String)], source: &str, destination: &str) -> bool {
    instructions
        .iter()
        .filter(|(name, _)| name == "COPY")
        .any(|(_, rest)| {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            words.split_last().is_some_and(|(last, sources)| {
                last.trim_end_matches('/') == destination && sources.contains(&source)
            })
        })
}

#[test]
fn deploy_k8s_holds_one_manifest_of_each_kind() {
    let kinds: Vec<String> = manifests().into_keys().collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "ScaledObject",
            "Service",
            "StatefulSet"
        ]
    );
}

#[test]
fn the_scaled_object_watches_the_payment_group_and_its_input_topic() {
    let p = topology();
    let m = manifests();
    let trigger = kafka_trigger(kind(&m, "ScaledObject"));
    // eddy's consumer group is the application id.
    assert_eq!(
        text_at(trigger, &["metadata", "consumerGroup"]),
        p.config.application_id
    );
    assert_eq!(text_at(trigger, &["metadata", "topic"]), input_topic(&p));
    assert_eq!(
        text_at(trigger, &["metadata", "bootstrapServers"]),
        text_at(kind(&m, "ConfigMap"), &["data", "KAFKA_BOOTSTRAP"]),
        "KEDA and the workers must read the same cluster"
    );
}

#[test]
fn the_autoscalers_scale_the_workers_up_to_the_input_partition_count() {
    let m = manifests();
    let scaled = kind(&m, "ScaledObject");
    let hpa = kind(&m, "HorizontalPodAutoscaler");
    assert_eq!(
        number_at(scaled, &["spec", "maxReplicaCount"]),
        INPUT_PARTITIONS
    );
    assert_eq!(number_at(hpa, &["spec", "maxReplicas"]), INPUT_PARTITIONS);
    assert_eq!(number_at(scaled, &["spec", "minReplicaCount"]), 1);
    assert_eq!(number_at(hpa, &["spec", "minReplicas"]), 1);
    // KEDA keeps to the partition count only with idle consumers refused.
    assert_eq!(
        text_at(kafka_trigger(scaled), &["metadata", "allowIdleConsumers"]),
        "false"
    );
    let sts = text_at(kind(&m, "StatefulSet"), &["metadata", "name"]);
    for target in [
        &scaled["spec"]["scaleTargetRef"],
        &hpa["spec"]["scaleTargetRef"],
    ] {
        assert_eq!(text_at(target, &["kind"]), "StatefulSet");
        assert_eq!(text_at(target, &["name"]), sts);
    }
    // The two alternatives aim at the same lag per worker.
    let per_worker = |v: &Value, path: &[&str]| -> u64 {
        text_at(v, path)
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.join(".")))
    };
    assert_eq!(
        per_worker(kafka_trigger(scaled), &["metadata", "lagThreshold"]),
        per_worker(external_metric(hpa), &["target", "averageValue"])
    );
}

#[test]
fn the_hpa_scales_on_the_lag_eddy_exports_for_the_input_topic() {
    let p = topology();
    let m = manifests();
    let metric = external_metric(kind(&m, "HorizontalPodAutoscaler"));
    let name = text_at(metric, &["metric", "name"]);
    assert_eq!(name, LAG_METRIC);
    assert!(exports(&Metrics::new(), name), "eddy exports no {name}");
    // The check can fail: a name eddy does not export is taken.
    assert!(!exports(&Metrics::new(), &format!("{name}_not_exported")));
    assert_eq!(
        text_at(metric, &["metric", "selector", "matchLabels", "topic"]),
        input_topic(&p)
    );
    assert_eq!(text_at(metric, &["target", "type"]), "AverageValue");
}

#[test]
fn probes_ports_and_scrape_annotations_name_the_port_the_worker_serves() {
    let m = manifests();
    let sts = kind(&m, "StatefulSet");
    let c = container(sts);
    let http: SocketAddr = flag(&args(c), "--http")
        .parse()
        .expect("--http takes ip:port");
    assert!(
        http.ip().is_unspecified(),
        "--http {http} cannot be reached from outside the pod"
    );
    let port = u64::from(http.port());

    let readiness = &c["readinessProbe"]["httpGet"];
    let liveness = &c["livenessProbe"]["httpGet"];
    assert_eq!(text_at(readiness, &["path"]), "/ready");
    assert_eq!(text_at(liveness, &["path"]), "/health");
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        if !get.is_null() {
            assert_eq!(port_number(c, &get["port"]), port, "{probe}");
        }
    }
    let declared: Vec<u64> = list_at(c, &["ports"])
        .iter()
        .map(|p| number_at(p, &["containerPort"]))
        .collect();
    assert_eq!(declared, [port], "the container's ports");

    let annotations = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(text_at(annotations, &["prometheus.io/scrape"]), "true");
    assert_eq!(
        text_at(annotations, &["prometheus.io/port"]),
        port.to_string()
    );
    let scrape = text_at(annotations, &["prometheus.io/path"]);

    let service_ports = list_at(kind(&m, "Service"), &["spec", "ports"]);
    assert_eq!(service_ports.len(), 1);
    assert_eq!(number_at(&service_ports[0], &["port"]), port);
    assert_eq!(port_number(c, &service_ports[0]["targetPort"]), port);

    let docker = dockerfile();
    let exposed = instruction(&docker, "EXPOSE");
    assert_eq!(exposed, port.to_string(), "the image's EXPOSE");

    // eddy's HTTP server answers the probes' and the scrape's paths (a
    // worker without tasks is ready), and 404 to others.
    let server = HttpServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        axum::Router::new(),
    )
    .unwrap();
    for path in [
        text_at(readiness, &["path"]),
        text_at(liveness, &["path"]),
        scrape,
    ] {
        assert_eq!(status(server.addr(), path), 200, "GET {path}");
    }
    assert_eq!(status(server.addr(), "/no-such-route"), 404);
}

#[test]
fn the_grace_period_outlasts_a_commit_interval() {
    let p = topology();
    let m = manifests();
    let grace = Duration::from_secs(number_at(
        kind(&m, "StatefulSet"),
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    ));
    // The longest default commit interval (at-least-once's, 30 s) and the
    // one the file sets.
    let default = StreamsConfig::new(&p.config.application_id).commit_interval_or_default();
    let longest = default.max(p.config.commit_interval_or_default());
    assert!(
        grace > longest,
        "a grace period of {grace:?} does not outlast a commit interval of {longest:?}"
    );
}

#[test]
fn the_container_runs_the_tested_topology_file_from_the_image() {
    let m = manifests();
    let c = container(kind(&m, "StatefulSet"));
    let args = args(c);
    let file = Path::new(TOPOLOGY).file_name().unwrap().to_str().unwrap();
    assert_eq!(
        flag(&args, "--config"),
        format!("{IMAGE_CONFIG_DIR}/{file}")
    );
    // The args go to the image's entrypoint, eddy-orders, whose `run` reads
    // topology files that name the pipeline's processors.
    assert!(
        at(c, &["command"]).is_null(),
        "the container replaces the entrypoint"
    );
    assert_eq!(args.iter().find(|a| !a.starts_with('-')), Some(&"run"));
    let docker = dockerfile();
    let entrypoint: Vec<String> =
        serde_json::from_str(instruction(&docker, "ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, ["eddy-orders"]);
    let folder = Path::new(TOPOLOGY).parent().unwrap().to_str().unwrap();
    assert!(
        copies(&docker, folder, IMAGE_CONFIG_DIR),
        "deploy/Dockerfile does not copy {folder} to {IMAGE_CONFIG_DIR}"
    );
}

#[test]
fn the_worker_takes_its_brokers_from_the_config_map() {
    let m = manifests();
    let c = container(kind(&m, "StatefulSet"));
    let brokers = flag(&args(c), "--brokers");
    let var = brokers
        .strip_prefix("$(")
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--brokers {brokers} is not a $(VARIABLE)"));
    // Kubernetes leaves $(X) as it is when the container has no X.
    let env = list_at(c, &["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
        .unwrap_or_else(|| panic!("the container has no {var}"));
    let source = &env["valueFrom"]["configMapKeyRef"];
    let config_map = kind(&m, "ConfigMap");
    assert_eq!(
        text_at(source, &["name"]),
        text_at(config_map, &["metadata", "name"])
    );
    let servers = text_at(config_map, &["data", text_at(source, &["key"])]);
    assert!(!servers.is_empty());
}

#[test]
fn the_state_directory_is_on_the_pods_volume_claim() {
    let m = manifests();
    let sts = kind(&m, "StatefulSet");
    let c = container(sts);
    let state_dir = flag(&args(c), "--state-dir");
    let mount = list_at(c, &["volumeMounts"])
        .iter()
        .find(|v| v["mountPath"].as_str() == Some(state_dir))
        .unwrap_or_else(|| panic!("nothing is mounted at --state-dir {state_dir}"));
    assert_ne!(mount["readOnly"].as_bool(), Some(true));
    let name = text_at(mount, &["name"]);
    let claims: Vec<&str> = list_at(sts, &["spec", "volumeClaimTemplates"])
        .iter()
        .map(|t| text_at(t, &["metadata", "name"]))
        .collect();
    assert!(
        claims.contains(&name),
        "{state_dir} is on volume {name}, not on a claim of {claims:?}"
    );
}

#[test]
fn the_pods_run_as_the_images_user_on_a_read_only_root() {
    let m = manifests();
    let sts = kind(&m, "StatefulSet");
    let pod = &sts["spec"]["template"]["spec"]["securityContext"];
    let docker = dockerfile();
    let user = instruction(&docker, "USER");
    let uid: u64 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is not a numeric uid"));
    assert_ne!(uid, 0);
    assert_eq!(number_at(pod, &["runAsUser"]), uid);
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true));
    let c = container(sts);
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
}

#[test]
fn the_statefulset_budget_service_and_hpa_select_the_workers() {
    let m = manifests();
    let sts = kind(&m, "StatefulSet");
    let pods = labels(&sts["spec"]["template"]["metadata"]["labels"]);
    let selector = labels(&sts["spec"]["selector"]["matchLabels"]);
    assert_selects(&selector, &pods, "the StatefulSet");
    let pdb = kind(&m, "PodDisruptionBudget");
    assert_selects(
        &labels(&pdb["spec"]["selector"]["matchLabels"]),
        &pods,
        "the PodDisruptionBudget",
    );
    assert_eq!(number_at(pdb, &["spec", "maxUnavailable"]), 1);
    let service = kind(&m, "Service");
    assert_selects(&labels(&service["spec"]["selector"]), &pods, "the Service");
    assert_eq!(text_at(service, &["spec", "clusterIP"]), "None", "headless");
    assert_eq!(
        text_at(sts, &["spec", "serviceName"]),
        text_at(service, &["metadata", "name"])
    );
    // Every service of the pipeline reads `orders`: besides the metric's own
    // labels, the HPA's selector must name this service's pods.
    let hpa = external_metric(kind(&m, "HorizontalPodAutoscaler"));
    let pod_part: Vec<(&str, &str)> = labels(&hpa["metric"]["selector"]["matchLabels"])
        .into_iter()
        .filter(|(name, _)| !["topic", "partition"].contains(name))
        .collect();
    assert_selects(&pod_part, &pods, "the HPA's lag metric");
}
