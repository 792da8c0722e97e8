//! The ACLs an application needs, least privilege: what its topology reads
//! and writes, its own internal topics, consumer group and transactional
//! ids, nothing else; as `kafka-acls.sh` commands, as JSON, or created
//! through the admin API.
//!
//! ```
//! use eddy::kafka::acls::{required_acls, Operation};
//! use eddy::kafka::StreamsConfig;
//! use eddy::serde::StringSerde;
//! use eddy::topology::StreamsBuilder;
//! let b = StreamsBuilder::new();
//! b.stream("orders", StringSerde, StringSerde).to("paid", StringSerde, StringSerde);
//! let acls = required_acls(&b.build().unwrap(), &StreamsConfig::new("payment"), "User:payment");
//! let read: Vec<_> = acls.iter().filter(|a| a.name == "orders").map(|a| a.operation).collect();
//! assert_eq!(read, [Operation::Read, Operation::Describe]);
//! ```

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Serialize;

use super::{Guarantee, StreamsConfig};
use crate::error::Error;
use crate::topology::Topology;

/// What an ACL is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// A producer's transactional id.
    TransactionalId,
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PatternType {
    /// The name itself.
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

/// What an ACL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operation {
    /// Consume a topic; join a group.
    Read,
    /// Produce to a topic; use a transactional id.
    Write,
    /// Create a topic.
    Create,
    /// See a topic's or group's metadata.
    Describe,
    /// Read a topic's configs.
    DescribeConfigs,
}

/// One ALLOW ACL, its parts named as Kafka's tools name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acl {
    /// What it is on.
    pub resource_type: ResourceType,
    /// The resource's name, or its prefix.
    pub name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// Who: `User:<name>`.
    pub principal: String,
    /// From where (`*`: any host).
    pub host: &'static str,
    /// What it allows.
    pub operation: Operation,
    /// Always `Allow`.
    pub permission: &'static str,
}

/// The ACLs an application of `topology` run with `config` needs, for
/// `principal`:
///
/// - topics it reads (sources, global tables): Read, Describe;
/// - topics it writes (sinks, a dead-letter topic not named after it):
///   Write, Describe, DescribeConfigs (it reads their timestamp limits),
///   and Create for the dead-letter topic, which it creates if missing;
/// - its internal topics (changelogs, repartitions, members, its
///   dead-letter topic), all named `<application id>-...`: Create, Read,
///   Write, Describe, DescribeConfigs on that prefix;
/// - its consumer group: Read, Describe; and the groups of its restore and
///   global-table consumers (`<application id>-restore`, `-global`), which
///   never join but which librdkafka looks up: Read, Describe on that
///   prefix;
/// - the upstream groups whose progress its timers wait for: Describe;
/// - under exactly-once, its transactional ids (`<application id>-...`):
///   Write, Describe.
pub fn required_acls(topology: &Topology, config: &StreamsConfig, principal: &str) -> Vec<Acl> {
    let app = &config.application_id;
    let prefix = format!("{app}-");
    let mut acls = Vec::new();
    let mut add = |resource_type, name: &str, pattern_type, operations: &[Operation]| {
        for &operation in operations {
            let acl = Acl {
                resource_type,
                name: name.to_owned(),
                pattern_type,
                principal: principal.to_owned(),
                host: "*",
                operation,
                permission: "Allow",
            };
            if !acls.contains(&acl) {
                acls.push(acl);
            }
        }
    };
    let topics = &topology.topics;
    let external = |t: &&str| topics.get(t).is_none_or(|r| !topics.is_internal(r));
    let read = topology
        .source_topics()
        .into_iter()
        .filter(external)
        .chain(topology.global_tables().map(|(t, _)| t));
    use Operation::*;
    use PatternType::*;
    use ResourceType::*;
    for t in read {
        add(Topic, t, Literal, &[Read, Describe]);
    }
    for t in topology.sink_topics().into_iter().filter(external) {
        add(Topic, t, Literal, &[Write, Describe, DescribeConfigs]);
    }
    let dlq = config.dead_letter_topic_name();
    if !dlq.starts_with(&prefix) {
        add(
            Topic,
            &dlq,
            Literal,
            &[Create, Write, Describe, DescribeConfigs],
        );
    }
    let internal = [Create, Read, Write, Describe, DescribeConfigs];
    add(Topic, &prefix, Prefixed, &internal);
    add(Group, app, Literal, &[Read, Describe]);
    add(Group, &prefix, Prefixed, &[Read, Describe]);
    for group in config.upstreams.values().flatten() {
        add(Group, group, Literal, &[Describe]);
    }
    if config.guarantee == Guarantee::ExactlyOnce {
        add(TransactionalId, &prefix, Prefixed, &[Write, Describe]);
    }
    acls
}

/// The ACLs as `kafka-acls.sh` commands, one per resource, against
/// `bootstrap` with the admin settings in `admin.properties`.
pub fn kafka_acls_commands(acls: &[Acl], bootstrap: &str) -> Vec<String> {
    let mut commands: Vec<(String, Vec<Operation>)> = Vec::new();
    for acl in acls {
        let resource = match acl.resource_type {
            ResourceType::Topic => "--topic",
            ResourceType::Group => "--group",
            ResourceType::TransactionalId => "--transactional-id",
        };
        let head = format!(
            "kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties --add --allow-principal {} {resource} {}{}",
            acl.principal,
            shell_word(&acl.name),
            match acl.pattern_type {
                PatternType::Prefixed => " --resource-pattern-type prefixed",
                PatternType::Literal => "",
            }
        );
        match commands.iter_mut().find(|(h, _)| *h == head) {
            Some((_, ops)) => ops.push(acl.operation),
            None => commands.push((head, vec![acl.operation])),
        }
    }
    commands
        .into_iter()
        .map(|(head, ops)| {
            let ops: Vec<String> = ops.iter().map(|o| format!("--operation {o:?}")).collect();
            format!("{head} {}", ops.join(" "))
        })
        .collect()
}

/// `word` quoted for a POSIX shell if it needs it.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
    match !word.is_empty() && word.chars().all(plain) {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

/// Creates `acls` through the admin API of the cluster `config` reaches
/// (as a principal allowed to alter ACLs); an ACL that already exists is
/// not an error.
pub fn create_acls(config: &ClientConfig, acls: &[Acl], timeout: Duration) -> Result<(), Error> {
    let client: BaseConsumer = config.create()?;
    let rk = client.client().native_ptr();
    let mut errstr = [0 as std::ffi::c_char; 512];
    let mut bindings = Vec::with_capacity(acls.len());
    let made = acls.iter().try_for_each(|acl| {
        let text = |s: &str| {
            CString::new(s).map_err(|_| Error::Config(format!("ACL {acl:?}: a NUL in a name")))
        };
        let (name, principal, host) = (text(&acl.name)?, text(&acl.principal)?, text(acl.host)?);
        // SAFETY: the strings outlive the call, which copies them; errstr
        // is as long as said.
        let binding = unsafe {
            rd::rd_kafka_AclBinding_new(
                resource_type(acl.resource_type),
                name.as_ptr(),
                pattern_type(acl.pattern_type),
                principal.as_ptr(),
                host.as_ptr(),
                operation(acl.operation),
                rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if binding.is_null() {
            // SAFETY: librdkafka wrote a NUL-terminated message.
            let why = unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy();
            return Err(Error::Config(format!("ACL {acl:?}: {why}")));
        }
        bindings.push(binding);
        Ok(())
    });
    let result = made.and_then(|()| {
        // SAFETY: rk lives as long as `client`; the bindings are valid
        // until destroyed below, the queue and options until destroyed
        // here; the event is destroyed after its results are read.
        unsafe {
            let queue = rd::rd_kafka_queue_new(rk);
            let options = rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
            );
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options,
                ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            rd::rd_kafka_CreateAcls(rk, bindings.as_mut_ptr(), bindings.len(), options, queue);
            let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(1000));
            let outcome = created(event);
            if !event.is_null() {
                rd::rd_kafka_event_destroy(event);
            }
            rd::rd_kafka_AdminOptions_destroy(options);
            rd::rd_kafka_queue_destroy(queue);
            outcome
        }
    });
    // SAFETY: every binding was made above and not yet destroyed.
    unsafe { rd::rd_kafka_AclBinding_destroy_array(bindings.as_mut_ptr(), bindings.len()) };
    result
}

/// The outcome of a CreateAcls result event.
///
/// # Safety
/// `event` is null or a live event of a CreateAcls request.
unsafe fn created(event: *mut rd::rd_kafka_event_t) -> Result<(), Error> {
    if event.is_null() {
        return Err(Error::Config("creating ACLs: no answer in time".into()));
    }
    let message = |p: *const std::ffi::c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
    if rd::rd_kafka_event_error(event) as i32 != 0 {
        return Err(Error::Config(format!(
            "creating ACLs: {}",
            message(rd::rd_kafka_event_error_string(event))
        )));
    }
    let result = rd::rd_kafka_event_CreateAcls_result(event);
    let mut n = 0;
    let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut n);
    for i in 0..n {
        let error = rd::rd_kafka_acl_result_error(*results.add(i));
        if !error.is_null() && rd::rd_kafka_error_code(error) as i32 != 0 {
            return Err(Error::Config(format!(
                "creating ACLs: {}",
                message(rd::rd_kafka_error_string(error))
            )));
        }
    }
    Ok(())
}

fn resource_type(r: ResourceType) -> rd::rd_kafka_ResourceType_t {
    use rd::rd_kafka_ResourceType_t::*;
    match r {
        ResourceType::Topic => RD_KAFKA_RESOURCE_TOPIC,
        ResourceType::Group => RD_KAFKA_RESOURCE_GROUP,
        ResourceType::TransactionalId => RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
    }
}

fn pattern_type(p: PatternType) -> rd::rd_kafka_ResourcePatternType_t {
    use rd::rd_kafka_ResourcePatternType_t::*;
    match p {
        PatternType::Literal => RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        PatternType::Prefixed => RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
    }
}

fn operation(o: Operation) -> rd::rd_kafka_AclOperation_t {
    use rd::rd_kafka_AclOperation_t::*;
    match o {
        Operation::Read => RD_KAFKA_ACL_OPERATION_READ,
        Operation::Write => RD_KAFKA_ACL_OPERATION_WRITE,
        Operation::Create => RD_KAFKA_ACL_OPERATION_CREATE,
        Operation::Describe => RD_KAFKA_ACL_OPERATION_DESCRIBE,
        Operation::DescribeConfigs => RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
    }
}
