//! Reading the files we are pointed at (the payload, `--*-file` flags, the
//! config file, TLS PEM files) without ever blocking past a time budget:
//! CloudStack never kills us, so a FIFO, a terminal or a hung network mount
//! where a file is expected must not hang the command.
//!
//! The file is opened with `O_NONBLOCK` (opening a FIFO would otherwise wait
//! for a writer), checked to be a regular file *after* opening (no race with
//! a rename), and read at most `limit + 1` bytes, all on a helper thread that
//! is abandoned when the budget runs out (std cannot time out `open(2)` or a
//! read on a stalled NFS mount; the process exits soon after anyway).

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest payload file (and `--*-file` document) accepted: 8 MiB. A
/// `restore-network` of a few thousand NICs is well under 2 MiB; parsing
/// costs about 16 times the file size in memory, so this keeps a command
/// under ~150 MB whatever it is sent (docs/cli.md, "Limits").
pub const MAX_PAYLOAD: u64 = 8 << 20;

/// Largest config or PEM file accepted (1 MiB).
pub const MAX_SMALL_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    #[error("{0} is not a regular file (it is a {1})")]
    NotRegular(PathBuf, &'static str),
    #[error("{path} is larger than {} (at least {size} bytes)", human(*limit))]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("reading {0} did not finish within the deadline")]
    Deadline(PathBuf),
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a file that is not regular is, for the error message.
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// The whole content of the regular file `path`, at most `limit` bytes,
/// within `budget`.
pub fn read(path: &Path, limit: u64, budget: Duration) -> Result<Vec<u8>, ReadError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new().name("read-file".into()).spawn(move || {
        let _ = tx.send(read_now(&owned, limit));
    });
    if let Err(e) = spawned {
        return Err(ReadError::Io(path.to_path_buf(), e));
    }
    rx.recv_timeout(budget).unwrap_or_else(|_| Err(ReadError::Deadline(path.to_path_buf())))
}

fn read_now(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound(path.to_path_buf()),
        _ => ReadError::Io(path.to_path_buf(), e),
    };
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(path.to_path_buf(), kind(meta.file_type())));
    }
    let too_large = |size| ReadError::TooLarge { path: path.to_path_buf(), size, limit };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut buf).map_err(err)?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_only_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let budget = Duration::from_secs(5);
        assert_eq!(read(&f, 5, budget).unwrap(), b"hello");
        assert!(matches!(read(&f, 4, budget), Err(ReadError::TooLarge { size: 5, limit: 4, .. })));
        assert!(matches!(read(dir.path(), 4, budget), Err(ReadError::NotRegular(_, "directory"))));
        assert!(matches!(read(Path::new("/dev/null"), 4, budget), Err(ReadError::NotRegular(_, "character device"))));
        assert!(matches!(read(&dir.path().join("nope"), 4, budget), Err(ReadError::NotFound(_))));
        let e = ReadError::TooLarge { path: "p".into(), size: 9 << 20, limit: MAX_PAYLOAD };
        assert_eq!(e.to_string(), "p is larger than 8 MiB (at least 9437184 bytes)");
    }
}
