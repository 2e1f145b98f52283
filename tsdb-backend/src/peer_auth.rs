//! The pool's shared secret: how a node proves to its peers that it belongs to the pool.
//!
//! Every internal request (`/internal/*`: replicate, resync, snapshot) carries
//! `Authorization: Bearer <secret>`; the receiving node compares it with its own in constant
//! time (`subtle`), so the time of a refusal tells nothing about how much of a guess was
//! right. Only the length can differ in time, and the length is not the secret.
//!
//! Where the secret comes from ([`SecretLocation`]):
//! - `--peer-secret-file PATH`: the operator's file, read as is. A file that group or others
//!   may access is used with a warning (the operator chose it).
//! - otherwise `$HOME/.tsdb-backend/peer-secret`, like Erlang's `~/.erlang.cookie`: created
//!   on first start (32 random bytes as hex; directory 0700, file 0600), so every node
//!   started by the same user on one machine shares it with no flag at all. Three nodes
//!   starting at once agree: each writes a private temp file and hard-links it into place;
//!   the link fails for all but the first, and the others read the winner's file. A
//!   default file that group or others may access is refused, since we create it 0600:
//!   someone loosened it.
//! - without `HOME`, `<data-dir>/peer-secret`, created the same way; nodes on other hosts
//!   need a copy, and a wiped data directory takes the secret with it.
//!
//! In either file, leading and trailing whitespace is ignored; the rest must be non-empty
//! printable ASCII, since it travels in an HTTP header.
//!
//! Peers may instead prove themselves with a TLS client certificate (see `tls.rs` and
//! `http/internal.rs`); this module knows only the secret.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The scheme of the `Authorization` header peers send.
const SCHEME: &str = "Bearer";
/// File name of the default secret, in `$HOME/.tsdb-backend/` or the data directory.
const FILE_NAME: &str = "peer-secret";
/// Directory of the default secret under `$HOME`.
const HOME_DIR: &str = ".tsdb-backend";
/// Random bytes of a created secret (written as twice as many hex digits).
const CREATED_BYTES: usize = 32;

/// Why the secret could not be had. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("peer secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("peer secret file {} is empty", path.display())]
    Empty { path: PathBuf },
    #[error(
        "peer secret file {}: the secret must be printable ASCII (it is sent in an HTTP header)",
        path.display()
    )]
    NotPrintable { path: PathBuf },
    #[error(
        "peer secret file {} may be accessed by group or others (mode {mode:04o}); this node \
         creates it 0600, so someone changed it: check it, then `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "creating peer secret file {}: {source} (or give one with --peer-secret-file)",
        path.display()
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The pool's shared secret. Its `Debug` does not show it.
#[derive(Clone)]
pub struct PeerSecret {
    secret: Vec<u8>,
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(..)")
    }
}

/// What a request's `Authorization` header proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The pool's secret.
    Valid,
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A bearer credential that is not the pool's secret.
    Wrong,
}

impl Proof {
    /// The label of the refusal in `tsdb_peer_auth_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Proof::Valid => "valid",
            Proof::Missing => "missing",
            Proof::Wrong => "wrong",
        }
    }
}

impl PeerSecret {
    /// A secret from text: trimmed, then checked to be non-empty printable ASCII. `path` is
    /// only for the error.
    pub fn parse(text: &[u8], path: &Path) -> Result<PeerSecret, SecretError> {
        let secret = text.trim_ascii();
        if secret.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        if !secret.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(SecretError::NotPrintable {
                path: path.to_path_buf(),
            });
        }
        Ok(PeerSecret {
            secret: secret.to_vec(),
        })
    }

    /// The value of the `Authorization` header this node sends to its peers.
    pub fn authorization(&self) -> String {
        format!("{SCHEME} {}", String::from_utf8_lossy(&self.secret))
    }

    /// Checks an `Authorization` header value (`None`: the header is absent). The scheme is
    /// matched without regard to case (RFC 9110, 11.1); the credential in constant time.
    pub fn check(&self, authorization: Option<&[u8]>) -> Proof {
        let Some(value) = authorization else {
            return Proof::Missing;
        };
        let scheme_len = SCHEME.len();
        let is_bearer = value.len() > scheme_len
            && value[..scheme_len].eq_ignore_ascii_case(SCHEME.as_bytes())
            && value[scheme_len] == b' ';
        if !is_bearer {
            return Proof::Missing;
        }
        let presented = value[scheme_len + 1..].trim_ascii();
        if self.matches(presented) {
            Proof::Valid
        } else {
            Proof::Wrong
        }
    }

    /// Constant-time equality with `presented` (only a difference in length returns early).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.secret.as_slice().ct_eq(presented))
    }
}

/// Where this node's secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretLocation {
    /// `--peer-secret-file`: read, never created.
    Given(PathBuf),
    /// `$HOME/.tsdb-backend/peer-secret`, created if missing.
    Home(PathBuf),
    /// `<data-dir>/peer-secret` when `HOME` is not set, created if missing.
    DataDir(PathBuf),
}

/// A secret and how it was had.
#[derive(Debug)]
pub struct LoadedSecret {
    pub secret: PeerSecret,
    /// True when this start created the file.
    pub created: bool,
    /// The mode bits group or others hold on a given file (0 when none): worth a warning.
    pub open_mode: u32,
}

impl SecretLocation {
    /// The location for a flag (if given), a `HOME` (if set and not empty) and a data dir.
    pub fn resolve(given: Option<&Path>, home: Option<&OsStr>, data_dir: &Path) -> Self {
        match (given, home.filter(|h| !h.is_empty())) {
            (Some(p), _) => SecretLocation::Given(p.to_path_buf()),
            (None, Some(home)) => {
                SecretLocation::Home(Path::new(home).join(HOME_DIR).join(FILE_NAME))
            }
            (None, None) => SecretLocation::DataDir(data_dir.join(FILE_NAME)),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            SecretLocation::Given(p) | SecretLocation::Home(p) | SecretLocation::DataDir(p) => p,
        }
    }

    /// Reads the secret, creating a default file first if there is none.
    pub fn load(&self) -> Result<LoadedSecret, SecretError> {
        let path = self.path();
        let mut created = false;
        if !matches!(self, SecretLocation::Given(_)) {
            let dir = path.parent().unwrap_or(Path::new("."));
            if matches!(self, SecretLocation::Home(_)) {
                // Only our own directory is made 0700; a data dir keeps the mode it has.
                create_private_dir(dir).map_err(|source| SecretError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
            } else {
                std::fs::create_dir_all(dir).map_err(|source| SecretError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            created = create_if_missing(path, &random_hex(CREATED_BYTES)).map_err(|source| {
                SecretError::Create {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        }
        let read_err = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode();
        let open_mode = mode & 0o077;
        if open_mode != 0 && !matches!(self, SecretLocation::Given(_)) {
            return Err(SecretError::TooOpen {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        let text = std::fs::read(path).map_err(read_err)?;
        Ok(LoadedSecret {
            secret: PeerSecret::parse(&text, path)?,
            created,
            open_mode,
        })
    }
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Puts `contents` at `path` (mode 0600) unless a file is already there; true if this call
/// created it. Race-free among processes: the file is written whole under a private name,
/// then hard-linked into place, which fails if another process got there first (whose file
/// is then complete, for the same reason).
fn create_if_missing(path: &Path, contents: &str) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let tmp = path.with_file_name(format!(
        ".{FILE_NAME}.{}.{}",
        std::process::id(),
        random_hex(8)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// `n` random bytes as lower-case hex, from the thread's CSPRNG (seeded by the OS).
fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> PeerSecret {
        PeerSecret::parse(s.as_bytes(), Path::new("test")).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let s = secret("correct horse");
        assert!(s.matches(b"correct horse"));
        assert!(!s.matches(b"correct hors"), "a prefix");
        assert!(!s.matches(b"correct horsee"), "longer");
        assert!(!s.matches(b"Correct horse"), "case");
        assert!(!s.matches(b""), "empty");
    }

    #[test]
    fn the_authorization_header_needs_the_bearer_scheme_and_the_secret() {
        let s = secret("abc123");
        assert_eq!(s.authorization(), "Bearer abc123");
        assert_eq!(s.check(Some(b"Bearer abc123")), Proof::Valid);
        assert_eq!(s.check(Some(b"bearer abc123")), Proof::Valid, "scheme case");
        assert_eq!(s.check(Some(b"Bearer  abc123 ")), Proof::Valid, "spaces");
        assert_eq!(s.check(Some(b"Bearer abc124")), Proof::Wrong);
        assert_eq!(s.check(Some(b"Bearer ")), Proof::Wrong);
        assert_eq!(s.check(None), Proof::Missing);
        assert_eq!(s.check(Some(b"Basic YWJjMTIz")), Proof::Missing);
        assert_eq!(s.check(Some(b"Bearerabc123")), Proof::Missing);
        assert_eq!(s.check(Some(b"abc123")), Proof::Missing);
    }

    #[test]
    fn a_secret_is_trimmed_and_must_be_printable_and_not_empty() {
        let p = Path::new("/etc/pool/secret");
        let s = PeerSecret::parse(b"  s3cret with spaces\n\n", p).unwrap();
        assert_eq!(s.authorization(), "Bearer s3cret with spaces");
        let empty = PeerSecret::parse(b" \n\t", p).unwrap_err().to_string();
        assert_eq!(empty, "peer secret file /etc/pool/secret is empty");
        let binary = PeerSecret::parse(b"abc\x01def", p).unwrap_err().to_string();
        assert!(binary.contains("/etc/pool/secret") && binary.contains("printable"));
        assert!(PeerSecret::parse("sécret".as_bytes(), p).is_err());
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        assert_eq!(format!("{:?}", secret("hunter2")), "PeerSecret(..)");
    }

    #[test]
    fn the_location_is_the_flag_then_home_then_the_data_dir() {
        let data = Path::new("/var/lib/tsdb");
        let given = Path::new("/etc/pool/secret");
        assert_eq!(
            SecretLocation::resolve(Some(given), Some(OsStr::new("/home/u")), data),
            SecretLocation::Given(given.to_path_buf())
        );
        assert_eq!(
            SecretLocation::resolve(None, Some(OsStr::new("/home/u")), data),
            SecretLocation::Home(PathBuf::from("/home/u/.tsdb-backend/peer-secret"))
        );
        assert_eq!(
            SecretLocation::resolve(None, Some(OsStr::new("")), data),
            SecretLocation::DataDir(PathBuf::from("/var/lib/tsdb/peer-secret"))
        );
        assert_eq!(
            SecretLocation::resolve(None, None, data),
            SecretLocation::DataDir(PathBuf::from("/var/lib/tsdb/peer-secret"))
        );
    }

    #[test]
    fn the_default_secret_is_created_private_once_and_then_reused() {
        let home = tempfile::tempdir().unwrap();
        let at = SecretLocation::resolve(None, Some(home.path().as_os_str()), Path::new("d"));
        let first = at.load().unwrap();
        assert!(first.created);
        let path = home.path().join(".tsdb-backend/peer-secret");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 2 * CREATED_BYTES);
        assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        let again = at.load().unwrap();
        assert!(!again.created);
        assert_eq!(
            again.secret.authorization(),
            first.secret.authorization(),
            "the same secret on the next start"
        );
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("peer-secret")]);
    }

    #[test]
    fn nodes_starting_together_agree_on_one_created_secret() {
        let home = tempfile::tempdir().unwrap();
        let at = SecretLocation::resolve(None, Some(home.path().as_os_str()), Path::new("d"));
        let barrier = std::sync::Barrier::new(8);
        let loaded: Vec<LoadedSecret> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        at.load().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(loaded.iter().filter(|l| l.created).count(), 1);
        let first = loaded[0].secret.authorization();
        assert!(loaded.iter().all(|l| l.secret.authorization() == first));
    }

    #[test]
    fn a_loosened_default_secret_is_refused_and_a_given_one_only_flagged() {
        let home = tempfile::tempdir().unwrap();
        let at = SecretLocation::resolve(None, Some(home.path().as_os_str()), Path::new("d"));
        at.load().unwrap();
        let path = at.path().to_path_buf();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = at.load().unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");

        let given = SecretLocation::Given(path.clone());
        let loaded = given.load().unwrap();
        assert_eq!(loaded.open_mode, 0o044);
        assert!(!loaded.created);
    }

    #[test]
    fn a_given_secret_file_is_never_created_and_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = SecretLocation::Given(missing.clone())
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("peer secret file {}:", missing.display())));
        assert!(!missing.exists());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = SecretLocation::Given(empty.clone())
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("peer secret file {} is empty", empty.display())
        );
    }

    #[test]
    fn without_home_the_secret_is_created_in_the_data_dir() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("not-yet");
        let at = SecretLocation::resolve(None, None, &dir);
        let loaded = at.load().unwrap();
        assert!(loaded.created);
        assert_eq!(mode(&dir.join("peer-secret")), 0o600);
    }
}
