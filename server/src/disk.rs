//! Disk space: how much the filesystem holding a folder has left for us.

use std::path::Path;

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes only into the zeroed struct we pass; the path is a valid
    // NUL-terminated string for the duration of the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Whether the filesystem holding `path` has fewer than `min_mb` MiB left (a failed check
/// counts as enough: the write itself will then say what is wrong).
pub fn below(path: &Path, min_mb: u64) -> bool {
    free_bytes(path).is_ok_and(|free| free < min_mb.saturating_mul(1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_free_space() {
        let free = free_bytes(&std::env::temp_dir()).unwrap();
        assert!(free > 0);
        assert!(!below(&std::env::temp_dir(), 0));
        assert!(below(&std::env::temp_dir(), u64::MAX / (2 << 20)));
        assert!(below(&std::env::temp_dir(), u64::MAX), "no overflow");
        assert!(free_bytes(Path::new("/nonexistent/x")).is_err());
    }
}
