//! Static group membership: `kafka.instance_id`, the stable name of one service
//! instance, which becomes librdkafka's `group.instance.id`.
//!
//! With it, the group coordinator recognises an instance that restarts (after a crash
//! or a deployment) as the member it was, and hands it back its partitions at once,
//! instead of waiting `session.timeout.ms` for the old member to expire and then
//! rebalancing the whole group. `auto` (the default) derives the name from the host
//! name and the state directory, both of which survive a restart of the same
//! instance: `<hostname>-<8 hex digits of the FNV-1a hash of the canonical state.dir>`.
//! Two instances on one host differ by their state directories; two hosts by their
//! names. `none` turns static membership off.
//!
//! Owns the parsing, the checking and the derivation of the value; reads the host name
//! and the file system (to canonicalise `state.dir`), nothing else.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// The value of `kafka.instance_id` that derives the id from host and state directory.
pub const AUTO: &str = "auto";
/// The value of `kafka.instance_id` that turns static membership off.
pub const NONE: &str = "none";
/// Kafka's longest group instance id (the same rule as for topic names).
pub const MAX_LEN: usize = 249;

/// What `kafka.instance_id` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceId {
    /// Derive it from the host name and the state directory.
    Auto,
    /// No static membership: a dynamic member (librdkafka's default).
    None,
    /// This id, as given.
    Given(String),
}

impl InstanceId {
    /// Reads a configured value: `auto`, `none`, or an id of its own.
    pub fn parse(value: &str) -> InstanceId {
        match value {
            AUTO => InstanceId::Auto,
            NONE => InstanceId::None,
            other => InstanceId::Given(other.to_string()),
        }
    }
}

/// Why `auto` could not derive an id.
#[derive(Debug, Error)]
pub enum InstanceIdError {
    /// The host name could not be read.
    #[error("kafka.instance_id is \"auto\" but the host name cannot be read ({0}); set kafka.instance_id to a stable name of this instance (e.g. the StatefulSet pod name), or to \"none\" for no static group membership")]
    Hostname(String),
    /// The state directory's absolute path could not be found.
    #[error("kafka.instance_id is \"auto\" but the absolute path of state.dir {} cannot be found ({source}); set kafka.instance_id explicitly, or to \"none\"", path.display())]
    StateDir {
        /// The configured state directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What is wrong with an explicitly given instance id, by Kafka's rules for ids
/// (non-empty, at most 249 characters of `A-Z a-z 0-9 . _ -`), if anything.
pub fn problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("is empty; give a stable name of this instance, \"auto\" or \"none\"".into());
    }
    if id.len() > MAX_LEN {
        return Some(format!(
            "is {} characters long; Kafka allows {MAX_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "`{id}` contains {c:?}; an instance id uses only letters, digits, `.`, `_` and `-`"
        ));
    }
    None
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The 32-bit FNV-1a hash of `bytes`: simple, fixed by its definition, and the same on
/// every run and build (std's hasher is randomised per process).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The id `auto` derives from a host name and a canonical state directory:
/// `<hostname>-<8 hex digits>`, with characters Kafka does not allow in the host name
/// replaced by `-` and the host name cut so the whole fits in [`MAX_LEN`].
pub fn derive(hostname: &str, state_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let host: String = hostname
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_LEN - 9)
        .collect();
    let host = if host.is_empty() { "host".into() } else { host };
    format!("{host}-{:08x}", fnv1a32(state_dir.as_os_str().as_bytes()))
}

/// This machine's host name.
pub fn hostname() -> Result<String, InstanceIdError> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call;
    // gethostname writes at most `len` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(InstanceIdError::Hostname(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() {
        return Err(InstanceIdError::Hostname("it is empty".into()));
    }
    Ok(name)
}

/// The `group.instance.id` for `value` (the configured `kafka.instance_id`) with the
/// state directory `state_dir`, which must exist for `auto`; none for `none`.
pub fn resolve(value: &str, state_dir: &Path) -> Result<Option<String>, InstanceIdError> {
    match InstanceId::parse(value) {
        InstanceId::None => Ok(None),
        InstanceId::Given(id) => Ok(Some(id)),
        InstanceId::Auto => {
            let canonical =
                std::fs::canonicalize(state_dir).map_err(|source| InstanceIdError::StateDir {
                    path: state_dir.to_path_buf(),
                    source,
                })?;
            Ok(Some(derive(&hostname()?, &canonical)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_gives_the_published_test_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn auto_is_host_and_state_dir_hash_and_stable() {
        let a = derive("worker-7", Path::new("/var/lib/churnwatch"));
        assert_eq!(
            a,
            format!("worker-7-{:08x}", fnv1a32(b"/var/lib/churnwatch"))
        );
        assert_eq!(a, derive("worker-7", Path::new("/var/lib/churnwatch")));
        assert_ne!(a, derive("worker-7", Path::new("/var/lib/churnwatch-b")));
        assert_ne!(a, derive("worker-8", Path::new("/var/lib/churnwatch")));
        assert_eq!(problem(&a), None);
        // A host name with characters Kafka does not allow, or a very long one.
        let odd = derive("höst name", Path::new("/s"));
        assert!(odd.starts_with("h-st-name-"), "{odd}");
        assert_eq!(problem(&odd), None);
        let long = derive(&"h".repeat(400), Path::new("/s"));
        assert_eq!(long.len(), MAX_LEN);
        assert_eq!(problem(&long), None);
    }

    #[test]
    fn resolve_derives_from_the_canonical_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let via_dots = dir.path().join("state/../state");
        let id = resolve("auto", &state).unwrap().unwrap();
        assert_eq!(id, resolve("auto", &via_dots).unwrap().unwrap());
        let canonical = std::fs::canonicalize(&state).unwrap();
        assert_eq!(id, derive(&hostname().unwrap(), &canonical));
        assert_eq!(resolve("none", &state).unwrap(), None);
        assert_eq!(resolve("pod-3", &state).unwrap().as_deref(), Some("pod-3"));
        let e = resolve("auto", &dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("set kafka.instance_id"), "{e}");
    }

    #[test]
    fn given_ids_follow_kafkas_rules() {
        assert_eq!(problem("churnwatch-0"), None);
        assert_eq!(problem("a.b_C-9"), None);
        assert!(problem("").unwrap().contains("is empty"));
        assert!(problem("pod 0").unwrap().contains("' '"));
        assert!(problem("pod/0").unwrap().contains("'/'"));
        assert!(problem(&"x".repeat(250))
            .unwrap()
            .contains("250 characters"));
        assert_eq!(problem(&"x".repeat(249)), None);
    }
}
