//! One call: str0m's `Rtc` answering a browser's offer with a single relayed
//! candidate, its packets carried by turn-core's client through the TURN
//! allocation (a permission installed for each peer the first time str0m sends
//! to it, so candidates that arrive late work too). Data-channel messages are
//! echoed; the browser's audio packets counted, and the longest gap between
//! two of them kept.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::servers::Allocation;

/// What a call has seen, for `/status`.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct CallStats {
    /// Our relay candidate.
    pub(crate) relayed: String,
    /// The `turnServers` entry it is on (its index).
    pub(crate) turn_server: Option<usize>,
    /// The browser's address as ICE nominated it (its relay candidate).
    pub(crate) remote: Option<String>,
    /// ICE connected.
    pub(crate) connected: bool,
    /// Data-channel messages echoed.
    pub(crate) echoed: u64,
    /// Audio packets (RTP) received.
    pub(crate) audio_packets: u64,
    /// The longest time between two audio packets, in milliseconds (what a
    /// listener would hear as a drop-out).
    pub(crate) audio_gap_ms: u64,
    /// Why the call ended, once it has.
    pub(crate) ended: Option<String>,
}

/// Accepts `offer` on a relayed candidate of `alloc`; the call then runs on a
/// thread of its own, updating `stats`.
pub(crate) fn answer(
    offer: &str,
    alloc: Allocation,
    stats: Arc<Mutex<CallStats>>,
) -> Result<String, String> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("offer: {e}"))?;
    let mut rtc = Rtc::new(Instant::now());
    let local = alloc
        .turn
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let candidate = Candidate::relayed(alloc.relayed, local, "udp")
        .map_err(|e| format!("relay candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    let answer: SdpAnswer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("accept offer: {e}"))?;
    {
        let mut s = lock(&stats);
        s.relayed = alloc.relayed.to_string();
        s.turn_server = Some(alloc.server);
    }
    std::thread::spawn(move || {
        let mut alloc = alloc;
        let why = run(rtc, &mut alloc, &stats);
        // The allocation goes with the call (a server draining waits for it).
        let released = match alloc.turn.deallocate(Duration::from_secs(5)) {
            Ok(()) => "allocation released".to_string(),
            Err(e) => format!("allocation not released: {e}"),
        };
        log::info!("call ended: {why}; {released}");
        lock(&stats).ended = Some(format!("{why}; {released}"));
    });
    Ok(answer.to_sdp_string())
}

fn lock(s: &Arc<Mutex<CallStats>>) -> std::sync::MutexGuard<'_, CallStats> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drives the call until the browser hangs up (closes the data channel), ICE
/// disconnects or the allocation fails.
fn run(mut rtc: Rtc, alloc: &mut Allocation, stats: &Arc<Mutex<CallStats>>) -> String {
    let mut permitted: HashSet<IpAddr> = HashSet::new();
    let mut buf = vec![0u8; 2048];
    let mut last_audio: Option<Instant> = None;
    loop {
        let timeout = match rtc.poll_output() {
            Err(e) => return format!("str0m: {e}"),
            Ok(Output::Timeout(t)) => t,
            Ok(Output::Transmit(t)) => {
                if t.source != alloc.relayed {
                    continue;
                }
                let peer = t.destination;
                if permitted.insert(peer.ip())
                    && let Err(e) = alloc
                        .turn
                        .create_permission(peer.ip(), Duration::from_secs(3))
                {
                    log::warn!("permission for {peer}: {e}");
                    permitted.remove(&peer.ip());
                    continue;
                }
                if let Err(e) = alloc.turn.send_to(peer, &t.contents) {
                    return format!("send through the relay: {e}");
                }
                continue;
            }
            Ok(Output::Event(e)) => {
                match e {
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return "ICE disconnected".into();
                    }
                    Event::ChannelClose(_) => return "the browser hung up".into(),
                    Event::Connected => lock(stats).connected = true,
                    Event::ChannelData(d) => {
                        if let Some(mut ch) = rtc.channel(d.id)
                            && ch.write(d.binary, &d.data).is_ok()
                        {
                            lock(stats).echoed += 1;
                        }
                    }
                    Event::MediaData(_) => {
                        let now = Instant::now();
                        let mut s = lock(stats);
                        s.audio_packets += 1;
                        if let Some(last) = last_audio.replace(now) {
                            let gap = u64::try_from((now - last).as_millis()).unwrap_or(u64::MAX);
                            s.audio_gap_ms = s.audio_gap_ms.max(gap);
                        }
                    }
                    _ => {}
                }
                continue;
            }
        };
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        let input = match alloc.turn.recv_from(&mut buf, wait) {
            Ok(Some((n, source))) => {
                lock(stats).remote.get_or_insert_with(|| source.to_string());
                match buf.get(..n).unwrap_or_default().try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: alloc.relayed,
                            contents,
                        },
                    ),
                    Err(_) => continue,
                }
            }
            Ok(None) => Input::Timeout(Instant::now()),
            Err(e) => return format!("relay: {e}"),
        };
        if let Err(e) = rtc.handle_input(input) {
            return format!("str0m: {e}");
        }
    }
}
