//! Files and directories readable by their owner only: the spool, the dedup table and the file
//! sink's output hold events (personal and business data), so they are created with mode 0600
//! (directories 0700) whatever the process's umask. Existing files and directories keep the
//! mode an operator gave them.

use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents, each new one with mode 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` empty with mode 0600 if it does not exist (a library then opens it in place).
pub fn create_file(path: &Path) -> io::Result<()> {
    match options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `OpenOptions` whose newly created file has mode 0600.
pub fn options() -> std::fs::OpenOptions {
    #[allow(unused_mut)]
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_and_directories_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("dir");
        let sub = dir.path().join("a/b");
        super::create_dir(&sub).expect("dir");
        let file = sub.join("f");
        super::create_file(&file).expect("file");
        super::create_file(&file).expect("exists already");
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
