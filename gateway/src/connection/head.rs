//! The deadline on a request head: from its first byte to its end, however slowly the bytes
//! trickle (a slowloris client sends one byte every few seconds and would otherwise hold
//! its connection for ever, since every single read is quick).
//!
//! ```text
//!            accept / first byte of a keep-alive request       head parsed
//!   Idle ─────────────────────────────────────────▶ Reading ─────────────▶ Done
//!    ▲                                                 │ timeout passed: Expired, cut
//!    └───────────────── answer sent, connection kept ◀─┘ (from Done)
//! ```
//!
//! Three parties share one [`HeadClock`]: the connection loop (`Reading` at accept, `Idle`
//! between requests; it waits on [`HeadClock::watch`]), the stream (a read that brings bytes
//! starts the clock when `Idle` and checks it when `Reading`: [`HeadTimed`]), and the proxy
//! (the head was parsed: [`HeadTimed::head_read_on`] the session's stream).
//!
//! Cost, since it runs for every request: the first head of a connection has a timer, so a
//! client that connects and then sends nothing, or too little, is cut exactly at the
//! deadline. Later heads are timed by the bytes themselves: each read of a head that brings
//! bytes after the deadline cuts the connection, with no timer set or cancelled per request.
//! A later head that stops arriving altogether waits no longer than any idle connection
//! (`idle_timeout`, Pingora's wait for each read of a keep-alive connection): a slow client
//! cannot hold a connection longer than a silent one may.

use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// No head is being read.
const IDLE: u64 = 0;
/// The head has been read.
const DONE: u64 = u64::MAX;
/// A head took longer than the timeout: the connection is to be cut.
const EXPIRED: u64 = u64::MAX - 1;
/// The connection's first head, read since the accept (the clock's origin).
const FIRST: u64 = 1;
// Any other value: a head is being read since (value - 1) ns after the clock's origin.

/// The head deadline of one connection.
#[derive(Debug)]
pub struct HeadClock {
    timeout: Duration,
    origin: Instant,
    state: AtomicU64,
    /// The connection loop's [`HeadClock::watch`], woken when a head expires.
    watcher: AtomicWaker,
}

impl HeadClock {
    /// The clock of a connection accepted now: its first head is being read from now on,
    /// and must end within `timeout`.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(HeadClock {
            timeout,
            origin: Instant::now(),
            state: AtomicU64::new(FIRST),
            watcher: AtomicWaker::new(),
        })
    }

    /// The state value for a head read since now.
    fn reading_since_now(&self) -> u64 {
        let ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(EXPIRED - 1);
        ns.saturating_add(1).min(EXPIRED - 1)
    }

    /// Between two requests: the next head's time starts at its first byte.
    pub fn idle(&self) {
        self.state.store(IDLE, Ordering::Release);
    }

    /// The head was parsed: no deadline until the next request.
    pub fn head_read(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != EXPIRED).then_some(DONE)
            });
    }

    /// Bytes arrived: if no head was being read, one is now; if one was, and for longer than
    /// the timeout, its time is up.
    fn bytes_arrived(&self) {
        match self.state.load(Ordering::Acquire) {
            DONE | EXPIRED => {}
            IDLE => {
                let now = self.reading_since_now();
                let _ = self
                    .state
                    .compare_exchange(IDLE, now, Ordering::AcqRel, Ordering::Acquire);
            }
            since => {
                let began = self.origin + Duration::from_nanos(since - 1);
                if began.elapsed() >= self.timeout {
                    self.expire(since);
                }
            }
        }
    }

    /// Marks the head that began at `since` as out of time, unless it ended meanwhile.
    fn expire(&self, since: u64) {
        if self
            .state
            .compare_exchange(since, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.watcher.wake();
        }
    }

    /// Resolves when a head is out of time: the first one at its deadline, later ones when
    /// their bytes come in after it. One future per connection, polled across its requests
    /// (each poll: an atomic load and a waker check); its one timer is dropped as soon as the
    /// first head is read.
    pub async fn watch(&self) {
        let mut first = Some(Box::pin(tokio::time::sleep_until(
            self.origin + self.timeout,
        )));
        std::future::poll_fn(|cx| {
            self.watcher.register(cx.waker());
            if let Some(timer) = first.as_mut() {
                if self.state.load(Ordering::Acquire) != FIRST {
                    first = None;
                } else if timer.as_mut().poll(cx).is_ready() {
                    first = None;
                    self.expire(FIRST);
                }
            }
            match self.state.load(Ordering::Acquire) {
                EXPIRED => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await
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
    const MS: Duration = Duration::from_millis(1);

    /// Whether the watch resolves while the time moves by `by`.
    async fn fires_within(
        watch: Pin<&mut impl std::future::Future<Output = ()>>,
        by: Duration,
    ) -> bool {
        tokio::select! {
            biased;
            () = watch => true,
            () = tokio::time::sleep(by) => false,
        }
    }

    /// A stream over one end of a pipe, and the other end to write from.
    fn timed(clock: &Arc<HeadClock>) -> (HeadTimed, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(1024);
        (HeadTimed::new(Box::new(server), clock.clone()), client)
    }

    async fn send(stream: &mut HeadTimed, client: &mut tokio::io::DuplexStream, bytes: &[u8]) {
        client.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; bytes.len()];
        stream.read_exact(&mut buf).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_first_head_not_read_by_the_deadline_is_cut_exactly_then() {
        let clock = HeadClock::new(TIMEOUT);
        let watch = clock.watch();
        tokio::pin!(watch);
        assert!(
            !fires_within(watch.as_mut(), TIMEOUT - MS).await,
            "fired 1 ms early"
        );
        assert!(
            fires_within(watch.as_mut(), 2 * MS).await,
            "not fired 1 ms late"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_head_read_in_time_never_expires() {
        let clock = HeadClock::new(TIMEOUT);
        let watch = clock.watch();
        tokio::pin!(watch);
        assert!(!fires_within(watch.as_mut(), TIMEOUT / 2).await);
        clock.head_read();
        assert!(!fires_within(watch.as_mut(), TIMEOUT * 10).await);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_later_head_is_cut_by_the_first_byte_after_its_deadline() {
        let clock = HeadClock::new(TIMEOUT);
        let (mut stream, mut client) = timed(&clock);
        let watch = clock.watch();
        tokio::pin!(watch);
        clock.head_read();
        clock.idle();
        // Idle for longer than the timeout: idle time is not head time.
        assert!(!fires_within(watch.as_mut(), TIMEOUT * 3).await);
        // The next head begins; a byte just before its deadline keeps it alive...
        send(&mut stream, &mut client, b"G").await;
        tokio::time::advance(TIMEOUT - MS).await;
        send(&mut stream, &mut client, b"E").await;
        assert!(!fires_within(watch.as_mut(), MS / 2).await);
        // ...and the first byte at it cuts the connection.
        tokio::time::advance(MS).await;
        send(&mut stream, &mut client, b"T").await;
        assert!(fires_within(watch.as_mut(), MS).await);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_head_read_after_its_deadline_but_before_a_byte_said_so_is_kept() {
        let clock = HeadClock::new(TIMEOUT);
        let (mut stream, mut client) = timed(&clock);
        let watch = clock.watch();
        tokio::pin!(watch);
        clock.head_read();
        clock.idle();
        send(&mut stream, &mut client, b"GET / HTTP/1.1\r\n").await;
        tokio::time::advance(TIMEOUT * 2).await;
        // The proxy parsed it before any late byte was read: it is served.
        clock.head_read();
        send(&mut stream, &mut client, b"body").await;
        assert!(!fires_within(watch.as_mut(), TIMEOUT).await);
    }
}
