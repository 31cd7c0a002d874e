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

/// hookbridge in spool mode with its spool on a small tmpfs whose room is used up: sink `name`
/// refuses (retryably) until its `failures` is set to 0, so everything stays in the spool, and
/// events were posted until the spool answered 503.
pub struct FullSpool {
    pub fs: Tmpfs,
    pub hb: crate::common::Running,
    pub sink: std::sync::Arc<crate::common::FailingSink>,
    /// Removing it gives the space back.
    pub reserve: PathBuf,
    /// Ids answered 202.
    pub acked: Vec<String>,
    /// The first 503's body.
    pub refused: serde_json::Value,
    /// The configuration it runs.
    pub config: String,
}

/// Posts a 2 KB CloudEvent; (status, JSON body).
pub async fn post(url: &str, id: &str, pad: usize) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:disk")
        .header("ce-type", "t.disk")
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(pad)))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

pub async fn spool_on_a_full_disk(name: &str) -> FullSpool {
    let fs = Tmpfs::mount(2 << 20);
    let config = format!(
        "[sources.ce]\npath = \"/events\"\nkind = \"cloudevents\"\ndelivery = \"spool\"\nverify = {{ kind = \"none\" }}\n\
         [sinks.{name}]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"{name}\"]\n\
         [spool]\ndir = \"{}\"\nretry_initial = \"20ms\"\nretry_max = \"100ms\"\nretain = \"0s\"\n",
        fs.path().join("spool").display()
    );
    let sink = crate::common::FailingSink::new(name, usize::MAX, || {
        hookbridge::sink::SinkError::unavailable("closed for the test")
    });
    let hb = crate::common::start(
        &config,
        vec![(name, sink.clone() as hookbridge::sink::SinkHandle)],
    )
    .await;
    // The spool file exists now; leave it little room to grow.
    let reserve = fs.path().join("reserve");
    let free = fs.free();
    std::fs::write(&reserve, vec![0u8; free.saturating_sub(48 * 1024) as usize]).expect("reserve");
    let url = hb.url("/events");
    let mut acked = Vec::new();
    for i in 0..2_000 {
        let id = format!("s-{i}");
        let (status, body) = post(&url, &id, 2_000).await;
        match status {
            202 => acked.push(id),
            503 => {
                return FullSpool {
                    fs,
                    hb,
                    sink,
                    reserve,
                    acked,
                    refused: body,
                    config,
                }
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    panic!("the disk never filled ({} spooled)", acked.len());
}
