//! A fault-injecting TCP proxy for partition tests: it forwards a loopback port to a target
//! until it is [cut](Proxy::cut), which closes every connection through it and refuses new
//! ones (the peer sees resets, as across a broken network), until it is
//! [healed](Proxy::heal).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One direction of one link between two brokers, e.g. broker 1's connection to broker 2.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the proxy")?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(watch::Sender::new(false));
        let task = tokio::spawn(accept_loop(listener, target, cut.clone()));
        Ok(Proxy { addr, cut, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Breaks the link: open connections are closed, new ones are refused.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, cut: Arc<watch::Sender<bool>>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(inbound);
            continue;
        }
        let mut cut_rx = cut.subscribe();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (mut a, mut b) = (inbound, outbound);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                _ = cut_rx.wait_for(|c| *c) => {}
            }
            let _ = a.shutdown().await;
            let _ = b.shutdown().await;
        });
    }
}
