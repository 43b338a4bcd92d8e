//! Every number of the configuration within bounds, checked with the rest (so
//! `--check-config` refuses what would misbehave later): durations that could
//! overflow a deadline, sizes that could exhaust memory, counts of zero where
//! nothing would work. The bounds are generous; a value outside one is a typo.

use super::{Config, ConfigError, field};

/// A day: the longest timer a key may set.
const DAY: u64 = 86_400;

/// One key's value and what it may be, inclusive, with the unit said.
struct Bound(&'static str, u64, u64, u64, &'static str);

/// The numeric keys of `c` and their bounds.
fn table(c: &Config) -> Vec<Bound> {
    let t = &c.tcp;
    let h = &c.http;
    let l = &c.limits;
    let n = |v: usize| v as u64;
    vec![
        Bound("max_lifetime", c.max_lifetime, 600, DAY, "seconds"),
        Bound("nonce_lifetime", c.nonce_lifetime, 1, DAY, "seconds"),
        Bound("drain_timeout", c.drain_timeout, 1, DAY, "seconds"),
        Bound(
            "metrics_top_accounts",
            n(c.metrics_top_accounts),
            0,
            100,
            "accounts",
        ),
        Bound(
            "threads",
            n(c.threads),
            0,
            1024,
            "threads (0: one per core)",
        ),
        Bound(
            "ipv6_source_prefix",
            u64::from(c.ipv6_source_prefix),
            32,
            128,
            "bits",
        ),
        Bound(
            "quota.total",
            c.quota.total.map_or(1, n),
            1,
            1_000_000,
            "allocations",
        ),
        Bound(
            "quota.per_user",
            c.quota.per_user.map_or(1, n),
            1,
            1_000_000,
            "allocations",
        ),
        Bound(
            "limits.unauth_burst",
            u64::from(l.unauth_burst),
            1,
            1_000_000,
            "answers",
        ),
        Bound(
            "limits.unauth_per_sec",
            u64::from(l.unauth_per_sec),
            1,
            1_000_000,
            "answers a second",
        ),
        Bound(
            "limits.unauth_total_per_sec",
            u64::from(l.unauth_total_per_sec),
            1,
            10_000_000,
            "answers a second",
        ),
        Bound(
            "limits.unauth_verified_per_sec",
            u64::from(l.unauth_verified_per_sec),
            1,
            10_000_000,
            "answers a second",
        ),
        Bound(
            "tcp.max_connections",
            n(t.max_connections),
            1,
            10_000_000,
            "connections",
        ),
        Bound(
            "tcp.max_per_source",
            n(t.max_per_source),
            1,
            10_000_000,
            "connections",
        ),
        Bound(
            "tcp.handshake_timeout_secs",
            t.handshake_timeout_secs,
            1,
            3600,
            "seconds",
        ),
        Bound(
            "tcp.idle_timeout_secs",
            t.idle_timeout_secs,
            1,
            DAY,
            "seconds",
        ),
        Bound(
            "tcp.tls_threads",
            n(t.tls_threads),
            0,
            256,
            "threads (0: one per core)",
        ),
        Bound(
            "tcp.tls_handshakes_per_sec",
            u64::from(t.tls_handshakes_per_sec),
            1,
            1_000_000,
            "handshakes a second",
        ),
        Bound(
            "tcp.tls_handshake_burst",
            u64::from(t.tls_handshake_burst),
            1,
            10_000_000,
            "handshakes",
        ),
        Bound(
            "http.head_timeout_secs",
            h.head_timeout_secs,
            1,
            DAY,
            "seconds",
        ),
        Bound(
            "http.body_timeout_secs",
            h.body_timeout_secs,
            1,
            DAY,
            "seconds",
        ),
        Bound("http.body_grace_secs", h.body_grace_secs, 0, DAY, "seconds"),
        Bound(
            "http.body_min_rate",
            h.body_min_rate,
            0,
            1 << 40,
            "bytes a second",
        ),
        Bound(
            "http.keepalive_timeout_secs",
            h.keepalive_timeout_secs,
            1,
            DAY,
            "seconds",
        ),
        Bound(
            "http.send_timeout_secs",
            h.send_timeout_secs,
            1,
            DAY,
            "seconds",
        ),
        Bound(
            "http.max_connections",
            n(h.max_connections),
            0,
            10_000_000,
            "connections (0: from the open-file limit)",
        ),
        Bound(
            "http.max_per_source",
            n(h.max_per_source),
            0,
            10_000_000,
            "connections (0: no such limit)",
        ),
        Bound(
            "http.event_loops",
            n(h.event_loops),
            0,
            256,
            "loops (0: one per core)",
        ),
        Bound(
            "http.bridge_keepalive",
            n(h.bridge_keepalive),
            0,
            100_000,
            "connections",
        ),
        Bound(
            "http.bridge_keepalive_secs",
            h.bridge_keepalive_secs,
            0,
            DAY,
            "seconds",
        ),
        Bound(
            "http.memory_budget_mb",
            h.memory_budget_mb,
            0,
            1 << 20,
            "MiB (0: from the memory there is)",
        ),
    ]
}

/// Checks the log level and every number against its bound.
pub(super) fn check(c: &Config) -> Result<(), ConfigError> {
    if !["off", "error", "warn", "info", "debug", "trace"].contains(&c.log_level.as_str()) {
        return Err(field(
            "log_level",
            format!(
                "`{}` is not one of off, error, warn, info, debug, trace",
                c.log_level
            ),
        ));
    }
    for Bound(key, v, lo, hi, unit) in table(c) {
        if v < lo || v > hi {
            return Err(field(key, format!("must be {lo} to {hi} {unit}, not {v}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_that_would_overflow_is_refused_by_name() {
        let mut c = Config::default();
        c.http.bridge_keepalive_secs = u64::MAX;
        let e = check(&c).unwrap_err().to_string();
        assert!(
            e.starts_with("`http.bridge_keepalive_secs`: must be 0 to 86400 seconds"),
            "{e}"
        );
        let mut c = Config::default();
        c.tcp.handshake_timeout_secs = 0;
        assert!(
            check(&c)
                .unwrap_err()
                .to_string()
                .starts_with("`tcp.handshake_timeout_secs`")
        );
        assert!(
            check(&Config::default()).is_ok(),
            "the defaults are within bounds"
        );
    }
}
