//! Slowing down token guessing: a client (by IP address) that presents `limit` wrong tokens
//! within `window` is answered `429` with `Retry-After` for the rest of that window, before its
//! token is even looked at — so a guess made while blocked reveals nothing
//!
//! Memory is bounded: at most [`MAX_TRACKED_CLIENTS`] addresses are remembered; expired windows
//! are dropped first, then the oldest. IPv6 clients are counted by /64, the block one host
//! usually controls. Behind a reverse proxy every client shares the proxy's address: the limit
//! then applies to all of them together (forwarded-for headers are not trusted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at once (about 50 bytes each).
pub const MAX_TRACKED_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
}

#[derive(Debug)]
pub struct AuthThrottle {
    /// Wrong tokens allowed per window; 0 turns the throttle off.
    limit: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

/// The address a client is counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

impl AuthThrottle {
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        AuthThrottle {
            limit,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `ip` may try again, if it has used up its wrong tokens for this window.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let clients = self.clients.lock().ok()?;
        let f = clients.get(&client_key(ip))?;
        let elapsed = now.saturating_duration_since(f.window_start);
        if f.count < self.limit || elapsed >= self.window {
            return None;
        }
        Some((self.window - elapsed).as_secs().max(1))
    }

    /// Records a wrong token from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        let key = client_key(ip);
        if !clients.contains_key(&key) && clients.len() >= MAX_TRACKED_CLIENTS {
            let window = self.window;
            clients.retain(|_, f| now.saturating_duration_since(f.window_start) < window);
            if clients.len() >= MAX_TRACKED_CLIENTS {
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, f)| f.window_start)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    clients.remove(&oldest);
                }
            }
        }
        let f = clients.entry(key).or_insert(Failures {
            window_start: now,
            count: 0,
        });
        if now.saturating_duration_since(f.window_start) >= self.window {
            *f = Failures {
                window_start: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.blocked(ip, now), None);
            t.failed(ip, now);
        }
        assert_eq!(t.blocked(ip, now), Some(60));
        assert_eq!(t.blocked(ip, now + Duration::from_secs(59)), Some(1));
        assert_eq!(t.blocked(ip, now + Duration::from_secs(60)), None);
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(t.blocked(other, now), None);
        // a new window starts from zero
        t.failed(ip, now + Duration::from_secs(61));
        assert_eq!(t.blocked(ip, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_memory_is_bounded() {
        let t = AuthThrottle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        t.failed("2001:db8::1".parse().expect("ip"), now);
        t.failed("2001:db8::ffff:2".parse().expect("ip"), now);
        assert!(t.blocked("2001:db8::3".parse().expect("ip"), now).is_some());
        assert!(t
            .blocked("2001:db8:0:1::3".parse().expect("ip"), now)
            .is_none());
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(t.tracked(), MAX_TRACKED_CLIENTS);
        assert_eq!(
            AuthThrottle::new(0, Duration::from_secs(1))
                .blocked("192.0.2.1".parse().expect("ip"), now),
            None
        );
    }
}
