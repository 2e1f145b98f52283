//! The deadline on a request head: from its first byte to its end, however slowly the bytes
//! trickle (a slowloris client sends one byte every few seconds and would otherwise hold
//! its connection for ever, since every single read is quick).
//!
//! ```text
//!            accept / first byte of a keep-alive request       head parsed
//!   Idle ─────────────────────────────────────────▶ Reading ─────────────▶ Done
//!    ▲                                                 │ timeout passed: the connection is cut
//!    └───────────────── answer sent, connection kept ◀─┘ (from Done)
//! ```
//!
//! Three parties share one [`HeadClock`]: the connection loop (`Reading` at accept, `Idle`
//! between requests, and it waits on [`HeadClock::expired`]), the stream (a read that
//! brings bytes while `Idle` starts the clock: [`HeadTimed`]), and the proxy (the head was
//! parsed: [`HeadTimed::head_read_on`] the session's stream). The wait between two requests is not counted: that is
//! the listener's `idle_timeout`.

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// No head is being read.
const IDLE: u64 = 0;
/// The head has been read.
const DONE: u64 = u64::MAX;
// Any other value: a head is being read since (value - 1) ns after the clock's origin.

/// The head deadline of one connection.
#[derive(Debug)]
pub struct HeadClock {
    timeout: Duration,
    origin: Instant,
    state: AtomicU64,
    started: Notify,
}

impl HeadClock {
    /// A clock for heads that must arrive within `timeout`, idle until told otherwise.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(HeadClock {
            timeout,
            origin: Instant::now(),
            state: AtomicU64::new(IDLE),
            started: Notify::new(),
        })
    }

    fn reading_since_now(&self) -> u64 {
        let ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(DONE - 2);
        ns.saturating_add(1).min(DONE - 1)
    }

    /// A head is being read from now on (a new connection's first request).
    pub fn start(&self) {
        self.state
            .store(self.reading_since_now(), Ordering::Release);
        self.started.notify_one();
    }

    /// Between two requests: the next head's time starts at its first byte.
    pub fn idle(&self) {
        self.state.store(IDLE, Ordering::Release);
    }

    /// The head was parsed: no deadline until the next request.
    pub fn head_read(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    /// Bytes arrived: if no head was being read, one is now.
    fn bytes_arrived(&self) {
        if self.state.load(Ordering::Acquire) == IDLE
            && self
                .state
                .compare_exchange(
                    IDLE,
                    self.reading_since_now(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.started.notify_one();
        }
    }

    /// Resolves when a head has been read for longer than the timeout; pending for ever
    /// while the head is done or (until bytes arrive) while the connection is idle.
    pub async fn expired(&self) {
        loop {
            match self.state.load(Ordering::Acquire) {
                IDLE => self.started.notified().await,
                DONE => std::future::pending::<()>().await,
                since => {
                    let began = self.origin + Duration::from_nanos(since - 1);
                    tokio::time::sleep_until(began + self.timeout).await;
                    // Still the same head, not yet read: its time is up.
                    if self.state.load(Ordering::Acquire) == since {
                        return;
                    }
                }
            }
        }
    }
}

/// A client stream that tells its [`HeadClock`] when bytes arrive; everything else is the
/// stream's own.
#[derive(Debug)]
pub struct HeadTimed {
    inner: Stream,
    clock: Arc<HeadClock>,
}

impl HeadTimed {
    pub fn new(inner: Stream, clock: Arc<HeadClock>) -> Self {
        HeadTimed { inner, clock }
    }

    /// Tells the clock of the connection under `stream`, if it is one of ours, that the
    /// head was read: the proxy calls this once Pingora has parsed a request head.
    pub fn head_read_on(stream: &Stream) {
        // `as_any` of the boxed value itself, not of the box.
        if let Some(timed) = (**stream).as_any().downcast_ref::<HeadTimed>() {
            timed.clock.head_read();
        }
    }
}

impl AsyncRead for HeadTimed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for HeadTimed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadTimed {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadTimed {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadTimed {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadTimed {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadTimed {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadTimed {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadTimed {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Whether `expired` has resolved after the time moved by `by`.
    async fn expired_after(clock: &HeadClock, by: Duration) -> bool {
        tokio::select! {
            biased;
            () = clock.expired() => true,
            () = tokio::time::sleep(by) => false,
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_head_that_takes_longer_than_the_timeout_expires_exactly_then() {
        let clock = HeadClock::new(TIMEOUT);
        clock.start();
        let waiting = clock.clone();
        let waiter = tokio::spawn(async move { waiting.expired().await });
        tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
        assert!(!waiter.is_finished(), "expired 1 ms before the timeout");
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert!(waiter.is_finished(), "not expired 1 ms after the timeout");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_head_read_in_time_never_expires() {
        let clock = HeadClock::new(TIMEOUT);
        clock.start();
        tokio::time::sleep(TIMEOUT / 2).await;
        clock.head_read();
        assert!(!expired_after(&clock, TIMEOUT * 10).await);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_idle_connection_has_no_head_deadline_until_bytes_arrive() {
        let clock = HeadClock::new(TIMEOUT);
        let (client, server) = tokio::io::duplex(64);
        let mut stream = HeadTimed::new(Box::new(server), clock.clone());
        clock.idle();
        assert!(
            !expired_after(&clock, TIMEOUT * 3).await,
            "idle time is not head time"
        );

        // One byte of the next head: its clock starts now.
        let mut client = client;
        client.write_all(b"G").await.unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        assert!(!expired_after(&clock, TIMEOUT - Duration::from_millis(1)).await);
        assert!(expired_after(&clock, Duration::from_millis(2)).await);
    }
}
