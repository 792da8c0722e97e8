//! Instantiated topology nodes: the typed graph a task runs records through.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::context::{RawRecord, TaskContext};
use super::output::OutMeta;
use crate::processor::{
    Data, Failure, FailureKind, InitError, Processor, ProcessorContext, PunctuationId, Record,
    TimestampExtractor,
};
use crate::serde::{Serde, SerdeError};
use crate::topology::TopicRef;

/// A node that accepts records of key type `K` and value type `V`.
pub(crate) trait Node<K, V> {
    fn process(&mut self, record: Record<K, V>, ctx: &mut TaskContext);
}

pub(crate) type NodeRef<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// An edge to a child node, with the child's name for `forward_to`.
pub(crate) struct Child<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) node: NodeRef<K, V>,
}

/// Forwards to every child, cloning for all but the last.
pub(crate) fn forward_all<K: Data, V: Data>(
    children: &[Child<K, V>],
    record: Record<K, V>,
    ctx: &mut TaskContext,
) {
    if let Some((last, rest)) = children.split_last() {
        for child in rest {
            child.node.borrow_mut().process(record.clone(), ctx);
        }
        last.node.borrow_mut().process(record, ctx);
    }
}

/// The untyped face of a processor node: what the task calls besides
/// `process`.
pub(crate) trait Lifecycle {
    fn init(&mut self, ctx: &mut TaskContext) -> Result<(), InitError>;
    fn punctuate(&mut self, id: PunctuationId, timestamp: i64, ctx: &mut TaskContext);
    fn close(&mut self);
    /// Whether the node completes work off the stream thread (a call
    /// operator), to be drained between batches.
    fn is_async(&self) -> bool {
        false
    }
    /// Called once the task's stores are restored, before it processes
    /// anything: where a node takes up work its stores hold (a call
    /// node's calls not done when the task last closed).
    fn start(&mut self, _ctx: &mut TaskContext) -> Result<(), InitError> {
        Ok(())
    }
    /// Emits what completed off the stream thread; how many records.
    fn drain(&mut self, _ctx: &mut TaskContext) -> Result<usize, super::RecordError> {
        Ok(0)
    }
}

/// A source: decodes raw records of one topic and forwards them.
pub(crate) trait RawSource {
    fn process(&mut self, raw: &RawRecord<'_>, ctx: &mut TaskContext) -> Result<(), SourceError>;
    /// Where the source's records take their event time from.
    fn extractor(&self) -> &TimestampExtractor;
}

/// Which part of a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("key: {0}")]
    Key(SerdeError),
    #[error("value: {0}")]
    Value(SerdeError),
}

/// The result of instantiating one logical node for one task.
pub(crate) enum Instance {
    Source(Box<dyn RawSource>),
    Node {
        /// A `NodeRef<K, V>` for the node's input types, boxed so parents of
        /// any type can hold it; parents downcast it once, at build time.
        input: Box<dyn Any>,
        lifecycle: Option<Rc<RefCell<dyn Lifecycle>>>,
    },
}

impl Instance {
    pub(crate) fn input<K: 'static, V: 'static>(&self) -> NodeRef<K, V> {
        match self {
            Instance::Node { input, .. } => input
                .downcast_ref::<NodeRef<K, V>>()
                .expect("edge types are checked by the typed builder")
                .clone(),
            Instance::Source(_) => unreachable!("a source is never a child"),
        }
    }
}

/// Turns `(name, instance)` pairs of children into typed edges.
pub(crate) fn typed_children<K: 'static, V: 'static>(
    children: &[(Arc<str>, &Instance)],
) -> Vec<Child<K, V>> {
    children
        .iter()
        .map(|(name, inst)| Child {
            name: name.clone(),
            node: inst.input::<K, V>(),
        })
        .collect()
}

pub(crate) struct ProcessorNode<P, KI, VI, KO, VO> {
    pub(crate) index: usize,
    pub(crate) processor: P,
    pub(crate) children: Vec<Child<KO, VO>>,
    pub(crate) _in: PhantomData<fn(KI, VI)>,
}

impl<P, KI, VI, KO, VO> ProcessorNode<P, KI, VI, KO, VO>
where
    P: Processor<KI, VI, KO, VO>,
    KI: Data,
    VI: Data,
    KO: Data,
    VO: Data,
{
    /// Wraps a processor as an instance for its task.
    pub(crate) fn instance(index: usize, processor: P, children: Vec<Child<KO, VO>>) -> Instance {
        let node = Rc::new(RefCell::new(ProcessorNode {
            index,
            processor,
            children,
            _in: PhantomData,
        }));
        let input: NodeRef<KI, VI> = node.clone();
        Instance::Node {
            input: Box::new(input),
            lifecycle: Some(node),
        }
    }
}

impl<P, KI, VI, KO, VO> Node<KI, VI> for ProcessorNode<P, KI, VI, KO, VO>
where
    P: Processor<KI, VI, KO, VO>,
{
    fn process(&mut self, record: Record<KI, VI>, task: &mut TaskContext) {
        let timed = task.tick(self.index).then(Instant::now);
        let mut ctx = ProcessorContext {
            children: &self.children,
            task,
            node: self.index,
        };
        self.processor.process(record, &mut ctx);
        if let (Some(start), Some(m)) = (timed, &task.metrics) {
            m.timed(self.index, start.elapsed());
        }
    }
}

impl<P, KI, VI, KO, VO> Lifecycle for ProcessorNode<P, KI, VI, KO, VO>
where
    P: Processor<KI, VI, KO, VO>,
{
    fn init(&mut self, task: &mut TaskContext) -> Result<(), InitError> {
        let mut ctx = ProcessorContext {
            children: &self.children,
            task,
            node: self.index,
        };
        self.processor.init(&mut ctx)
    }

    fn punctuate(&mut self, id: PunctuationId, timestamp: i64, task: &mut TaskContext) {
        let mut ctx = ProcessorContext {
            children: &self.children,
            task,
            node: self.index,
        };
        self.processor.punctuate(id, timestamp, &mut ctx);
    }

    fn close(&mut self) {
        self.processor.close();
    }
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) index: usize,
    pub(crate) extractor: TimestampExtractor,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) children: Vec<Child<K, V>>,
}

impl<K: Data, V: Data> RawSource for SourceNode<K, V> {
    fn process(&mut self, raw: &RawRecord<'_>, ctx: &mut TaskContext) -> Result<(), SourceError> {
        let timed = ctx.tick(self.index).then(Instant::now);
        let key = self
            .key_serde
            .deserialize(raw.key)
            .map_err(SourceError::Key)?;
        let value = self
            .value_serde
            .deserialize(raw.value)
            .map_err(SourceError::Value)?;
        ctx.advance_stream_time(raw.timestamp);
        let mut headers = raw.headers.record_headers();
        let hop = ctx.tracer.as_ref().map(|t| t.hop(&mut headers));
        ctx.trace = hop.as_ref().map(|h| h.context);
        let record = Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers,
        };
        forward_all(&self.children, record, ctx);
        let task = ctx.id;
        if let (Some(hop), Some(tracer)) = (hop, &mut ctx.tracer) {
            tracer.finish(hop, task, (raw.topic, raw.partition, raw.offset));
        }
        if let (Some(start), Some(m)) = (timed, &ctx.metrics) {
            m.timed(self.index, start.elapsed());
        }
        Ok(())
    }

    fn extractor(&self) -> &TimestampExtractor {
        &self.extractor
    }
}

pub(crate) struct SinkNode<K, V> {
    pub(crate) index: usize,
    pub(crate) topic: TopicRef,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> SinkNode<K, V> {
    pub(crate) fn instance(self) -> Instance {
        let input: NodeRef<K, V> = Rc::new(RefCell::new(self));
        Instance::Node {
            input: Box::new(input),
            lifecycle: None,
        }
    }
}

impl<K: 'static, V: 'static> Node<K, V> for SinkNode<K, V> {
    fn process(&mut self, record: Record<K, V>, ctx: &mut TaskContext) {
        let timed = ctx.tick(self.index).then(Instant::now);
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = record;
        let meta = OutMeta {
            headers,
            trace: ctx.trace,
            ..OutMeta::new(self.topic, None, timestamp)
        };
        let key = (!self.key_serde.is_null(&key)).then_some((&key, &*self.key_serde));
        let value = (!self.value_serde.is_null(&value)).then_some((&value, &*self.value_serde));
        match ctx.output.push(meta, key, value) {
            Ok(()) => {
                if let Some(Some(signing)) = ctx.signing.get(self.topic.0 as usize) {
                    let topic = ctx.topics.name(self.topic);
                    ctx.output.sign_last(topic, signing);
                }
            }
            Err(e) => {
                let topic = ctx.topics.name(self.topic).to_owned();
                ctx.fail(Failure::new(
                    FailureKind::Production,
                    format!("serializing for topic {topic}: {e}"),
                ));
            }
        }
        if let (Some(start), Some(m)) = (timed, &ctx.metrics) {
            m.timed(self.index, start.elapsed());
            m.reached_sink(self.index, ctx.wall_clock, timestamp);
        }
    }
}
