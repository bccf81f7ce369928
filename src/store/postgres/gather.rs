//! Gathering: work that arrives while earlier work is being written waits, and goes in
//! together, in one transaction of set-based statements. On PostgreSQL a transaction of one
//! row costs about as much CPU as its statements' rows together: a delivery of one event was
//! three such transactions (its event, its claim, its record), and gathering the first and
//! the last made it several times cheaper (BENCHMARKS.md, issue 10).
//!
//! A lone piece of work is written at once. A batch that is not full waits while another one
//! that is not full is being written, and takes what arrives meanwhile: small batches written
//! side by side cost PostgreSQL a third more CPU per event than the same work gathered into
//! one, and made the p99 from publish to receipt worse, not better (BENCHMARKS.md, "Issue 10,
//! fifth round"). Full batches (at least half the most a batch may weigh) go side by side:
//! they are big enough to gain from a second core. One of the writers is kept for the batch
//! that is not full, so that small work does not wait for full batches being written (it
//! does wait, in the order handed in, behind a full batch that is waiting for a writer).

use std::collections::VecDeque;
use std::future::Future;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Where work is handed in to be gathered.
pub(super) type Inbox<J> = mpsc::UnboundedSender<J>;

/// How gathered work is written.
pub(super) struct Limits<J> {
    /// Batches being written at once: one that is not full and the rest full ones (with
    /// one writer, either)...
    pub at_once: usize,
    /// ...where a batch weighs at most this much (a piece heavier than this goes alone), and
    /// is full from half of it...
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

/// The next batch: how many of the oldest pieces it takes, and whether it is full.
#[derive(Debug, PartialEq)]
struct Next {
    pieces: usize,
    full: bool,
}

impl<J> Waiting<J> {
    fn push(&mut self, job: J, limits: &Limits<J>) {
        self.weight += (limits.weight)(&job);
        self.jobs.push_back(job);
    }

    /// The next batch: the oldest pieces up to `most` by weight (or one piece heavier).
    fn next(&self, limits: &Limits<J>) -> Option<Next> {
        let (pieces, weight) = match self.weight <= limits.most {
            true => (self.jobs.len(), self.weight),
            false => {
                let (mut pieces, mut weight) = (0, 0);
                for job in &self.jobs {
                    let more = (limits.weight)(job);
                    if pieces > 0 && weight + more > limits.most {
                        break;
                    }
                    weight += more;
                    pieces += 1;
                }
                (pieces, weight)
            }
        };
        (pieces > 0).then_some(Next {
            pieces,
            full: weight * 2 >= limits.most,
        })
    }

    fn take(&mut self, pieces: usize, limits: &Limits<J>) -> Vec<J> {
        let batch: Vec<J> = self.jobs.drain(..pieces).collect();
        self.weight -= batch.iter().map(limits.weight).sum::<usize>();
        batch
    }
}

/// Batches being written: the full ones, and the one that is not (at most one).
struct Writing {
    full: JoinSet<()>,
    partial: JoinSet<()>,
}

impl Writing {
    /// Whether `next` may be written now, beside what is being written.
    fn has_room<J>(&self, next: &Next, limits: &Limits<J>) -> bool {
        let kept_for_partial = usize::from(limits.at_once > 1);
        let room = match next.full {
            true => self.full.len() + kept_for_partial < limits.at_once,
            false => self.partial.is_empty(),
        };
        room && self.full.len() + self.partial.len() < limits.at_once
    }

    fn is_empty(&self) -> bool {
        self.full.is_empty() && self.partial.is_empty()
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
        let mut writing = Writing {
            full: JoinSet::new(),
            partial: JoinSet::new(),
        };
        let mut open = true;
        loop {
            while let Ok(job) = jobs.try_recv() {
                waiting.push(job, &limits);
            }
            if let Some(next) = waiting.next(&limits) {
                if writing.has_room(&next, &limits) {
                    let batch = write(waiting.take(next.pieces, &limits));
                    match next.full {
                        true => writing.full.spawn(batch),
                        false => writing.partial.spawn(batch),
                    };
                    continue;
                }
            } else if !open && writing.is_empty() {
                return;
            }
            tokio::select! {
                job = jobs.recv(), if open => match job {
                    Some(job) => waiting.push(job, &limits),
                    None => open = false,
                },
                Some(_) = writing.full.join_next() => {}
                Some(_) = writing.partial.join_next() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Semaphore;

    const LIMITS: Limits<usize> = Limits {
        at_once: 3,
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

    fn next(pieces: usize, full: bool) -> Option<Next> {
        Some(Next { pieces, full })
    }

    #[test]
    fn the_next_batch_is_the_oldest_work_up_to_most_and_full_from_half_of_it() {
        assert_eq!(waiting(&[]).next(&LIMITS), None);
        assert_eq!(waiting(&[1, 2]).next(&LIMITS), next(2, false));
        assert_eq!(waiting(&[2, 3]).next(&LIMITS), next(2, true));
        assert_eq!(waiting(&[4, 6, 1]).next(&LIMITS), next(2, true));
        assert_eq!(
            waiting(&[1, 10]).next(&LIMITS),
            next(1, false),
            "[1] is not full"
        );
        assert_eq!(waiting(&[6, 6]).next(&LIMITS), next(1, true));
        assert_eq!(
            waiting(&[20, 1]).next(&LIMITS),
            next(1, true),
            "a heavy piece alone"
        );
        let mut w = waiting(&[3, 4, 5, 20]);
        assert_eq!(w.take(2, &LIMITS), [3, 4]);
        assert_eq!((w.weight, w.next(&LIMITS)), (25, next(1, true)));
    }

    /// Gathers `weights`, all handed in before the loop first runs, with writes that finish
    /// one at a time, each only once the loop has started all it would beside it. Returns the
    /// batches in the order they started, and the most written at the same time: in all, and
    /// full ones.
    async fn gathered(weights: &[usize], at_once: usize) -> (Vec<Vec<usize>>, usize, usize) {
        #[derive(Default)]
        struct Log {
            started: Vec<Vec<usize>>,
            now: usize,
            most: usize,
            full_now: usize,
            most_full: usize,
        }
        let limits = Limits { at_once, ..LIMITS };
        let log = Arc::new(Mutex::new(Log::default()));
        let gate = Arc::new(Semaphore::new(0));
        let (inbox, jobs) = inbox();
        let (writer_log, writer_gate) = (log.clone(), gate.clone());
        gather(jobs, limits, move |batch: Vec<usize>| {
            let (log, gate) = (writer_log.clone(), writer_gate.clone());
            async move {
                let full = usize::from(batch.iter().sum::<usize>() * 2 >= LIMITS.most);
                {
                    let mut log = log.lock().unwrap();
                    log.started.push(batch);
                    log.now += 1;
                    log.most = log.most.max(log.now);
                    log.full_now += full;
                    log.most_full = log.most_full.max(log.full_now);
                }
                gate.acquire().await.unwrap().forget();
                let mut log = log.lock().unwrap();
                log.now -= 1;
                log.full_now -= full;
            }
        });
        for &w in weights {
            inbox.send(w).unwrap();
        }
        drop(inbox);
        let run = async {
            // One thread: the loop and the writes it starts run while this task yields. Each
            // round lets one write finish, then lets the loop start what it will.
            loop {
                for _ in 0..100 {
                    tokio::task::yield_now().await;
                }
                let log = log.lock().unwrap();
                if log.started.iter().flatten().count() == weights.len() && log.now == 0 {
                    break;
                }
                gate.add_permits(1);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("every batch written");
        let log = log.lock().unwrap();
        (log.started.clone(), log.most, log.most_full)
    }

    #[tokio::test]
    async fn a_small_batch_waits_for_the_small_one_being_written_not_for_full_ones() {
        let (batches, most_at_once, _) = gathered(&[1, 10, 10, 1], 4).await;
        assert_eq!(batches, [vec![1], vec![10], vec![10], vec![1]]);
        assert_eq!(most_at_once, 3, "the second [1] waits for the first");
        let (batches, most_at_once, _) = gathered(&[10, 1], 4).await;
        assert_eq!(batches, [vec![10], vec![1]]);
        assert_eq!(most_at_once, 2, "[1] does not wait for [10]");
    }

    #[tokio::test]
    async fn full_batches_leave_a_writer_for_small_work() {
        let (batches, most_at_once, most_full) = gathered(&[10, 10, 10, 1], 3).await;
        assert_eq!(batches, [vec![10], vec![10], vec![10], vec![1]]);
        assert_eq!(most_full, 2, "the third [10] waits for a writer");
        assert_eq!(most_at_once, 3, "[1] is written beside two full ones");
    }

    #[tokio::test]
    async fn one_writer_at_once_writes_batches_one_after_another_in_order() {
        let (batches, most_at_once, _) = gathered(&[10, 10, 1, 2], 1).await;
        assert_eq!(batches, [vec![10], vec![10], vec![1, 2]]);
        assert_eq!(most_at_once, 1);
    }
}
