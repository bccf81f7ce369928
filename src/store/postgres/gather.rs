//! Gathering: work that arrives while earlier work is being written waits, and goes in
//! together, in one transaction of set-based statements. On PostgreSQL a transaction of one
//! row costs about as much CPU as its statements' rows together: a delivery of one event was
//! three such transactions (its event, its claim, its record), and gathering the first and
//! the last made it several times cheaper (BENCHMARKS.md, issue 10). Nothing waits on
//! purpose: a lone piece of work is written at once. What arrives while a batch is being
//! written waits for it, and goes in the next; a second batch is written beside the first only
//! once it is full, since small batches written side by side cost PostgreSQL a third more CPU
//! per event than the same work gathered into one (BENCHMARKS.md, "Issue 10, fifth round"),
//! while full ones are big enough to gain from a second core.

use std::collections::VecDeque;
use std::future::Future;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Where work is handed in to be gathered.
pub(super) type Inbox<J> = mpsc::UnboundedSender<J>;

/// How gathered work is written.
pub(super) struct Limits<J> {
    /// Full batches being written at once (a batch that is not full waits for the writers
    /// before it)...
    pub at_once: usize,
    /// ...where a full batch weighs this much (a piece heavier than this goes alone)...
    pub most: usize,
    /// ...by this weight.
    pub weight: fn(&J) -> usize,
}

/// An inbox, and what starts its gathering once the writer exists (the writer may hold the
/// inbox itself).
pub(super) fn inbox<J>() -> (Inbox<J>, mpsc::UnboundedReceiver<J>) {
    mpsc::unbounded_channel()
}

/// Work handed in and not yet in a batch, oldest first.
struct Waiting<J> {
    jobs: VecDeque<J>,
    weight: usize,
}

impl<J> Waiting<J> {
    fn push(&mut self, job: J, limits: &Limits<J>) {
        self.weight += (limits.weight)(&job);
        self.jobs.push_back(job);
    }

    /// Whether the next batch should be written now, with `writing` batches being written.
    fn ready(&self, writing: usize, limits: &Limits<J>) -> bool {
        match writing {
            0 => !self.jobs.is_empty(),
            n => n < limits.at_once && self.weight >= limits.most,
        }
    }

    /// The oldest work, up to a full batch (or one piece heavier than that).
    fn batch(&mut self, limits: &Limits<J>) -> Vec<J> {
        let mut batch = Vec::new();
        let mut weight = 0;
        while let Some(job) = self.jobs.front() {
            let more = (limits.weight)(job);
            if !batch.is_empty() && weight + more > limits.most {
                break;
            }
            weight += more;
            batch.extend(self.jobs.pop_front());
        }
        self.weight -= weight;
        batch
    }
}

/// Gathers what arrives in `jobs` into batches within `limits`, and writes each with `write`,
/// for as long as the inbox is open and work waits or is being written.
pub(super) fn gather<J, F, Fut>(mut jobs: mpsc::UnboundedReceiver<J>, limits: Limits<J>, write: F)
where
    J: Send + 'static,
    F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut waiting = Waiting {
            jobs: VecDeque::new(),
            weight: 0,
        };
        let mut writing = JoinSet::new();
        let mut open = true;
        loop {
            while let Ok(job) = jobs.try_recv() {
                waiting.push(job, &limits);
            }
            if waiting.ready(writing.len(), &limits) {
                writing.spawn(write(waiting.batch(&limits)));
                continue;
            }
            if !open && writing.is_empty() {
                return; // nothing waits: `ready` would have started it
            }
            tokio::select! {
                job = jobs.recv(), if open => match job {
                    Some(job) => waiting.push(job, &limits),
                    None => open = false,
                },
                Some(_) = writing.join_next() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits<usize> = Limits {
        at_once: 2,
        most: 10,
        weight: |&w| w,
    };

    fn waiting(weights: &[usize]) -> Waiting<usize> {
        let mut waiting = Waiting {
            jobs: VecDeque::new(),
            weight: 0,
        };
        for &w in weights {
            waiting.push(w, &LIMITS);
        }
        waiting
    }

    #[test]
    fn a_lone_piece_is_written_at_once_and_a_second_batch_only_when_full() {
        assert!(!waiting(&[]).ready(0, &LIMITS));
        assert!(waiting(&[1]).ready(0, &LIMITS));
        assert!(!waiting(&[4, 5]).ready(1, &LIMITS), "not full: waits");
        assert!(waiting(&[4, 6]).ready(1, &LIMITS), "full: beside the first");
        assert!(!waiting(&[4, 6]).ready(2, &LIMITS), "no writer free");
    }

    /// Gathers `weights` handed in at once, writing each batch with a pause; returns the
    /// batches, and the most written at the same time.
    async fn gathered(weights: &[usize], at_once: usize) -> (Vec<Vec<usize>>, usize) {
        use std::sync::{Arc, Mutex};
        let limits = Limits { at_once, ..LIMITS };
        let log = Arc::new(Mutex::new((Vec::new(), 0, 0))); // batches, writing now, most
        let (inbox, jobs) = inbox();
        let (finished, mut all_written) = mpsc::unbounded_channel();
        let writer_log = log.clone();
        gather(jobs, limits, move |batch: Vec<usize>| {
            let (log, finished) = (writer_log.clone(), finished.clone());
            async move {
                {
                    let mut log = log.lock().unwrap();
                    log.1 += 1;
                    log.2 = log.2.max(log.1);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let mut log = log.lock().unwrap();
                log.1 -= 1;
                log.0.push(batch);
                finished.send(()).ok();
            }
        });
        for &w in weights {
            inbox.send(w).unwrap();
        }
        drop(inbox);
        while log.lock().unwrap().0.iter().flatten().count() < weights.len() {
            all_written.recv().await.unwrap();
        }
        let log = log.lock().unwrap();
        (log.0.clone(), log.2)
    }

    #[tokio::test]
    async fn one_writer_at_once_writes_batches_one_after_another_in_order() {
        let (batches, most_at_once) = gathered(&[10, 10, 10, 1, 2], 1).await;
        assert_eq!(batches, [vec![10], vec![10], vec![10], vec![1, 2]]);
        assert_eq!(most_at_once, 1);
    }

    #[tokio::test]
    async fn full_batches_are_written_side_by_side() {
        let (_, most_at_once) = gathered(&[10, 10, 10], 2).await;
        assert_eq!(most_at_once, 2);
    }

    #[test]
    fn a_batch_takes_the_oldest_up_to_full_and_a_heavy_piece_alone() {
        let mut w = waiting(&[3, 4, 5, 20, 1]);
        assert_eq!(w.batch(&LIMITS), [3, 4]);
        assert_eq!(w.batch(&LIMITS), [5]);
        assert_eq!(w.batch(&LIMITS), [20]);
        assert_eq!(w.weight, 1);
        assert_eq!(w.batch(&LIMITS), [1]);
        assert_eq!(w.weight, 0);
        assert!(w.batch(&LIMITS).is_empty());
    }
}
