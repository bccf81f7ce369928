//! Retention, the part every backend shares: which events a batch looks at, and where the next
//! batch of a pass starts. Each backend removes what this picks with its own SQL
//! (`sqlite/retention.rs`, `postgres/retention.rs`); `maintenance.rs` runs the passes.
//!
//! The rule (what a backend checks, in the batch's transaction, for each event picked): an event
//! is removed once every delivery of it is final (succeeded, failed, cancelled) and the last of
//! them became final before the cutoff (now − retention); an event no webhook matched, once it
//! was created before the cutoff. Its deliveries go with it, their links to attempts, and each
//! attempt that no delivery links to any more (a batch request's attempt is shared by the
//! deliveries it carried, which may belong to events removed in different batches).

use std::ops::AddAssign;

/// Events one batch looks at, by id.
pub(crate) const SCAN_EVENTS: i64 = 500;
/// Deliveries one batch removes at most (an event fanned out to many webhooks counts each of
/// them): this, not the number of events, is what bounds how long a batch holds the database.
const MOST_DELIVERIES: i64 = 2000;

/// How many rows were removed, of each kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub webhooks: u64,
}

impl AddAssign for Removed {
    fn add_assign(&mut self, other: Removed) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.webhooks += other.webhooks;
    }
}

/// One batch of a pass: what it removed, and the event id after which the next batch starts
/// (`None`: the pass has reached events too young to remove, or another node is removing).
#[derive(Debug, Default)]
pub struct Step {
    pub removed: Removed,
    pub next_after: Option<i64>,
}

/// An event as a batch first sees it.
pub(crate) struct Scanned {
    pub id: i64,
    pub creation_time: i64,
    pub delivery_count: i64,
}

/// Of the events scanned (up to [`SCAN_EVENTS`] after the last batch's, by id), those the batch
/// looks at, and where the next batch starts. Ids follow creation, so the walk ends at the first
/// event created at or after `cutoff`: every later one is younger. (An id taken a moment before
/// another may be stored a second later; such an event just waits for the next pass. Removal
/// may come late, never early.)
pub(crate) fn plan(scanned: &[Scanned], cutoff: i64) -> (Vec<i64>, Option<i64>) {
    let mut picked = Vec::new();
    let mut deliveries = 0;
    for event in scanned {
        if event.creation_time >= cutoff {
            return (picked, None);
        }
        picked.push(event.id);
        deliveries += event.delivery_count;
        if deliveries >= MOST_DELIVERIES {
            return (picked, Some(event.id));
        }
    }
    let more = scanned.len() as i64 == SCAN_EVENTS;
    (picked, scanned.last().filter(|_| more).map(|e| e.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(times_and_counts: &[(i64, i64)]) -> Vec<Scanned> {
        times_and_counts
            .iter()
            .enumerate()
            .map(|(i, &(creation_time, delivery_count))| Scanned {
                id: i as i64 + 1,
                creation_time,
                delivery_count,
            })
            .collect()
    }

    #[test]
    fn a_pass_ends_at_the_first_event_too_young() {
        let (picked, next) = plan(&events(&[(10, 1), (20, 1), (100, 1), (15, 1)]), 50);
        assert_eq!(picked, [1, 2]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_batch_stops_at_its_share_of_deliveries_and_the_next_goes_on_from_there() {
        let (picked, next) = plan(&events(&[(1, 1500), (1, 600), (1, 1)]), 50);
        assert_eq!(picked, [1, 2]);
        assert_eq!(next, Some(2));
    }

    #[test]
    fn a_full_scan_goes_on_after_its_last_event_and_a_short_one_was_the_end() {
        let full = events(&vec![(1, 0); SCAN_EVENTS as usize]);
        assert_eq!(plan(&full, 50).1, Some(SCAN_EVENTS));
        let (picked, next) = plan(&events(&[(1, 0), (2, 0)]), 50);
        assert_eq!((picked.len(), next), (2, None));
    }
}
