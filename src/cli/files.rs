//! Writing a file the user named: `shardfeed extract --out FILE`.

use anyhow::{anyhow, bail, Context};
use shardfeed_engine::ingest::unescape_name;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `out` so that readers see no file (or the old one) or the whole new one:
/// a temporary file created exclusively, with a random name, in `out`'s folder (never a name an
/// attacker could have planted a link at), synced, then renamed over `out`. Without
/// `overwrite`, an existing `out` is refused, and the rename refuses to replace one that
/// appears meanwhile. On any failure the temporary file is removed.
pub fn write_file(out: &Path, bytes: &[u8], overwrite: bool) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!("{}: is a folder; give --out a file name", out.display());
    }
    if !overwrite && out.symlink_metadata().is_ok() {
        bail!("{}: exists; pass --force to overwrite it", out.display());
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".shardfeed-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file there", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    let placed = if overwrite {
        tmp.persist(out)
    } else {
        tmp.persist_noclobber(out)
    };
    placed.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!("{}: exists; pass --force to overwrite it", out.display())
        } else {
            anyhow!("{}: {}", out.display(), e.error)
        }
    })?;
    // The rename is durable once the folder is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The file name to extract a record to when `--out` is not given: the last part of its stored
/// path, with the escapes undone so the original name comes back byte for byte. A name that
/// would not be a plain file name here (empty, `.`, `..`, or holding `/` or NUL once
/// unescaped) gives `record`.
pub fn default_name(stored_path: &str) -> PathBuf {
    let last = stored_path.rsplit('/').next().unwrap_or_default();
    let raw = unescape_name(last).unwrap_or_else(|| last.as_bytes().to_vec());
    let odd = raw.is_empty() || raw == b"." || raw == b"..";
    if odd || raw.contains(&b'/') || raw.contains(&0) {
        return PathBuf::from("record");
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(&raw))
    }
    #[cfg(not(unix))]
    {
        String::from_utf8(raw).map_or_else(|_| PathBuf::from(last), PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_come_back_raw_and_never_leave_the_folder() {
        assert_eq!(
            default_name("train/n1/n1_7.JPEG"),
            PathBuf::from("n1_7.JPEG")
        );
        assert_eq!(default_name("x.png"), PathBuf::from("x.png"));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(
                default_name("val/a\\xe9.JPEG").as_os_str().as_bytes(),
                b"a\xe9.JPEG"
            );
        }
        for hostile in [
            "train/",
            "a/..",
            "a/.",
            "a/..\\x2f..\\x2fetc\\x2fpasswd",
            "a/x\\x00y",
        ] {
            assert_eq!(default_name(hostile), PathBuf::from("record"), "{hostile}");
        }
    }
}
