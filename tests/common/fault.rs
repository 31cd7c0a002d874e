//! A fault-injecting TCP proxy for tests, between hookbridge and a broker: pass, refuse new
//! connections, close every connection mid-stream, stall (hold bytes, forward nothing), delay
//! (forward after a pause). The broker itself is never touched.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Close new connections at once (existing ones keep working).
    Refuse,
    /// Close every connection now, and new ones at once.
    Close,
    /// Accept and read, forward nothing (a broker that never acks).
    Stall,
    /// Forward each chunk after this pause.
    Delay(Duration),
}

/// A running fault proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Fault>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Vec<Fault>>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 (or `port` when given) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        Self::start_on(upstream, 0).await
    }

    /// Like [`FaultProxy::start`] on a chosen port.
    pub async fn start_on(upstream: SocketAddr, port: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (mode, _) = watch::channel(Fault::Pass);
        let (generation, _) = watch::channel(0u64);
        let task = {
            let mode = mode.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let now = *mode.borrow();
                    if matches!(now, Fault::Refuse | Fault::Close) {
                        drop(client);
                        continue;
                    }
                    let mode_rx = mode.subscribe();
                    let cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let a = pump(cr, sw, mode_rx.clone(), cut.clone());
                        let b = pump(sr, cw, mode_rx, cut);
                        tokio::select! {
                            () = a => {}
                            () = b => {}
                        }
                    });
                }
            })
        };
        FaultProxy {
            addr,
            mode,
            generation,
            task,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Switches to `fault`.
    pub fn set(&self, fault: Fault) {
        self.log.lock().expect("lock").push(fault);
        self.mode.send_replace(fault);
        if fault == Fault::Close {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Copies one direction, applying the current fault to every chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Fault>,
    mut cut: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = cut.changed() => return,
        };
        // Hold the chunk while stalled; a cut ends the connection.
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Fault::Stall => {
                    tokio::select! {
                        _ = mode.changed() => continue,
                        _ = cut.changed() => return,
                    }
                }
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
