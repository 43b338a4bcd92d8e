//! What `/status` lists when a relay holds thousands of allocations: a page of
//! them (the heaviest by traffic first, `?limit=&offset=`, `?user=` to follow
//! one account) and bounded summaries per user, per client address (an office
//! behind one NAT) and per peer (a meeting's call bridge), computed here over
//! every allocation so that neither the document nor the usage page grows
//! with the relay.

use std::collections::HashMap;

use serde::Serialize;
use turn_core::adapters::std::AllocationStats;

/// Allocations listed when the query names no `limit`: a page a browser renders
/// every two seconds without effort.
pub(crate) const DEFAULT_LIMIT: usize = 1000;

/// The most a `limit` may ask for.
pub(crate) const MAX_LIMIT: usize = 100_000;

/// Entries kept per summary (the heaviest by allocations).
pub(crate) const GROUPS_MAX: usize = 100;

/// Which allocations a `/status` request lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// At most this many.
    pub(crate) limit: usize,
    /// After skipping this many (in the listing's order).
    pub(crate) offset: usize,
    /// Only this user's (for a time-limited credential, the whole `expiry:user`).
    pub(crate) user: Option<String>,
}

impl Default for Listing {
    fn default() -> Self {
        Listing {
            limit: DEFAULT_LIMIT,
            offset: 0,
            user: None,
        }
    }
}

impl Listing {
    /// Reads `limit`, `offset` and `user` from a query string (percent-decoded);
    /// refuses other keys and numbers that are not, naming them.
    pub(crate) fn parse(query: &str) -> Result<Listing, String> {
        let mut l = Listing::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| format!("`{k}` is not a number"))
            };
            match k.as_ref() {
                "limit" => l.limit = number()?.min(MAX_LIMIT),
                "offset" => l.offset = number()?,
                "user" => l.user = Some(v.into_owned()),
                _ => return Err("the query takes limit, offset and user".into()),
            }
        }
        Ok(l)
    }

    /// The allocations it selects, heaviest first (bytes both ways; then by
    /// worker and client, so equal ones keep their order between requests),
    /// and how many matched before the page was cut.
    pub(crate) fn select<'a>(
        &self,
        all: &'a [AllocationStats],
    ) -> (Vec<&'a AllocationStats>, usize) {
        let mut chosen: Vec<&AllocationStats> = all
            .iter()
            .filter(|a| self.user.as_deref().is_none_or(|u| a.username == u))
            .collect();
        let matching = chosen.len();
        let weight = |a: &AllocationStats| a.traffic.to_peer_bytes + a.traffic.from_peer_bytes;
        chosen.sort_by(|a, b| {
            weight(b)
                .cmp(&weight(a))
                .then(a.worker.cmp(&b.worker))
                .then(a.tuple.client.cmp(&b.tuple.client))
        });
        let page = chosen
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        (page, matching)
    }
}

/// One entry of a summary.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Group {
    /// The user, client IP or peer.
    pub(crate) name: String,
    /// Allocations in it.
    pub(crate) allocations: usize,
    /// Bytes its allocations sent to peers.
    pub(crate) to_peer_bytes: u64,
    /// Bytes they received from peers.
    pub(crate) from_peer_bytes: u64,
}

/// A bounded summary: the heaviest entries and how many there are in all.
#[derive(Debug, Serialize)]
pub(crate) struct Groups {
    /// Distinct entries (users, client IPs, peers).
    pub(crate) count: usize,
    /// The [`GROUPS_MAX`] with the most allocations.
    pub(crate) top: Vec<Group>,
}

/// The summaries the usage page shows.
#[derive(Debug, Serialize)]
pub(crate) struct Summaries {
    /// Per user.
    pub(crate) user: Groups,
    /// Per client IP address (many browsers behind one NAT share one).
    pub(crate) client: Groups,
    /// Per peer (an allocation counts once for each of its first peers).
    pub(crate) peer: Groups,
}

impl Summaries {
    /// Over every allocation.
    pub(crate) fn of(all: &[AllocationStats]) -> Summaries {
        Summaries {
            user: groups(all, |a| vec![a.username.to_string()]),
            client: groups(all, |a| vec![a.tuple.client.ip().to_string()]),
            peer: groups(all, |a| {
                a.peers
                    .iter()
                    .map(|p| match p.port() {
                        0 => p.ip().to_string(),
                        _ => p.to_string(),
                    })
                    .collect()
            }),
        }
    }
}

fn groups(all: &[AllocationStats], keys: impl Fn(&AllocationStats) -> Vec<String>) -> Groups {
    let mut by: HashMap<String, Group> = HashMap::new();
    for a in all {
        for k in keys(a) {
            let g = by.entry(k).or_insert_with_key(|k| Group {
                name: k.clone(),
                allocations: 0,
                to_peer_bytes: 0,
                from_peer_bytes: 0,
            });
            g.allocations += 1;
            g.to_peer_bytes += a.traffic.to_peer_bytes;
            g.from_peer_bytes += a.traffic.from_peer_bytes;
        }
    }
    let count = by.len();
    let mut top: Vec<Group> = by.into_values().collect();
    top.sort_by(|a, b| {
        b.allocations
            .cmp(&a.allocations)
            .then(b.to_peer_bytes.cmp(&a.to_peer_bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    top.truncate(GROUPS_MAX);
    Groups { count, top }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(user: &str, client: &str, bytes: u64) -> AllocationStats {
        let mut a = AllocationStats {
            worker: 0,
            username: user.try_into().unwrap(),
            tuple: turn_core::FiveTuple {
                client: client.parse().unwrap(),
                server: "192.0.2.100:3478".parse().unwrap(),
                transport: turn_core::Transport::Udp,
                socket: 0,
            },
            relayed: Default::default(),
            relayed_local: Default::default(),
            peers: Default::default(),
            peer_count: 0,
            expires_in: std::time::Duration::from_secs(600),
            permissions: 0,
            channels: 0,
            traffic: Default::default(),
        };
        a.traffic.to_peer_bytes = bytes;
        a
    }

    #[test]
    fn the_query_is_read_and_refused_by_name() {
        assert_eq!(Listing::parse("").unwrap(), Listing::default());
        let l = Listing::parse("limit=5&offset=10&user=1700000000%3Aalice").unwrap();
        assert_eq!(
            l,
            Listing {
                limit: 5,
                offset: 10,
                user: Some("1700000000:alice".into())
            }
        );
        assert_eq!(Listing::parse("limit=99999999").unwrap().limit, MAX_LIMIT);
        assert!(Listing::parse("limit=x").unwrap_err().contains("`limit`"));
        assert!(Listing::parse("sort=name").is_err());
    }

    #[test]
    fn a_page_holds_the_heaviest_first_and_counts_what_matched() {
        let all: Vec<_> = (0..10u64)
            .map(|i| {
                let user = if i % 2 == 0 { "even" } else { "odd" };
                allocation(user, &format!("192.0.2.{i}:5000"), i * 100)
            })
            .collect();
        let l = Listing {
            limit: 3,
            offset: 1,
            user: None,
        };
        let (page, matching) = l.select(&all);
        assert_eq!(matching, 10);
        let bytes: Vec<u64> = page.iter().map(|a| a.traffic.to_peer_bytes).collect();
        assert_eq!(bytes, [800, 700, 600]);
        let l = Listing {
            user: Some("odd".into()),
            ..Listing::default()
        };
        let (page, matching) = l.select(&all);
        assert_eq!((page.len(), matching), (5, 5));
        assert!(page.iter().all(|a| a.username == "odd"));
    }

    #[test]
    fn summaries_are_bounded_and_count_every_entry() {
        // An office NAT: 300 browsers on one address, and 250 users alone.
        let mut all: Vec<_> = (0..300)
            .map(|i| allocation("meeting", &format!("198.51.100.7:{}", 1000 + i), 10))
            .collect();
        all.extend(
            (0..250)
                .map(|i| allocation(&format!("u{i}"), &format!("203.0.113.{}:4000", i % 200), 1)),
        );
        let s = Summaries::of(&all);
        assert_eq!(s.user.count, 251);
        assert_eq!(s.user.top.len(), GROUPS_MAX);
        assert_eq!(s.user.top[0].name, "meeting");
        assert_eq!(s.user.top[0].allocations, 300);
        assert_eq!(s.user.top[0].to_peer_bytes, 3000);
        assert_eq!(s.client.count, 201);
        assert_eq!(s.client.top[0].name, "198.51.100.7");
        assert_eq!(s.peer.count, 0);
    }
}
