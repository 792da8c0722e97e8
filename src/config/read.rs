//! Reading the files a topology names (the topology file itself, its JSON
//! Schemas): regular files only, and no larger than a cap, so that a path
//! such as `/dev/zero`, a FIFO or a directory is refused at once instead of
//! hanging the load or filling memory.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// The largest topology or schema file eddy reads: 4 MiB, far above any
/// real one (the order pipeline's largest is under 4 KiB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// It could not be looked at, opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It is not a regular file (`kind` says what it is, with an article).
    #[error("it is {kind}, not a regular file")]
    NotRegular {
        /// "a directory", "a FIFO", "a character device"...
        kind: &'static str,
    },
    /// It is larger than the cap.
    #[error("it is larger than {}, the most eddy reads", bytes(*max))]
    TooLarge {
        /// The cap, in bytes.
        max: u64,
    },
    /// It is not UTF-8.
    #[error("it is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
}

/// Reads `path` as UTF-8 text, refusing anything but a regular file (after
/// symbolic links) and files larger than `max` bytes. The error says why,
/// without the path (callers name the file and the field).
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    // Look before opening: opening a FIFO for reading blocks until a writer
    // comes.
    let meta = std::fs::metadata(path)?;
    regular(&meta, max)?;
    let file = File::open(path)?;
    // The file opened may not be the one looked at, if it was replaced in
    // between.
    regular(&file.metadata()?, max)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Files that grow, or report no size (as in /proc), stop at the cap.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { max });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

fn regular(meta: &Metadata, max: u64) -> Result<(), ReadError> {
    if !meta.is_file() {
        return Err(ReadError::NotRegular { kind: kind(meta) });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(())
}

/// `max` bytes in words: MiB when a whole number of them.
fn bytes(max: u64) -> String {
    if max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else {
        format!("{max} bytes")
    }
}

/// What kind of file `meta` describes, with an article.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_and_large_files() {
        let err = |path: &Path, max| read_text(path, max).unwrap_err().to_string();
        assert_eq!(
            err(Path::new("/dev/zero"), MAX_FILE_BYTES),
            "it is a character device, not a regular file"
        );
        assert_eq!(
            err(Path::new("/"), MAX_FILE_BYTES),
            "it is a directory, not a regular file"
        );
        assert_eq!(
            err(Path::new("/no/such/file"), MAX_FILE_BYTES),
            "No such file or directory (os error 2)"
        );
        let dir = std::env::temp_dir().join(format!("eddy-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ten.txt");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_text(&file, 10).unwrap(), "0123456789");
        assert_eq!(
            err(&file, 9),
            "it is larger than 9 bytes, the most eddy reads"
        );
        assert_eq!(bytes(4 << 20), "4 MiB");
        std::fs::write(&file, b"ok\xff").unwrap();
        assert_eq!(
            err(&file, 10),
            "it is not UTF-8 text (invalid byte at offset 2)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
