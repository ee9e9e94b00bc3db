//! One batch into the target: one transaction with its offsets, and the
//! dead-letter path for records the target refuses.
//!
//! Policy: first the whole batch, planned per run of consecutive records of
//! one table (so changes across tables keep their order, e.g. a parent row
//! before its child), in one transaction that begins with the offsets.
//! When the target refuses a value or row, that transaction is rolled back
//! and the batch is applied again record by record, each under a
//! savepoint: a refused record is rolled back to its savepoint and parked,
//! the rest commit. Parked records (and records that could not be read)
//! are acknowledged by the dead-letter topic *before* the commit, so a
//! crash in between re-parks them rather than losing them (the dead-letter
//! topic is at-least-once). Without a dead-letter topic, the first such
//! record stops the sink with its topic, partition, offset and reason, and
//! nothing of its batch is committed.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::plan::{plan, Op};
use super::prepare::{Prepared, What};
use super::target::{Failure, Target};
use super::{Metrics, SinkError};

/// The dead-letter topic and its producer.
pub struct Dlq {
    pub producer: FutureProducer,
    pub topic: String,
    pub sink: String,
}

impl Dlq {
    /// Sends one record with why it was parked; waits for Kafka's ack.
    async fn park(&self, m: &OwnedMessage, why: &str) -> Result<(), SinkError> {
        let (partition, offset) = (m.partition().to_string(), m.offset().to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "sqlcache.error",
                value: Some(why),
            })
            .insert(Header {
                key: "sqlcache.topic",
                value: Some(m.topic()),
            })
            .insert(Header {
                key: "sqlcache.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "sqlcache.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "sqlcache.sink",
                value: Some(&self.sink),
            });
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = m.key() {
            r = r.key(k);
        }
        if let Some(p) = m.payload() {
            r = r.payload(p);
        }
        self.producer
            .send(r, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| SinkError::Target(format!("dead-letter topic {}: {e}", self.topic)))
    }
}

fn stop_on(m: &OwnedMessage, why: &str) -> SinkError {
    SinkError::BadRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        reason: why.to_string(),
    }
}

/// Applies `batch` with `offsets` (next offset per partition) in one
/// transaction.
pub async fn apply(
    target: &mut Target,
    batch: &[Prepared],
    offsets: &[(String, i32, i64)],
    dlq: Option<&Dlq>,
    metrics: &Metrics,
) -> Result<(), SinkError> {
    let t0 = Instant::now();
    let mut bad: Vec<(&OwnedMessage, String)> = batch
        .iter()
        .filter_map(|p| match &p.what {
            What::Bad(why) => Some((&p.msg, why.clone())),
            _ => None,
        })
        .collect();
    if let (None, Some((m, why))) = (dlq, bad.first()) {
        return Err(stop_on(m, why));
    }
    let statements = match whole(target, batch, offsets).await {
        Ok(n) => n,
        Err(Failure::Rejected(_)) => {
            target.rollback().await.map_err(SinkError::from)?;
            metrics.bisected.inc();
            let (n, refused) = one_by_one(target, batch, offsets).await?;
            if let (None, Some((m, why))) = (dlq, refused.first()) {
                target.rollback().await.map_err(SinkError::from)?;
                return Err(stop_on(m, why));
            }
            bad.extend(refused);
            n
        }
        Err(f) => {
            let _ = target.rollback().await;
            return Err(SinkError::from(f));
        }
    };
    if let Some(dlq) = dlq {
        for (m, why) in &bad {
            tracing::warn!(topic = %m.topic(), partition = m.partition(), offset = m.offset(), reason = %why, "sink: record parked in the dead-letter topic");
            if let Err(e) = dlq.park(m, why).await {
                let _ = target.rollback().await;
                return Err(e);
            }
        }
    }
    target.commit().await.map_err(SinkError::from)?;
    metrics.dead_letters.add(bad.len() as u64);
    metrics.batches.inc();
    metrics.statements.add(statements as u64);
    for p in batch {
        match p.what {
            What::Apply { .. } => metrics.records.inc(),
            What::Skip => metrics.skipped.inc(),
            What::Bad(_) => {}
        }
    }
    metrics.batch_took(t0.elapsed());
    Ok(())
}

/// Runs of consecutive records of one table, their operations in order.
fn runs(batch: &[Prepared]) -> Vec<(&super::target::TableInfo, Vec<Op>)> {
    let mut out: Vec<(&super::target::TableInfo, Vec<Op>)> = Vec::new();
    for p in batch {
        let What::Apply { table, ops } = &p.what else {
            continue;
        };
        match out.last_mut() {
            Some((t, run)) if std::ptr::eq(*t, &**table) => run.extend(ops.iter().cloned()),
            _ => out.push((table, ops.clone())),
        }
    }
    out
}

/// The batch in one go (the transaction is left open).
async fn whole(
    target: &mut Target,
    batch: &[Prepared],
    offsets: &[(String, i32, i64)],
) -> Result<usize, Failure> {
    target.begin(offsets).await?;
    let mut n = 0;
    for (table, ops) in runs(batch) {
        for q in plan(&table.plan, ops) {
            target.run(&q).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Record by record under savepoints; returns the statements run and the
/// records the target refused (the transaction is left open).
async fn one_by_one<'a>(
    target: &mut Target,
    batch: &'a [Prepared],
    offsets: &[(String, i32, i64)],
) -> Result<(usize, Vec<(&'a OwnedMessage, String)>), SinkError> {
    target.begin(offsets).await.map_err(SinkError::from)?;
    let (mut n, mut refused) = (0, Vec::new());
    for p in batch {
        let What::Apply { table, ops } = &p.what else {
            continue;
        };
        target
            .run("SAVEPOINT sqlcache_record")
            .await
            .map_err(SinkError::from)?;
        let mut outcome = Ok(0);
        for q in plan(&table.plan, ops.clone()) {
            if let Err(f) = target.run(&q).await {
                outcome = Err(f);
                break;
            }
            n += 1;
        }
        match outcome {
            Ok(_) => {}
            Err(Failure::Rejected(why)) => {
                target
                    .run("ROLLBACK TO SAVEPOINT sqlcache_record")
                    .await
                    .map_err(SinkError::from)?;
                refused.push((&p.msg, why));
            }
            Err(f) => {
                let _ = target.rollback().await;
                return Err(SinkError::from(f));
            }
        }
    }
    Ok((n, refused))
}
