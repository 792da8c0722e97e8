//! Interactive queries: reads of a running worker's stores.
//!
//! Stores belong to stream threads; a query is a message to every thread,
//! answered between two poll batches with what the thread's tasks hold.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::membership::MembersView;
use super::standby::StandbyRead;
use super::task_id::TaskId;
use crate::error::Error;
use crate::kafka::partitioner::partition_for_key;
use crate::serde::Serde;

pub(crate) enum QueryOp {
    Get(Vec<u8>),
    /// `from <= key < to` in encoded-key order.
    Range(Option<Vec<u8>>, Option<Vec<u8>>),
}

pub(crate) struct Query {
    pub(crate) store: String,
    pub(crate) op: QueryOp,
    pub(crate) reply: mpsc::Sender<Answer>,
}

/// One thread's answer: the store partitions it holds, and the entries.
#[derive(Default)]
pub(crate) struct Answer {
    pub(crate) held: Vec<i32>,
    pub(crate) entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a key's value was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    /// This worker holds the key's partition; the value if the key exists.
    Local {
        /// The key's partition.
        partition: i32,
        /// The value.
        value: Option<V>,
    },
    /// Another worker holds the key's partition.
    Remote {
        /// The key's partition.
        partition: i32,
        /// The partitions this worker holds.
        held: Vec<i32>,
        /// The worker that runs the key's task, as the members topic last
        /// said; `None` while no one does (a rebalance).
        owner: Option<Owner>,
    },
}

/// The worker that holds a key (Kafka Streams' `KeyQueryMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its process id.
    pub process: String,
    /// Where its HTTP endpoints answer, if it serves them.
    pub address: Option<String>,
    /// Workers that keep a standby copy of the key's task (stale reads).
    pub standbys: Vec<(String, Option<String>)>,
}

/// Entries of a range query over the partitions this worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult<K, V> {
    /// Entries, by partition then key order.
    pub entries: Vec<(K, V)>,
    /// The partitions this worker holds (the only ones searched).
    pub held: Vec<i32>,
}

/// Sends queries to a worker's stream threads.
#[derive(Clone)]
pub struct StoreQueries {
    pub(crate) threads: Vec<mpsc::Sender<Query>>,
    /// Partitions of each store (its sub-topology's input partitions).
    pub(crate) partitions: Arc<HashMap<String, i32>>,
    /// The sub-topology of each store.
    pub(crate) subtopologies: Arc<HashMap<String, u32>>,
    /// Who runs which task.
    pub(crate) members: Arc<MembersView>,
    /// Stale reads of this worker's standby stores.
    pub(crate) standby: mpsc::Sender<StandbyRead>,
}

/// A value read from a standby copy of a store (a stale read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleValue<V> {
    /// The key's partition.
    pub partition: i32,
    /// The value, if the copy holds the key.
    pub value: Option<V>,
    /// Changelog records the copy had yet to read.
    pub lag: i64,
}

impl StoreQueries {
    fn ask(&self, store: &str, op: impl Fn() -> QueryOp) -> Result<Answer, Error> {
        let (tx, rx) = mpsc::channel();
        let mut asked = 0;
        for t in &self.threads {
            let q = Query {
                store: store.to_owned(),
                op: op(),
                reply: tx.clone(),
            };
            if t.send(q).is_ok() {
                asked += 1;
            }
        }
        let mut all = Answer::default();
        for _ in 0..asked {
            let a = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| Error::Query("a stream thread did not answer within 10 s".into()))?;
            all.held.extend(a.held);
            all.entries.extend(a.entries);
        }
        all.held.sort_unstable();
        Ok(all)
    }

    /// Partitions of `store`, if the topology has it.
    pub fn partitions(&self, store: &str) -> Option<i32> {
        self.partitions.get(store).copied()
    }

    /// Looks `key` up in this worker's standby copy of key-value store
    /// `store`, if it keeps one of the key's task: possibly stale (by the
    /// copy's lag), and only when asked for. `None` without a copy.
    pub fn get_standby<K: 'static, V: 'static>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Option<StaleValue<V>>, Error> {
        let (Some(n), Some(&subtopology)) = (self.partitions(store), self.subtopologies.get(store))
        else {
            return Err(Error::Query(format!("no store named {store:?}")));
        };
        let mut k = Vec::new();
        key_serde
            .serialize(key, &mut k)
            .map_err(|e| Error::Query(e.to_string()))?;
        let partition = partition_for_key(&k, n);
        let (reply, answer) = mpsc::channel();
        let read = StandbyRead {
            task: TaskId {
                subtopology,
                partition,
            },
            store: store.to_owned(),
            key: k,
            reply,
        };
        if self.standby.send(read).is_err() {
            return Ok(None);
        }
        let Some((value, lag)) = answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::Query("the standby thread did not answer within 10 s".into()))?
        else {
            return Ok(None);
        };
        let value = value
            .map(|v| value_serde.deserialize(Some(&v)))
            .transpose()
            .map_err(|e| Error::Query(e.to_string()))?;
        Ok(Some(StaleValue {
            partition,
            value,
            lag,
        }))
    }

    /// The worker that runs partition `partition` of `store`, and those
    /// that keep a standby of it (Kafka Streams' `queryMetadataForKey`).
    pub fn owner(&self, store: &str, partition: i32) -> Option<Owner> {
        let task = TaskId {
            subtopology: *self.subtopologies.get(store)?,
            partition,
        };
        let owner = self.members.owner(task)?;
        Some(Owner {
            process: owner.process,
            address: owner.address,
            standbys: (self.members.standbys(task).into_iter())
                .map(|m| (m.process, m.address))
                .collect(),
        })
    }

    /// Looks `key` up in key-value store `store`.
    pub fn get<K: 'static, V: 'static>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Lookup<V>, Error> {
        let n = self
            .partitions(store)
            .ok_or_else(|| Error::Query(format!("no store named {store:?}")))?;
        let mut k = Vec::new();
        key_serde
            .serialize(key, &mut k)
            .map_err(|e| Error::Query(e.to_string()))?;
        let partition = partition_for_key(&k, n);
        let answer = self.ask(store, || QueryOp::Get(k.clone()))?;
        if !answer.held.contains(&partition) {
            return Ok(Lookup::Remote {
                partition,
                held: answer.held,
                owner: self.owner(store, partition),
            });
        }
        let value = answer
            .entries
            .first()
            .map(|(_, v)| value_serde.deserialize(Some(v)))
            .transpose()
            .map_err(|e| Error::Query(e.to_string()))?;
        Ok(Lookup::Local { partition, value })
    }

    /// Entries with `from <= key < to` (encoded order) in the partitions this
    /// worker holds.
    pub fn range<K: 'static, V: 'static>(
        &self,
        store: &str,
        from: Option<&K>,
        to: Option<&K>,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<RangeResult<K, V>, Error> {
        if self.partitions(store).is_none() {
            return Err(Error::Query(format!("no store named {store:?}")));
        }
        let encode = |k: Option<&K>| {
            k.map(|k| {
                let mut b = Vec::new();
                key_serde.serialize(k, &mut b).map(|()| b)
            })
            .transpose()
            .map_err(|e| Error::Query(e.to_string()))
        };
        let (from, to) = (encode(from)?, encode(to)?);
        let answer = self.ask(store, || QueryOp::Range(from.clone(), to.clone()))?;
        let entries = answer
            .entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    key_serde.deserialize(Some(k))?,
                    value_serde.deserialize(Some(v))?,
                ))
            })
            .collect::<Result<_, crate::serde::SerdeError>>()
            .map_err(|e| Error::Query(e.to_string()))?;
        Ok(RangeResult {
            entries,
            held: answer.held,
        })
    }
}

/// Renders a stored value as JSON for the HTTP API.
pub(crate) type Renderer = Arc<dyn Fn(&[u8]) -> Result<serde_json::Value, String> + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    queries: StoreQueries,
    renderers: Arc<HashMap<String, Renderer>>,
}

#[derive(serde::Deserialize, Default)]
struct KeyParams {
    /// Read a standby copy when another worker holds the key.
    #[serde(default)]
    stale: bool,
}

#[derive(serde::Deserialize)]
struct RangeParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /stores/{store}/{key}` and `GET /stores/{store}?from=&to=` for the
/// stores registered with a renderer; keys are UTF-8 strings. A key held
/// by another worker answers 421 with its owner, unless `?stale=true` asks
/// for this worker's standby copy (then 200 with `"standby": true` and the
/// copy's `"lag"`).
pub(crate) fn routes(
    queries: StoreQueries,
    renderers: HashMap<String, Renderer>,
    aliases: &[(String, String)],
) -> axum::Router {
    use axum::extract::{Path, Query as Params, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;
    use serde_json::json;

    type Reply = (StatusCode, Json<serde_json::Value>);

    fn error(code: StatusCode, message: String) -> Reply {
        (code, Json(json!({ "error": message })))
    }

    async fn get_key(
        State(s): State<HttpState>,
        Path((store, key)): Path<(String, String)>,
        Params(p): Params<KeyParams>,
    ) -> Reply {
        lookup(s, store, key, p.stale).await
    }

    /// A stale read of this worker's standby copy of the key's task.
    async fn stale(s: HttpState, store: String, key: String, render: Renderer) -> Option<Reply> {
        let (q, st, k) = (s.queries.clone(), store.clone(), key.clone());
        let found = tokio::task::spawn_blocking(move || {
            q.get_standby(
                &st,
                &k,
                &crate::serde::StringSerde,
                &crate::serde::BytesSerde,
            )
        })
        .await;
        let StaleValue {
            partition,
            value,
            lag,
        } = found.ok()?.ok()??;
        let base = json!({ "store": store, "key": key, "partition": partition, "standby": true, "lag": lag });
        Some(match value {
            Some(v) => match render(&v) {
                Ok(value) => {
                    let mut body = base;
                    body["value"] = value;
                    (StatusCode::OK, Json(body))
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            },
            None => {
                let mut body = base;
                body["error"] = json!("no such key");
                (StatusCode::NOT_FOUND, Json(body))
            }
        })
    }

    async fn lookup(s: HttpState, store: String, key: String, allow_stale: bool) -> Reply {
        let Some(render) = s.renderers.get(&store).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no queryable store named {store:?}"),
            );
        };
        let (q, st, k) = (s.queries.clone(), store.clone(), key.clone());
        let found = tokio::task::spawn_blocking(move || {
            q.get(
                &st,
                &k,
                &crate::serde::StringSerde,
                &crate::serde::BytesSerde,
            )
        })
        .await;
        match found {
            Ok(Ok(Lookup::Local {
                partition,
                value: Some(v),
            })) => match render(&v) {
                Ok(value) => (
                    StatusCode::OK,
                    Json(
                        json!({ "store": store, "key": key, "partition": partition, "value": value }),
                    ),
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            },
            Ok(Ok(Lookup::Local {
                partition,
                value: None,
            })) => (
                StatusCode::NOT_FOUND,
                Json(
                    json!({ "error": "no such key", "store": store, "key": key, "partition": partition }),
                ),
            ),
            Ok(Ok(Lookup::Remote {
                partition,
                held,
                owner,
            })) => {
                if allow_stale {
                    if let Some(reply) = stale(s.clone(), store.clone(), key.clone(), render).await
                    {
                        return reply;
                    }
                }
                let owner = owner.map(|o| {
                    let standbys: Vec<_> = (o.standbys.iter())
                        .map(|(p, a)| json!({ "process": p, "address": a }))
                        .collect();
                    json!({ "process": o.process, "address": o.address, "standbys": standbys })
                });
                (
                    StatusCode::MISDIRECTED_REQUEST,
                    Json(json!({
                        "error": format!("partition {partition} of {store} is held by another worker"),
                        "partition": partition,
                        "held_partitions": held,
                        "owner": owner,
                    })),
                )
            }
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    async fn get_range(
        State(s): State<HttpState>,
        Path(store): Path<String>,
        Params(p): Params<RangeParams>,
    ) -> Reply {
        let Some(render) = s.renderers.get(&store).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no queryable store named {store:?}"),
            );
        };
        let (q, st) = (s.queries.clone(), store.clone());
        let found = tokio::task::spawn_blocking(move || {
            q.range(
                &st,
                p.from.as_ref(),
                p.to.as_ref(),
                &crate::serde::StringSerde,
                &crate::serde::BytesSerde,
            )
        })
        .await;
        match found {
            Ok(Ok(r)) => {
                let mut entries = Vec::new();
                for (k, v) in r.entries {
                    match render(&v) {
                        Ok(value) => entries.push(json!({ "key": k, "value": value })),
                        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
                    }
                }
                (
                    StatusCode::OK,
                    Json(json!({ "store": store, "entries": entries, "held_partitions": r.held })),
                )
            }
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    let mut router = axum::Router::new();
    for (prefix, store) in aliases {
        let store = store.clone();
        router = router.route(
            &format!("{prefix}/{{key}}"),
            get(
                move |State(s): State<HttpState>,
                      Path(key): Path<String>,
                      Params(p): Params<KeyParams>| {
                    lookup(s, store.clone(), key, p.stale)
                },
            ),
        );
    }
    router
        .route("/stores/{store}/{key}", get(get_key))
        .route("/stores/{store}", get(get_range))
        .with_state(HttpState {
            queries,
            renderers: Arc::new(renderers),
        })
}
