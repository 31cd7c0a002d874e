//! A small tmpfs mounted for one test, to fill a disk for real (ENOSPC from the kernel, not a
//! mock). Needs the privilege to mount (root, as on CI); without it the test fails, saying so,
//! rather than passing unchecked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (rounded up to pages by the kernel).
    pub fn mount(size: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (this test fills a real disk and needs the privilege to \
             mount one, as CI has): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the file system with a filler file until the kernel refuses more.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        filler
    }

    /// Bytes still free.
    pub fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.path)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
