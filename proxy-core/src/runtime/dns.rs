//! Web bridge names resolved off the event loops: the system resolver blocks, so
//! one thread per proxy asks it and wakes the loops when an answer is in. Answers
//! are kept [`FRESH`] (failures [`FAILED_FOR`]), so DNS changes are followed
//! without a lookup per connection. Addresses given as literals never wait.

use crate::runtime::prelude::*;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used.
pub(crate) const FRESH: Duration = Duration::from_secs(30);
/// How long a failure is remembered.
const FAILED_FOR: Duration = Duration::from_secs(5);

/// A name and port.
type Name = (String, u16);

/// What a lookup found.
pub(crate) enum Lookup {
    /// The addresses, in the resolver's order.
    Ready(Vec<SocketAddr>),
    /// The name does not resolve.
    Failed(io::Error),
    /// Asked; the loops are woken when the answer is in.
    Wait,
}

enum Entry {
    Pending,
    Done {
        at: Instant,
        answer: Result<Vec<SocketAddr>, String>,
    },
}

#[derive(Default)]
struct Inner {
    cache: Mutex<HashMap<Name, Entry>>,
    wakers: Mutex<Vec<(Arc<mio::Waker>, Arc<AtomicBool>)>>,
}

/// The proxy's resolver.
#[derive(Default)]
pub(crate) struct Resolver {
    inner: Arc<Inner>,
    ask: Mutex<Option<Sender<Name>>>,
}

impl Resolver {
    /// Sets `answered` and wakes `waker` whenever an answer comes in.
    pub(crate) fn wake_on_answer(&self, waker: Arc<mio::Waker>, answered: Arc<AtomicBool>) {
        self.inner
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((waker, answered));
    }

    /// Wakes every loop as an answer does (a connector's connection arrived).
    pub(crate) fn poke(&self) {
        let wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for (waker, answered) in wakers.iter() {
            answered.store(true, Ordering::SeqCst);
            let _ = waker.wake();
        }
    }

    /// The addresses of `host:port` if known, else asks for them.
    pub(crate) fn lookup(&self, host: &str, port: u16, now: Instant) -> Lookup {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Lookup::Ready(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&key) {
            Some(Entry::Pending) => return Lookup::Wait,
            Some(Entry::Done { at, answer }) => {
                let keep = if answer.is_ok() { FRESH } else { FAILED_FOR };
                if now.saturating_duration_since(*at) < keep {
                    return match answer {
                        Ok(a) => Lookup::Ready(a.clone()),
                        Err(e) => Lookup::Failed(io::Error::other(e.clone())),
                    };
                }
            }
            None => {}
        }
        cache.insert(key.clone(), Entry::Pending);
        drop(cache);
        if let Err(e) = self.ask(key.clone()) {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.remove(&key);
            return Lookup::Failed(e);
        }
        Lookup::Wait
    }

    /// Sends `name` to the resolver thread, starting it the first time.
    fn ask(&self, name: Name) -> io::Result<()> {
        let mut ask = self.ask.lock().unwrap_or_else(|e| e.into_inner());
        if ask.is_none() {
            let (tx, rx) = channel::<Name>();
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name("web-proxy-dns".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    // Ends when the proxy (the sender) is dropped.
                    while let Ok((host, port)) = rx.recv() {
                        let answer = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(Iterator::collect::<Vec<_>>)
                            .map_err(|e| e.to_string())
                            .and_then(|a| {
                                if a.is_empty() {
                                    Err("no address".to_string())
                                } else {
                                    Ok(a)
                                }
                            });
                        let entry = Entry::Done {
                            at: Instant::now(),
                            answer,
                        };
                        inner
                            .cache
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((host, port), entry);
                        let wakers = inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
                        for (waker, answered) in wakers.iter() {
                            answered.store(true, Ordering::SeqCst);
                            let _ = waker.wake();
                        }
                    }
                })?;
            *ask = Some(tx);
        }
        match ask.as_ref() {
            Some(tx) => tx
                .send(name)
                .map_err(|_| io::Error::other("resolver stopped")),
            None => Err(io::Error::other("resolver stopped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_ready_and_names_are_answered_once_asked() {
        let r = Resolver::default();
        let now = Instant::now();
        assert!(matches!(r.lookup("127.0.0.1", 80, now), Lookup::Ready(a) if a.len() == 1));
        assert!(matches!(r.lookup("::1", 80, now), Lookup::Ready(_)));
        // `localhost` resolves without a network; the first lookup waits.
        assert!(matches!(r.lookup("localhost", 443, now), Lookup::Wait));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        loop {
            match r.lookup("localhost", 443, Instant::now()) {
                Lookup::Ready(a) => {
                    assert!(a.iter().all(|a| a.port() == 443 && a.ip().is_loopback()));
                    break;
                }
                Lookup::Wait => {}
                Lookup::Failed(e) => std::panic!("{e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no answer for localhost after {:?}",
                start.elapsed()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(
            r.lookup("no-such-host.invalid", 443, now),
            Lookup::Wait
        ));
    }
}
