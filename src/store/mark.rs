//! The commit mark: a small file beside a store's sled files naming the last commit
//! the store acknowledged as durable, so that a store which lost commits can be told
//! from one that never got further.
//!
//! When sled's log is damaged, its recovery keeps the longest intact prefix and drops
//! the rest without an error: the store opens fine, one or many commits older. Nothing
//! inside sled can show that; the mark, written outside sled and only after a commit
//! is durable, can. A mark ahead of the store's own progress means the store lost
//! commits. A mark behind it (a crash between the commit and the mark) or a missing or
//! unreadable mark (deleted, cut short) shows nothing and is ignored: the mark never
//! makes a sound store look damaged.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The mark's file name inside a store directory.
pub const MARK_FILE: &str = "churnwatch.mark";

/// The last acknowledged commit of a source, in its own units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// How far the source had got (for the replay: records read).
    pub position: u64,
    /// Whether the source had finished.
    pub finished: bool,
}

impl Mark {
    /// Whether a store whose committed progress is `position`/`finished` is behind
    /// this mark, i.e. lost commits it had acknowledged.
    pub fn is_ahead_of(&self, position: u64, finished: bool) -> bool {
        self.position > position || (self.finished && !finished)
    }
}

/// The mark file of the store in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(MARK_FILE)
}

/// Writes the mark of a commit that is durable in the store in `dir`. Not synced:
/// a mark lost in a crash is merely older, which shows nothing.
pub fn write(dir: &Path, mark: &Mark) -> std::io::Result<()> {
    let text = serde_json::to_string(mark).map_err(std::io::Error::other)?;
    std::fs::write(path(dir), text)
}

/// The mark of the store in `dir`, if there is a readable one.
pub fn read(dir: &Path) -> Option<Mark> {
    let text = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let m = Mark {
            position: 1200,
            finished: true,
        };
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()), Some(m));
        std::fs::write(path(dir.path()), b"{\"position\":12").unwrap();
        assert_eq!(read(dir.path()), None);
    }

    #[test]
    fn only_a_store_behind_the_mark_lost_commits() {
        let m = Mark {
            position: 1200,
            finished: false,
        };
        assert!(m.is_ahead_of(1000, false));
        assert!(!m.is_ahead_of(1200, false));
        assert!(!m.is_ahead_of(1400, true));
        let done = Mark {
            finished: true,
            ..m
        };
        assert!(done.is_ahead_of(1200, false));
        assert!(!done.is_ahead_of(1200, true));
    }
}
