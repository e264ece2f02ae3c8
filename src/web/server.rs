//! The listener: a one-thread tokio runtime of the sink's own, an accept loop with a cap on
//! open connections, hyper's HTTP/1 with limits on the request head and a header-read timeout,
//! and sockets that close when idle or when the client stops taking what is written.

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

use super::{
    HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, MAX_HEADERS,
    MAX_HEADER_BYTES, MIN_TRANSFER_RATE, RATE_WINDOW, WRITE_TIMEOUT,
};

/// Open connections per client address; a [`ClientSlot`] holds one until it is dropped.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection of one client address, counted while it lives.
struct ClientSlot(Arc<PerClient>, std::net::IpAddr);

impl PerClient {
    /// A slot for `ip`, or none when it already holds [`MAX_CONNECTIONS_PER_CLIENT`].
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot(self.clone(), ip))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Socket send buffer per connection: small, so a client that stops reading is noticed soon
/// (the write timeout starts once the buffers are full).
#[cfg(unix)]
const SEND_BUFFER: usize = 64 << 10;

/// How long, and how much, [`linger`] reads from a closing connection.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 2 << 20;

/// The server thread; [`Server::stop`] (or dropping it) ends it and closes every connection.
pub(super) struct Server {
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serve `app` on `listener` from a thread of its own.
    pub(super) fn start(listener: std::net::TcpListener, app: axum::Router) -> Result<Server> {
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the server's runtime")?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let r = rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    accept_loop(listener, app, stopped).await;
                    Ok::<_, io::Error>(())
                });
                if let Err(e) = r {
                    log::warn!("http: the server stopped: {e}");
                }
                // Connections still open (streams, slow clients) are dropped here.
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .context("cannot start the server thread")?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stop accepting, close every connection, and wait for the thread (well under a second).
    pub(super) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The HTTP/1 settings every connection gets.
fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2)
        .keep_alive(true);
    b
}

/// Accept until told to stop; each connection in its own task, at most [`MAX_CONNECTIONS`]
/// in all and [`MAX_CONNECTIONS_PER_CLIENT`] from one address.
async fn accept_loop(listener: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_client = Arc::new(PerClient::default());
    let http = http1_builder();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors or a connection reset before it was accepted:
                    // wait a little instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Some(slot) = per_client.take(peer.ip()) else {
            drop(tcp); // this client holds its share: closed at once
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(tcp); // over the cap: closed at once
            continue;
        };
        let _ = tcp.set_nodelay(true);
        limit_send_buffer(&tcp);
        let conn = http
            .serve_connection(
                TokioIo::new(Guarded::new(tcp)),
                TowerToHyperService::new(app.clone()),
            )
            .without_shutdown();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Ok(parts) = r {
                    linger(parts.io.into_inner()).await;
                },
                _ = stop.changed() => {}
            }
            drop(permit);
            drop(slot);
        });
    }
}

/// Close like a careful server: end our side, then read and discard what the client still
/// sends, briefly. Closing a socket with unread data resets the connection, and the client may
/// lose the answer it was sent (a 413 to a body that was never read).
async fn linger(mut io: Guarded) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Ok(n @ 1..) = io.read(&mut buf).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Keep the kernel's send buffer small, so that a client that stops reading is noticed by the
/// write deadline after [`SEND_BUFFER`] bytes rather than after megabytes of queued frames.
fn limit_send_buffer(tcp: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER) {
        log::debug!("http: SO_SNDBUF {SEND_BUFFER}: {e}");
    }
}

/// A socket with two deadlines, [`IDLE_TIMEOUT`] without anything read or written and
/// [`WRITE_TIMEOUT`] for one write the client does not take (a dead or never-reading client),
/// and a floor on the rate at which the client takes what is written ([`Pace`]: a trickling
/// reader).
struct Guarded {
    tcp: TcpStream,
    idle: Pin<Box<Sleep>>,
    write_stall: Option<Pin<Box<Sleep>>>,
    pace: Pace,
}

/// How fast a client takes what is written, window by window: the bytes written and the time
/// the server spent waiting on the client (writes pending) in the current [`RATE_WINDOW`].
struct Pace {
    window_start: Instant,
    bytes: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            window_start: now,
            bytes: 0,
            waited: Duration::ZERO,
            waiting_since: None,
        }
    }

    /// Record one write's outcome at `now` (`None`: pending), and say whether the window that
    /// just closed shows a client slower than [`MIN_TRANSFER_RATE`] that the server waited on
    /// for at least half of it. A client that is merely idle (nothing to send) is not slow.
    fn record(&mut self, now: Instant, written: Option<usize>) -> bool {
        match written {
            None => {
                self.waiting_since.get_or_insert(now);
            }
            Some(n) => {
                if let Some(t) = self.waiting_since.take() {
                    self.waited += now - t;
                }
                self.bytes += n as u64;
            }
        }
        let span = now - self.window_start;
        if span < RATE_WINDOW {
            return false;
        }
        let waiting = self.waiting_since.map_or(Duration::ZERO, |t| now - t);
        let waited = self.waited + waiting;
        let floor = MIN_TRANSFER_RATE as f64 * span.as_secs_f64();
        let slow = waited * 2 >= span && (self.bytes as f64) < floor;
        self.window_start = now;
        self.bytes = 0;
        self.waited = Duration::ZERO;
        self.waiting_since = self.waiting_since.map(|_| now);
        slow
    }
}

impl Guarded {
    fn new(tcp: TcpStream) -> Guarded {
        Guarded {
            tcp,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            write_stall: None,
            pace: Pace::new(Instant::now()),
        }
    }

    fn touch(&mut self) {
        self.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
    }

    /// A write made progress (`Ready`) or is stalled (`Pending`): an error once it has been
    /// stalled for [`WRITE_TIMEOUT`], or when the client takes less than
    /// [`MIN_TRANSFER_RATE`].
    fn after_write(
        &mut self,
        cx: &mut TaskContext<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let written = match &r {
            Poll::Ready(Ok(n)) => Some(*n),
            Poll::Ready(Err(_)) => Some(0),
            Poll::Pending => None,
        };
        if self.pace.record(Instant::now(), written) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads slower than the minimum transfer rate",
            )));
        }
        match r {
            Poll::Ready(r) => {
                self.write_stall = None;
                if matches!(r, Ok(n) if n > 0) {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                if stall.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, data);
        self.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `pace` one write every `every` for `span`: `Some(n)` written, or pending
    /// (`None`); whether it called the client slow.
    fn drive(
        pace: &mut Pace,
        t0: Instant,
        span: Duration,
        every: Duration,
        w: Option<usize>,
    ) -> bool {
        let mut t = t0;
        let mut slow = false;
        while t <= t0 + span {
            slow |= pace.record(t, w);
            t += every;
        }
        slow
    }

    #[test]
    fn a_trickling_reader_is_slow_and_a_fast_or_idle_one_is_not() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // waited on the whole time, 100 bytes a second: slow
        let mut p = Pace::new(t0);
        let mut t = t0;
        let mut slow = false;
        for _ in 0..12 {
            slow |= p.record(t, None);
            t += ms(999);
            slow |= p.record(t, Some(100));
        }
        assert!(slow);
        // waited on as often, but 64 kB a second: not slow
        let mut p = Pace::new(t0);
        let mut t = t0;
        let mut slow = false;
        for _ in 0..24 {
            slow |= p.record(t, None);
            t += ms(999);
            slow |= p.record(t, Some(64 << 10));
        }
        assert!(!slow);
        // never waited on (little to send, a paused camera): not slow however few bytes
        let mut p = Pace::new(t0);
        assert!(!drive(
            &mut p,
            t0,
            Duration::from_secs(30),
            ms(500),
            Some(10)
        ));
        // a client that took nothing while pending for the whole window: slow
        let mut p = Pace::new(t0);
        assert!(drive(&mut p, t0, Duration::from_secs(11), ms(1000), None));
    }
}
