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

/// Reads `path` as UTF-8 text, refusing anything but a regular file (after
/// symbolic links) and files larger than `max` bytes. The error says why,
/// without the path (callers name the file and the field).
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    // Look before opening: opening a FIFO for reading blocks until a writer
    // comes.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    regular(&meta, max)?;
    let file = File::open(path).map_err(|e| e.to_string())?;
    // The file opened may not be the one looked at, if it was replaced in
    // between.
    regular(&file.metadata().map_err(|e| e.to_string())?, max)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Files that grow, or report no size (as in /proc), stop at the cap.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn regular(meta: &Metadata, max: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("it is {}, not a regular file", kind(meta)));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    Ok(())
}

fn too_large(max: u64) -> String {
    if max.is_multiple_of(1 << 20) {
        format!("it is larger than {} MiB, the most eddy reads", max >> 20)
    } else {
        format!("it is larger than {max} bytes, the most eddy reads")
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
        assert_eq!(
            read_text(Path::new("/dev/zero"), MAX_FILE_BYTES),
            Err("it is a character device, not a regular file".into())
        );
        assert_eq!(
            read_text(Path::new("/"), MAX_FILE_BYTES),
            Err("it is a directory, not a regular file".into())
        );
        let dir = std::env::temp_dir().join(format!("eddy-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ten.txt");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_text(&file, 10), Ok("0123456789".into()));
        assert_eq!(
            read_text(&file, 9),
            Err("it is larger than 9 bytes, the most eddy reads".into())
        );
        std::fs::write(&file, b"ok\xff").unwrap();
        assert_eq!(
            read_text(&file, 10),
            Err("it is not UTF-8 text (invalid byte at offset 2)".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
