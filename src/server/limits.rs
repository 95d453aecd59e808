//! The limits of the accept loop: how many connections, in total and per
//! IP address ([`Limiter`]), and the answer to one over them ([`reject`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::http::body::ResponseBody;
use crate::http::connections::ConnectionStats;
use crate::http::refusal::{Refusal, refuse};
use crate::server::config::ServerConfig;

/// Connections being refused at once; more are closed without an answer.
const MAX_REJECTING: usize = 256;

/// Answers a connection over a limit and closes it, unless too many are
/// being refused already: a browser's `EventSource` gets `200` with a
/// `retry:` hint (it keeps trying), other clients `503` (see
/// [`refusal`](crate::http::refusal)).
pub(crate) fn reject(
    stream: TcpStream,
    why: Refusal,
    config: &ServerConfig,
    stats: &Arc<ConnectionStats>,
    rejecting: &Arc<AtomicUsize>,
) {
    if rejecting.fetch_add(1, Ordering::Relaxed) >= MAX_REJECTING {
        rejecting.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let rejecting = rejecting.clone();
    let stats = stats.clone();
    let tls = config.tls_config();
    let timeout = config.header_read_timeout.min(Duration::from_secs(5));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    tokio::spawn(async move {
        let svc = service_fn(|req: Request| {
            let mut res = refuse(why, req.headers(), Some(&stats.refusals));
            stats.refusals.decorate(req.headers(), &mut res);
            async { Ok::<Response<ResponseBody>, Infallible>(res) }
        });
        let work = async {
            match tls {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(tls) => {
                    if let Ok((stream, _)) = tls.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(timeout * 2, work).await;
        rejecting.fetch_sub(1, Ordering::Relaxed);
    });
}

type Request = http::Request<Incoming>;

/// Counts open connections, in total and per IP address.
pub(crate) struct Limiter {
    max: usize,
    per_ip: Option<usize>,
    stats: Arc<ConnectionStats>,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Limiter {
    pub(crate) fn new(config: &ServerConfig, stats: Arc<ConnectionStats>) -> Self {
        Limiter {
            max: config.max_connections,
            per_ip: config.max_connections_per_ip,
            stats,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        if self.stats.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.stats.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Connections);
        }
        if let Some(per_ip) = self.per_ip {
            let mut by_ip = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= per_ip {
                drop(by_ip);
                self.stats.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ConnectionsPerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One open connection; released on drop.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let l = &self.limiter;
        if l.per_ip.is_some() {
            let mut by_ip = l.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
        if l.stats.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            l.stats.all_closed.notify_waiters();
        }
    }
}
