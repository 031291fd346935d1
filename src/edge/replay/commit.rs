//! The replay's writer: a thread of its own that writes the outputs as they come and
//! each commit while the engine goes on with the next records. Owns the output files
//! and a handle on the store; the replay loop owns the engine.
//!
//! A commit is written in the same order as before it moved here, so crash-exactness
//! is unchanged: the status changes and dead letters (written as they arrive, through
//! the files' buffers) are flushed and fsynced first, then the engine's changes and
//! the progress record (with the outputs' lengths) go into the store in one atomic
//! batch, then the commit mark. Whatever lies in the files past the last commit's
//! lengths is cut back when a replay resumes. At most one commit is in flight: the
//! loop waits for commit k before it detaches commit k + 1, and evicts customers from
//! memory only then, so a customer is never read back from the store before the state
//! it left there is written.

use super::output::Outputs;
use super::{io, Progress, ReplayError, SOURCE};
use crate::core::status::StatusChange;
use crate::driver::DeadLetter;
use crate::store::{mark, AnyKv, Batch, Store};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Output batches the loop may hand over before it waits for the writer: bounds the
/// memory held by outputs not yet written.
const QUEUE: usize = 16;

/// What the loop hands to the writer, in order.
enum Msg {
    /// Outputs of the records handled since the previous message.
    Out(Vec<StatusChange>, Vec<DeadLetter>),
    /// A commit: the engine's changes since the previous one (encoded) and the
    /// progress to commit (its output lengths are filled in by the writer).
    Commit(Batch, Box<Progress>),
}

/// The output files' lengths after a commit.
pub(super) type Lengths = (u64, u64);

/// The writer thread and the channels to it.
pub(super) struct Committer {
    tx: Option<SyncSender<Msg>>,
    done: Receiver<Result<Lengths, ReplayError>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl Committer {
    /// Starts the writer on `outs`, committing into `store` (whose directory is `dir`,
    /// for the commit mark).
    pub(super) fn start(
        mut outs: Outputs,
        store: Store<AnyKv>,
        dir: PathBuf,
    ) -> Result<Committer, ReplayError> {
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        let (report, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("replay-writer".into())
            .spawn(move || {
                // The first failure is reported at the next commit; nothing after it
                // is written.
                let mut failed = None;
                for msg in rx {
                    match msg {
                        Msg::Out(mut changes, dead) => {
                            if failed.is_none() {
                                if let Err(e) = write_outputs(&mut outs, &mut changes, &dead) {
                                    failed = Some(e);
                                }
                            }
                        }
                        Msg::Commit(batch, progress) => {
                            let r = match failed.take() {
                                Some(e) => Err(e),
                                None => commit(&mut outs, &store, &dir, batch, *progress),
                            };
                            let stop = r.is_err();
                            if report.send(r).is_err() || stop {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| ReplayError::Io {
                action: "cannot start the writer thread for",
                path: PathBuf::from(SOURCE),
                source: e,
            })?;
        Ok(Committer {
            tx: Some(tx),
            done,
            thread: Some(thread),
            in_flight: false,
        })
    }

    /// Hands over outputs, in order (waits while [`QUEUE`] batches are unwritten).
    pub(super) fn outputs(
        &mut self,
        changes: Vec<StatusChange>,
        dead: Vec<DeadLetter>,
    ) -> Result<(), ReplayError> {
        if changes.is_empty() && dead.is_empty() {
            return Ok(());
        }
        self.send(Msg::Out(changes, dead))
    }

    /// Hands over a commit; call [`Committer::wait`] first.
    pub(super) fn commit(&mut self, batch: Batch, progress: Progress) -> Result<(), ReplayError> {
        debug_assert!(!self.in_flight, "one commit in flight at most");
        self.send(Msg::Commit(batch, Box::new(progress)))?;
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the commit in flight, if any; returns the outputs' lengths it wrote.
    pub(super) fn wait(&mut self) -> Result<Option<Lengths>, ReplayError> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(None);
        }
        match self.done.recv() {
            Ok(r) => r.map(Some),
            Err(_) => Err(self.died()),
        }
    }

    /// Whether a commit is in flight, collecting its result if it is done (without
    /// waiting): Ok(None) when none is in flight any more.
    pub(super) fn poll(&mut self) -> Result<Option<Lengths>, ReplayError> {
        if !self.in_flight {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(r) => {
                self.in_flight = false;
                r.map(Some)
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.in_flight = false;
                Err(self.died())
            }
        }
    }

    /// Whether a commit is being written.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight
    }

    fn send(&mut self, msg: Msg) -> Result<(), ReplayError> {
        let tx = self.tx.as_ref().expect("open until drop");
        if tx.send(msg).is_ok() {
            return Ok(());
        }
        // The writer stopped: it reported a failure (or panicked).
        match self.done.try_recv() {
            Ok(Err(e)) => Err(e),
            _ => Err(self.died()),
        }
    }

    /// The error for a writer that stopped without reporting (it panicked).
    fn died(&mut self) -> ReplayError {
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Err(p)) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into()),
            _ => "an unknown cause".into(),
        };
        ReplayError::Io {
            action: "the writer thread stopped while writing",
            path: PathBuf::from(SOURCE),
            source: std::io::Error::other(format!(
                "it stopped with {why}; the replay resumes from its last commit when run again"
            )),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once what it holds is written.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_outputs(
    outs: &mut Outputs,
    changes: &mut Vec<StatusChange>,
    dead: &[DeadLetter],
) -> Result<(), ReplayError> {
    for d in dead {
        outs.dead(d)?;
    }
    outs.changes(changes)
}

/// Writes one commit: outputs flushed and fsynced, then state and progress in one
/// batch, then the commit mark.
fn commit(
    outs: &mut Outputs,
    store: &Store<AnyKv>,
    dir: &std::path::Path,
    mut batch: Batch,
    mut progress: Progress,
) -> Result<Lengths, ReplayError> {
    let (o, d) = outs.sync()?;
    progress.out_len = o;
    progress.dead_len = d;
    batch.progress(SOURCE, &progress)?;
    store.write(batch)?;
    let m = mark::Mark {
        position: progress.records,
        finished: progress.finished,
    };
    mark::write(dir, &m).map_err(io("cannot write", &mark::path(dir)))?;
    Ok((o, d))
}
