//! A small tmpfs mounted for one test: a disk that fills up or turns read-only on cue. Mounting
//! needs root; the suite runs as root, as CI does.

use std::path::Path;
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on a fresh temporary directory.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it read-only (what ext4 does after an I/O error), waiting while a file is open
    /// for writing (the kernel refuses the remount then).
    pub fn remount_read_only(&self) {
        crate::eventually(
            "the remount read-only",
            std::time::Duration::from_secs(20),
            || self.remount("remount,ro"),
        );
    }

    /// Makes it writable again.
    pub fn remount_read_write(&self) {
        assert!(self.remount("remount,rw"), "remounting read-write failed");
    }

    fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", options])
            .arg(self.dir.path())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
