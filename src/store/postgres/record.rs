//! Recording what an attempt came to on PostgreSQL: one attempt for every delivery the request
//! carried, what comes next for each, what the webhook's circuit learns, and the operational
//! events all that tells the account, in one transaction on the engine's connections. The same
//! rules as SQLite's `record.rs`, in PostgreSQL's SQL.

use super::{exec, row, rows, Postgres};
use crate::error::ApiError;
use crate::model::AttemptTally;
use crate::model::{now_ms, CircuitPolicy, Outcome};
use crate::store::operational::{self, FailedDelivery};
use crate::store::rules::{self, AfterFailure, Failure, Recorded, Settled, WebhookNow};
use deadpool_postgres::GenericClient;
use std::collections::{HashMap, HashSet};
use tokio_postgres::Row;

/// Records an attempt, and publishes what it tells the account (operational events) in the
/// same transaction; returns whether that queued deliveries (closing a circuit makes the
/// deliveries that waited for it due now) and whether it turned the webhook off.
async fn record(
    c: &impl GenericClient,
    o: &Outcome,
    circuit: CircuitPolicy,
) -> Result<Recorded, ApiError> {
    // Every writer takes a webhook's row before its deliveries (failures, edits, deletes, an
    // open circuit's claim), so that no two wait for each other in a cycle. A failure locks
    // the row first: failures of one webhook (from any node) are recorded one at a time. A
    // success takes no lock up front, so successes of one webhook are recorded side by side:
    // it writes the row (when something changes) before its deliveries, and one that finds
    // the circuit open locks the row before closing it.
    // If the webhook was moved to another url while the request was out, the answer speaks
    // for the old url only (see SQLite's `record` for the whole reasoning).
    // Sent together (pipelined): answered in about one round trip instead of two.
    // A record tried again locks the row too, as it goes on to lock the deliveries (below).
    let lock = o.error.is_some() || o.tried_before;
    let one = [o];
    let mut was = webhook_now(c, o.webhook_id, lock).await?;
    if o.tried_before && recorded_before(c, o).await? {
        let deactivated = !was.is_active; // what that record may have told: at worst a re-read
        return Ok(Recorded {
            queued: false,
            deactivated,
        });
    }
    if !lock && was.circuit_open {
        was = webhook_now(c, o.webhook_id, true).await?; // a success that may close it
    }
    let moved = was.url != o.url;
    let settled = Settled::of(o, moved, now_ms());
    let failed = still_pending(c, &settled.failing()).await?;
    let noted = async {
        match o.error {
            None => note_successes(c, &one).await,
            Some(_) => Ok(()),
        }
    };
    // Sent together, answered in about one round trip, and run in the order sent: the
    // webhook's row before the deliveries'.
    let moved_on = [(o, &settled)];
    let counted = [(was.account_id, o.webhook_id, &settled.tally)];
    webhooks_first(c).await?;
    tokio::try_join!(
        noted,
        record_attempts(c, &moved_on),
        super::stats::count_attempts(c, &counted),
    )?;
    // What the webhook learns comes after: opening a circuit or a deactivation moves the
    // webhook's other pending deliveries, and must see these ones settled first.
    let (after, closed) = match &o.error {
        _ if !rules::speaks_for(&was, o) => (None, false),
        None => (None, record_success(c, o, &was).await?),
        Some(error) => (
            Some(record_failure(c, o, error, &was, circuit).await?),
            false,
        ),
    };
    let told = operational::told(o, &was, &failed, after.as_ref(), closed);
    if told.is_empty() {
        return Ok(Recorded::of(after.as_ref(), closed));
    }
    // An event is told to receivers, which keep its id: its commit must reach the disk first
    // (lost in a crash of the database server, its id could be given again to another).
    exec(c, "SET LOCAL synchronous_commit = on", &[]).await?;
    let queued = super::events::publish(c, was.account_id, &told).await? || closed;
    Ok(Recorded::of(after.as_ref(), queued))
}

/// Whether `o`, whose record failed before, was recorded by that try all the same: its commit
/// went through, and its answer was lost with the connection. The deliveries it carried are
/// locked first (in the order of their ids, after the webhook's row, as every writer does), so
/// that a try still committing is waited for; then the attempt is looked for by its key among
/// theirs. Deliveries that are gone were finished ones that retention removed: recorded.
async fn recorded_before(c: &impl GenericClient, o: &Outcome) -> Result<bool, ApiError> {
    let ids: Vec<i64> = o.next.iter().map(|(id, _)| *id).collect();
    let carried = rows(
        c,
        "SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &[&ids],
    )
    .await?;
    if carried.is_empty() {
        return Ok(true);
    }
    // A statement of its own: its snapshot is taken after the locks were waited for.
    let found = rows(
        c,
        "SELECT 1 FROM delivery_attempts l JOIN attempts a ON a.id = l.attempt_id
         WHERE l.delivery_id = ANY($1) AND a.request_key = $2 LIMIT 1",
        &[&ids, &o.key],
    )
    .await?;
    Ok(!found.is_empty())
}

/// The statement that reads a webhook as an outcome finds it, ending with `$condition`.
macro_rules! webhook_now_where {
    ($condition:literal) => {
        concat!(
            "SELECT account_id, url, consecutive_failures, circuit_state, circuit_opened_time,
               is_active AND deleted_time IS NULL, activation, id FROM webhooks WHERE ",
            $condition
        )
    };
}

fn webhook_row(found: &Row) -> Result<WebhookNow, ApiError> {
    Ok(WebhookNow {
        account_id: found.try_get(0)?,
        url: found.try_get(1)?,
        is_active: found.try_get(5)?,
        consecutive_failures: found.try_get(2)?,
        circuit_open: found.try_get::<_, &str>(3)? == "open",
        circuit_opened_time: found.try_get(4)?,
        activation: found.try_get(6)?,
    })
}

/// The webhook as an outcome finds it, its row locked when `lock`.
async fn webhook_now(
    c: &impl GenericClient,
    webhook_id: i64,
    lock: bool,
) -> Result<WebhookNow, ApiError> {
    let sql = match lock {
        true => webhook_now_where!("id = $1 FOR NO KEY UPDATE"),
        false => webhook_now_where!("id = $1"),
    };
    webhook_row(&row(c, sql, &[&webhook_id]).await?)
}

/// The webhooks `ids` as they are now (unlocked), by id.
async fn webhooks_now(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<HashMap<i64, WebhookNow>, ApiError> {
    rows(c, webhook_now_where!("id = ANY($1)"), &[&ids])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(7)?, webhook_row(r)?)))
        .collect()
}

/// Of the deliveries `ids` about to be made final, those still pending (one cancelled while its
/// request was out stays cancelled, and is not told about as failed), with their events; their
/// rows stay locked until the commit.
async fn still_pending(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<FailedDelivery>, ApiError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    rows(
        c,
        "SELECT d.id, d.event_id, e.object FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = ANY($1) AND d.status = 'pending' ORDER BY d.id FOR NO KEY UPDATE OF d",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FailedDelivery {
            delivery_id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            object: r.try_get(2)?,
        })
    })
    .collect()
}

/// The deliveries [`record_attempts`] moves on, a column each.
#[derive(Default)]
struct Moves<'a> {
    ids: Vec<i64>,
    statuses: Vec<&'a str>,
    dues: Vec<Option<i64>>,
    places: Vec<i64>,
    times: Vec<i64>,
    codes: Vec<Option<i64>>,
    errors: Vec<Option<&'a str>>,
}

/// Records what each outcome's request came to, in one statement whatever their number: one
/// attempt per outcome (with the outcome's key, see [`recorded_before`]), the deliveries it
/// carried moved on as [`Settled`] says, and a link from each of those deliveries to its
/// attempt. The attempt counts for every delivery it carried, but only a pending one moves
/// on, and one cancelled while it was in flight (its webhook deleted, deactivated or gone)
/// only to `succeeded`, when the receiver took it (as on SQLite: see its `record`). A delivery
/// that becomes final notes when (retention counts from then).
///
/// The links are made for the deliveries the update wrote, which it holds to the commit (a
/// delivery carried by two of the outcomes, sent again after its lease ran out, is written
/// once and linked to both attempts): one that retention removed meanwhile (a retention
/// shorter than the attempt) is not written and gets no link, and retention, which locks a
/// delivery before removing it and its links, waits for this transaction and then removes the
/// link with it. No link names a removed delivery,
/// and `deliveries` is reached only by key, from the update: an earlier statement looked each
/// linked delivery up again, and a plan a connection cached while the table was nearly empty
/// did it by reading the whole table on every record (4–16 ms a record in `bench single` on a
/// new database, until an automatic `ANALYZE`).
async fn record_attempts(
    c: &impl GenericClient,
    settled: &[(&Outcome, &Settled)],
) -> Result<(), ApiError> {
    let column = |f: fn(&Outcome) -> i64| settled.iter().map(|(o, _)| f(o)).collect::<Vec<_>>();
    let (webhooks, times, durations) = (
        column(|o| o.webhook_id),
        column(|o| o.time),
        column(|o| o.duration_ms),
    );
    let codes: Vec<Option<i64>> = settled
        .iter()
        .map(|(o, _)| o.status_code.map(i64::from))
        .collect();
    let errors: Vec<Option<&str>> = settled.iter().map(|(o, _)| o.error.as_deref()).collect();
    let bodies: Vec<Option<&str>> = settled
        .iter()
        .map(|(o, _)| o.response_body.as_deref())
        .collect();
    let keys = column(|o| o.key);
    // Per delivery: what becomes of it, and its attempt, named by the outcome's place
    // (1-based, as WITH ORDINALITY counts) with what the delivery shows of it. In the order of
    // their ids, the order in which the update locks them, as `cancel_pending` does: two
    // writers of the same deliveries that lock them in other orders can wait for each other.
    let mut each: Vec<(i64, i64, &Outcome, &str, Option<i64>)> = Vec::new();
    for (place, (o, s)) in (1i64..).zip(settled) {
        for ((id, status), due) in s.ids.iter().zip(&s.statuses).zip(&s.dues) {
            each.push((*id, place, *o, status, *due));
        }
    }
    each.sort_unstable_by_key(|&(id, place, ..)| (id, place));
    let mut d = Moves::default();
    for (id, place, o, status, due) in each {
        d.ids.push(id);
        d.statuses.push(status);
        d.dues.push(due);
        d.places.push(place);
        d.times.push(o.time);
        d.codes.push(o.status_code.map(i64::from));
        d.errors.push(o.error.as_deref());
    }
    exec(
        c,
        "WITH given AS (
           SELECT nextval('attempts_id_seq') AS id, g.* FROM unnest($1::bigint[],
             $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $14::bigint[])
             WITH ORDINALITY AS g(webhook_id, time, duration_ms, status_code, error,
             response_body, request_key, place)),
         inserted AS (
           INSERT INTO attempts (id, webhook_id, time, duration_ms, status_code, error,
             response_body, request_key)
           SELECT id, webhook_id, time, duration_ms, status_code, error, response_body,
             request_key
           FROM given),
         moved AS (
           UPDATE deliveries d SET
             status = CASE WHEN d.status = 'pending'
                 OR (d.status = 'cancelled' AND v.status = 'succeeded')
               THEN v.status ELSE d.status END,
             due_ms = CASE WHEN d.status = 'pending' THEN v.due ELSE d.due_ms END,
             final_time = CASE WHEN d.status = 'pending' AND v.status <> 'pending' THEN v.time
               WHEN d.status = 'cancelled' AND v.status = 'succeeded' THEN v.time
               ELSE d.final_time END,
             attempt_count = d.attempt_count + 1,
             last_attempt_time = v.time, last_status_code = v.status_code, last_error = v.error
           FROM unnest($7::bigint[], $8::text[], $9::bigint[], $11::bigint[],
                       $12::bigint[], $13::text[]) AS v(id, status, due, time, status_code,
                       error)
           WHERE d.id = v.id
           RETURNING d.id)
         INSERT INTO delivery_attempts (delivery_id, attempt_id)
         SELECT l.id, g.id FROM unnest($7::bigint[], $10::bigint[]) AS l(id, place)
         JOIN moved m ON m.id = l.id JOIN given g ON g.place = l.place",
        &[
            &webhooks,
            &times,
            &durations,
            &codes,
            &errors,
            &bodies,
            &d.ids,
            &d.statuses,
            &d.dues,
            &d.places,
            &d.times,
            &d.codes,
            &d.errors,
            &keys,
        ],
    )
    .await?;
    Ok(())
}

/// Successes from webhooks whose circuit is closed, for those they speak for
/// ([`rules::speaks_for`], decided here in the statement, on each row as it is when written):
/// they have no failures any more, and their last success is the latest of these. A row is
/// written only when that changes something (a row lock held to the commit would make every
/// success of the webhook wait for the one before it), and never on an open circuit, which
/// only [`record_success`] closes (so that a closing is told exactly once). Rows are taken in
/// the order of their ids, as every writer of several webhooks does.
async fn note_successes(c: &impl GenericClient, outcomes: &[&Outcome]) -> Result<(), ApiError> {
    // One per webhook: the one claimed last (the newest activation), answered last. An older
    // one speaks for the webhook only if that one does too.
    let mut latest: Vec<&Outcome> = outcomes.to_vec();
    latest.sort_unstable_by_key(|o| {
        let newest_first = (std::cmp::Reverse(o.activation), std::cmp::Reverse(o.time));
        (o.webhook_id, newest_first)
    });
    latest.dedup_by_key(|o| o.webhook_id);
    let ids: Vec<i64> = latest.iter().map(|o| o.webhook_id).collect();
    let times: Vec<i64> = latest.iter().map(|o| o.time).collect();
    let urls: Vec<&str> = latest.iter().map(|o| o.url.as_str()).collect();
    let activations: Vec<i64> = latest.iter().map(|o| o.activation).collect();
    exec(c, NOTE_SUCCESSES, &[&ids, &times, &urls, &activations]).await?;
    Ok(())
}

/// [`note_successes`]'s statement.
const NOTE_SUCCESSES: &str = "UPDATE webhooks w SET last_success_time = v.time,
     consecutive_failures = 0
   FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
     AS v(id, time, url, activation)
   WHERE w.id = v.id AND w.circuit_state = 'closed'
     AND w.url = v.url AND w.is_active AND w.deleted_time IS NULL
     AND w.activation = v.activation
     AND (w.last_success_time IS DISTINCT FROM v.time OR w.consecutive_failures <> 0)";

/// Makes sure that [`note_successes`], sent together with the record of the deliveries, runs
/// first: statements sent together run in the order sent only if each is already prepared on
/// the connection. One that must be prepared first goes out a round trip later, and a record
/// that took its deliveries' rows before its webhooks' could wait in a cycle with an edit that
/// cancels them (`editWebhook` failed with 100 on new connections).
async fn webhooks_first(c: &impl GenericClient) -> Result<(), ApiError> {
    c.prepare_cached(NOTE_SUCCESSES).await?;
    Ok(())
}

/// A success on an open circuit (its webhook's row locked by `record`) closes it, and what it
/// held back is due at once. (The statements go one after the other: the first reads the
/// `next_probe_ms` that the next clears.) Returns whether it closed the circuit.
async fn record_success(
    c: &impl GenericClient,
    o: &Outcome,
    was: &WebhookNow,
) -> Result<bool, ApiError> {
    if !was.circuit_open {
        return Ok(false); // `note_successes` did it all
    }
    exec(
        c,
        "UPDATE deliveries SET due_ms = $2
         WHERE webhook_id = $1 AND status = 'pending' AND due_ms > $2
           AND due_ms <= (SELECT next_probe_ms FROM webhooks WHERE id = $1)",
        &[&o.webhook_id, &now_ms()],
    )
    .await?;
    let closed = exec(
        c,
        "UPDATE webhooks SET last_success_time = $2, consecutive_failures = 0,
           circuit_state = 'closed', next_probe_ms = NULL, circuit_opened_time = NULL
         WHERE id = $1 AND circuit_state = 'open'",
        &[&o.webhook_id, &o.time],
    )
    .await?;
    Ok(closed == 1)
}

/// A failure counts against the webhook: it may open its circuit or deactivate it (see
/// [`rules::after_failure`]); returns which. The webhook's row is locked (by `webhook_now`),
/// so `was` is what this failure follows.
async fn record_failure(
    c: &impl GenericClient,
    o: &Outcome,
    error: &str,
    was: &WebhookNow,
    circuit: CircuitPolicy,
) -> Result<AfterFailure, ApiError> {
    let f = Failure::of(was, o, error, circuit);
    exec(
        c,
        "UPDATE webhooks SET last_error_time = $2, last_error_message = $3,
           consecutive_failures = consecutive_failures + 1,
           is_active = CASE WHEN $4 THEN false ELSE is_active END,
           circuit_opened_time = CASE WHEN $5 AND circuit_state = 'closed' THEN $2
             ELSE circuit_opened_time END,
           circuit_state = CASE WHEN $5 THEN 'open' ELSE circuit_state END,
           next_probe_ms = CASE WHEN $5 THEN $6 ELSE next_probe_ms END
         WHERE id = $1",
        &[
            &o.webhook_id,
            &o.time,
            &f.message,
            &f.deactivate,
            &f.probe_ms.is_some(),
            &f.probe_ms,
        ],
    )
    .await?;
    if f.deactivate {
        super::webhooks::cancel_pending(c, o.webhook_id).await?;
        super::announce_change(c, o.webhook_id).await?;
    } else if let Some(probe_ms) = f.probe_ms {
        // Open (or kept open): everything waits for the next probe.
        exec(
            c,
            "UPDATE deliveries SET due_ms = $2
             WHERE webhook_id = $1 AND status = 'pending' AND due_ms < $2",
            &[&o.webhook_id, &probe_ms],
        )
        .await?;
    }
    Ok(f.after)
}

/// What [`record`] does for a success from a webhook whose circuit is closed and whose url is
/// still the one the request went to, recorded for the first time, for many such successes at
/// once (each with its webhook's account): such a success locks nothing up front and tells the
/// account nothing, so many can share one transaction of four statements.
async fn record_plain_successes(
    c: &impl GenericClient,
    plain: &[(&Outcome, i64)],
) -> Result<(), ApiError> {
    let now = now_ms();
    let outcomes: Vec<&Outcome> = plain.iter().map(|(o, _)| *o).collect();
    let settled: Vec<Settled> = outcomes
        .iter()
        .map(|o| Settled::of(o, false, now))
        .collect();
    let moved_on: Vec<(&Outcome, &Settled)> = outcomes.iter().copied().zip(&settled).collect();
    let counted: Vec<(i64, i64, &AttemptTally)> = plain
        .iter()
        .zip(&settled)
        .map(|((o, account_id), s)| (*account_id, o.webhook_id, &s.tally))
        .collect();
    // Pipelined, and run in the order sent: the webhooks' rows before the deliveries'.
    webhooks_first(c).await?;
    tokio::try_join!(
        note_successes(c, &outcomes),
        record_attempts(c, &moved_on),
        super::stats::count_attempts(c, &counted),
    )?;
    Ok(())
}

impl Postgres {
    /// Records one attempt for all the deliveries it carried, and what the webhook learnt, in
    /// a transaction of its own; returns whether it turned the webhook off.
    pub(super) async fn record_one(
        &self,
        outcome: &Outcome,
        circuit: CircuitPolicy,
    ) -> Result<bool, ApiError> {
        let recorded = super::retry_on_deadlock(|| async {
            let mut client = self.engine_client().await?;
            let tx = client.transaction().await?;
            let recorded = record(&tx, outcome, circuit).await?;
            tx.commit().await?;
            Ok(recorded)
        })
        .await?;
        if recorded.queued {
            self.work_queued();
        }
        Ok(recorded.deactivated)
    }

    /// Records together, in one transaction, those of `outcomes` that are plain successes
    /// (see [`record_plain_successes`]) of webhooks with no failure among `outcomes`; returns
    /// which it recorded. The others are for [`Postgres::record_one`]. (Their webhooks are
    /// read before the transaction, unlocked, as a lone success reads its own: what a success
    /// writes to its webhook is decided in the statement that writes it.)
    pub(super) async fn record_successes(
        &self,
        outcomes: &[&Outcome],
    ) -> Result<Vec<bool>, ApiError> {
        let mut ids: Vec<i64> = outcomes
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| o.webhook_id)
            .collect();
        if ids.is_empty() {
            return Ok(vec![false; outcomes.len()]);
        }
        ids.sort_unstable();
        ids.dedup();
        let now = webhooks_now(&self.engine_client().await?, &ids).await?;
        // A webhook with a failure among these records every outcome in order (recorder.rs).
        let failing: HashSet<i64> = outcomes
            .iter()
            .filter(|o| o.error.is_some())
            .map(|o| o.webhook_id)
            .collect();
        let account_of_plain = |o: &Outcome| match now.get(&o.webhook_id) {
            Some(w)
                if o.error.is_none() && !o.tried_before && w.url == o.url && !w.circuit_open =>
            {
                (!failing.contains(&o.webhook_id)).then_some(w.account_id)
            }
            _ => None,
        };
        let accounts: Vec<Option<i64>> = outcomes.iter().map(|o| account_of_plain(o)).collect();
        let plain: Vec<(&Outcome, i64)> = outcomes
            .iter()
            .zip(&accounts)
            .filter_map(|(o, account)| Some((*o, (*account)?)))
            .collect();
        if !plain.is_empty() {
            super::retry_on_deadlock(|| async {
                let mut client = self.engine_client().await?;
                let tx = client.transaction().await?;
                record_plain_successes(&tx, &plain).await?;
                Ok(tx.commit().await?)
            })
            .await?;
        }
        Ok(accounts.iter().map(Option::is_some).collect())
    }
}
