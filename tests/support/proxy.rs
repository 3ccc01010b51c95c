//! A TCP proxy on loopback the test controls, between a client (`sts-guard
//! serve`, a kube client) and an API server: bytes flow, stop flowing
//! (a hung API server or a blackholed route), or every connection drops.
//! It runs on a thread and runtime of its own, so a test blocked in
//! `kubectl` does not stop it; it stops with the process.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Bytes flow.
    Up,
    /// Connections stay open, nothing flows, new ones are held.
    Hang,
    /// Every connection is dropped and new ones are closed at once.
    Down,
}

pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Network>,
}

impl Proxy {
    /// Forwards every connection to `upstream`, starting [`Network::Up`].
    pub fn start(upstream: SocketAddr) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Network::Up);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(forward(client, upstream, rx.clone()));
                }
            });
        });
        Proxy { addr, mode }
    }

    pub fn set(&self, network: Network) {
        self.mode.send_replace(network);
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Network>) {
    // A hung network holds new connections too.
    let up = mode.wait_for(|m| *m != Network::Hang).await.map(|m| *m);
    if !matches!(up, Ok(Network::Up)) {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pump(cr, sw, mode.clone()) => {}
        _ = pump(sr, cw, mode.clone()) => {}
        _ = mode.wait_for(|m| *m == Network::Down) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Network>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Hang: hold the bytes until the network is up again (or down).
        match mode.wait_for(|m| *m != Network::Hang).await.map(|m| *m) {
            Ok(Network::Up) => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
