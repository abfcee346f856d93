//! Writing a file the user named: `shardfeed extract --out FILE`.

use anyhow::{anyhow, bail, Context};
use std::io::Write;
use std::path::Path;

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
