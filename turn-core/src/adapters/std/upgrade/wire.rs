//! What goes over the Unix socket between the two processes: the manifest
//! (each descriptor's kind, worker and address, and each worker's state
//! image), the descriptors in batches of `SCM_RIGHTS`, and the new process's
//! answer.
//!
//! First the old process says hello: `CWHI`, version (u16), workers (u16);
//! the new one answers `P` (prepared) or refuses (below). Then, with the
//! workers paused, the manifest. Layout (integers little-endian): a u32
//! length, then the manifest: `CWHO`,
//! version (u16), workers (u16), entries (u32), each a kind (u8), a worker
//! (u16) and either an address (family 4 or 6, its bytes, port u16) or, for a
//! socket of the embedder's, a name (u8 length, bytes); then per worker its
//! image (u32 length, bytes). The descriptors follow in the entries' order,
//! each batch a `sendmsg` of a u32 count with that many descriptors. The new
//! process answers `R` (ready) or `N`, a u16 length and why; the old one
//! answers `R` with `G` (go).

use crate::adapters::std::prelude::*;

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

use super::HandOverError;

/// The hand-over format written now; a new process refuses any other.
pub(crate) const VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"CWHO";
/// Descriptors per `sendmsg` (the kernel takes at most 253).
const BATCH: usize = 200;
/// The largest manifest read (a million allocations' images fit).
const MANIFEST_MAX: usize = 1 << 30;

/// What a handed descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A worker's UDP listener.
    Udp,
    /// A worker's TCP listener.
    Tcp,
    /// A worker's TLS listener.
    Tls,
    /// A relay socket of an allocation on the worker.
    Relay,
    /// A socket of the embedder's, by name.
    Named,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Udp => 0,
            Kind::Tcp => 1,
            Kind::Tls => 2,
            Kind::Relay => 3,
            Kind::Named => 4,
        }
    }

    fn of(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::Udp,
            1 => Kind::Tcp,
            2 => Kind::Tls,
            3 => Kind::Relay,
            4 => Kind::Named,
            _ => return None,
        })
    }
}

/// Where a descriptor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// Its bound address.
    Addr(SocketAddr),
    /// The embedder's name for it.
    Name(String),
}

/// One handed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    pub(crate) worker: u16,
    pub(crate) place: Place,
}

/// Everything but the descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) workers: u16,
    pub(crate) entries: Vec<Entry>,
    pub(crate) images: Vec<Vec<u8>>,
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_le_bytes());
}

impl Manifest {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, HandOverError> {
        let too_many =
            || HandOverError::Protocol("more descriptors or images than the format holds");
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.workers.to_le_bytes());
        let n = u32::try_from(self.entries.len()).map_err(|_| too_many())?;
        out.extend_from_slice(&n.to_le_bytes());
        for e in &self.entries {
            out.push(e.kind.code());
            out.extend_from_slice(&e.worker.to_le_bytes());
            match &e.place {
                Place::Addr(a) => put_addr(&mut out, *a),
                Place::Name(name) => {
                    let len = u8::try_from(name.len()).map_err(|_| too_many())?;
                    out.push(len);
                    out.extend_from_slice(name.as_bytes());
                }
            }
        }
        for image in &self.images {
            let len = u32::try_from(image.len()).map_err(|_| too_many())?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(image);
        }
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Manifest, HandOverError> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(HandOverError::Protocol("not a relay hand-over"));
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(HandOverError::Version(version));
        }
        let workers = r.u16()?;
        if workers == 0 {
            return Err(HandOverError::Protocol("a hand-over of no worker"));
        }
        let n = r.u32()? as usize;
        // Each entry takes at least 5 bytes: a count past the bytes is a lie.
        if n > bytes.len() / 5 {
            return Err(HandOverError::Protocol("more entries than bytes"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = Kind::of(r.u8()?).ok_or(HandOverError::Protocol("an unknown kind"))?;
            let worker = r.u16()?;
            if worker >= workers && kind != Kind::Named {
                return Err(HandOverError::Protocol("a descriptor of no worker"));
            }
            let place = if kind == Kind::Named {
                let len = usize::from(r.u8()?);
                let name = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| HandOverError::Protocol("a name that is not UTF-8"))?;
                Place::Name(name.to_string())
            } else {
                Place::Addr(r.addr()?)
            };
            entries.push(Entry {
                kind,
                worker,
                place,
            });
        }
        let mut images = Vec::new();
        for _ in 0..workers {
            let len = r.u32()? as usize;
            images.push(r.take(len)?.to_vec());
        }
        if r.at != bytes.len() {
            return Err(HandOverError::Protocol("bytes after the last image"));
        }
        Ok(Manifest {
            workers,
            entries,
            images,
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HandOverError> {
        let end = self.at.checked_add(n);
        let got = end.and_then(|end| self.bytes.get(self.at..end));
        let got = got.ok_or(HandOverError::Protocol("the manifest is truncated"))?;
        self.at += n;
        Ok(got)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HandOverError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, HandOverError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, HandOverError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, HandOverError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn addr(&mut self) -> Result<SocketAddr, HandOverError> {
        let ip = match self.u8()? {
            4 => IpAddr::from(self.array::<4>()?),
            6 => IpAddr::from(self.array::<16>()?),
            _ => return Err(HandOverError::Protocol("an address of no family")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
}

fn io(what: &'static str) -> impl FnOnce(io::Error) -> HandOverError {
    move |source| HandOverError::Io { what, source }
}

/// Sends the manifest, then `fds` (one per entry, in order).
pub(crate) fn send(
    to: &UnixStream,
    manifest: &Manifest,
    fds: &[BorrowedFd<'_>],
) -> Result<(), HandOverError> {
    let bytes = manifest.encode()?;
    let len =
        u32::try_from(bytes.len()).map_err(|_| HandOverError::Protocol("a manifest over 4 GiB"))?;
    let mut w = to;
    w.write_all(&len.to_le_bytes())
        .and_then(|()| w.write_all(&bytes))
        .map_err(io("send the manifest"))?;
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
    for batch in fds.chunks(BATCH) {
        let count = (batch.len() as u32).to_le_bytes();
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(batch)) {
            return Err(HandOverError::Protocol("a batch over its control buffer"));
        }
        let sent = sendmsg(
            to,
            &[IoSlice::new(&count)],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| io("send descriptors")(e.into()))?;
        if sent != count.len() {
            // The count's bytes are tiny: a short send means the peer is gone.
            return Err(HandOverError::Protocol("a descriptor batch sent in part"));
        }
    }
    Ok(())
}

/// Receives the manifest and its descriptors.
pub(crate) fn receive(from: &UnixStream) -> Result<(Manifest, Vec<OwnedFd>), HandOverError> {
    let mut r = from;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(io("read the manifest"))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MANIFEST_MAX {
        return Err(HandOverError::Protocol("a manifest over its limit"));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes).map_err(io("read the manifest"))?;
    let manifest = Manifest::decode(&bytes)?;
    let want = manifest.entries.len();
    let mut fds = Vec::with_capacity(want);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
    while fds.len() < want {
        let mut count = [0u8; 4];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            from,
            &mut [IoSliceMut::new(&mut count)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| io("receive descriptors")(e.into()))?;
        if got.bytes == 0 {
            return Err(HandOverError::Protocol(
                "the old process left mid-hand-over",
            ));
        }
        if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(HandOverError::Protocol(
                "descriptors cut short (is the open-file limit too low?)",
            ));
        }
        let mut batch = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = msg {
                batch.extend(received);
            }
        }
        if got.bytes < count.len() {
            r.read_exact(count.get_mut(got.bytes..).unwrap_or_default())
                .map_err(io("receive descriptors"))?;
        }
        if u32::from_le_bytes(count) as usize != batch.len() {
            return Err(HandOverError::Protocol("a batch without its descriptors"));
        }
        fds.extend(batch);
    }
    if fds.len() != want {
        return Err(HandOverError::Protocol("more descriptors than entries"));
    }
    Ok((manifest, fds))
}

const HELLO: [u8; 4] = *b"CWHI";
/// The new process made its workers.
pub(crate) const PREPARED: u8 = b'P';
/// The new process holds the images and sockets and may run.
pub(crate) const READY: u8 = b'R';

/// The old process's hello: how many workers it hands over.
pub(crate) fn hello(to: &UnixStream, workers: u16) -> Result<(), HandOverError> {
    let mut out = HELLO.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&workers.to_le_bytes());
    let mut w = to;
    w.write_all(&out).map_err(io("greet the new process"))
}

/// The new process reads the hello: the workers to make.
pub(crate) fn read_hello(from: &UnixStream) -> Result<u16, HandOverError> {
    let mut r = from;
    let mut b = [0u8; 8];
    r.read_exact(&mut b)
        .map_err(io("read the old process's hello"))?;
    let [m0, m1, m2, m3, v0, v1, w0, w1] = b;
    if [m0, m1, m2, m3] != HELLO {
        return Err(HandOverError::Protocol("not a relay hand-over"));
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != VERSION {
        return Err(HandOverError::Version(version));
    }
    match u16::from_le_bytes([w0, w1]) {
        0 => Err(HandOverError::Protocol("a hand-over of no worker")),
        n => Ok(n),
    }
}

/// The new process says where it is: [`PREPARED`] or [`READY`].
pub(crate) fn answer(to: &UnixStream, tag: u8) -> io::Result<()> {
    let mut w = to;
    w.write_all(&[tag])
}

/// The new process refuses, and says why.
pub(crate) fn refuse(to: &UnixStream, why: &str) -> io::Result<()> {
    let why = why.as_bytes().get(..1024).unwrap_or(why.as_bytes());
    let mut out = vec![b'N'];
    out.extend_from_slice(&(why.len() as u16).to_le_bytes());
    out.extend_from_slice(why);
    let mut w = to;
    w.write_all(&out)
}

/// The old process: what the new one answered (`want`, or a refusal).
pub(crate) fn read_answer(from: &UnixStream, want: u8) -> Result<(), HandOverError> {
    let mut r = from;
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag)
        .map_err(io("read the new process's answer"))?;
    match tag[0] {
        t if t == want => Ok(()),
        b'N' => {
            let mut len = [0u8; 2];
            r.read_exact(&mut len)
                .map_err(io("read the new process's answer"))?;
            let mut why = vec![0u8; usize::from(u16::from_le_bytes(len))];
            r.read_exact(&mut why)
                .map_err(io("read the new process's answer"))?;
            Err(HandOverError::Refused(
                String::from_utf8_lossy(&why).into_owned(),
            ))
        }
        _ => Err(HandOverError::Protocol("an answer out of turn")),
    }
}

/// The old process's last word: the new one may run.
pub(crate) fn go(to: &UnixStream) -> io::Result<()> {
    let mut w = to;
    w.write_all(b"G")
}

/// The new process waits for the go.
pub(crate) fn await_go(from: &UnixStream) -> Result<(), HandOverError> {
    let mut r = from;
    let mut tag = [0u8; 1];
    r.read_exact(&mut tag)
        .map_err(io("wait for the old process's go"))?;
    if tag[0] == b'G' {
        Ok(())
    } else {
        Err(HandOverError::Protocol(
            "the old process said something other than go",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            workers: 2,
            entries: vec![
                Entry {
                    kind: Kind::Udp,
                    worker: 0,
                    place: Place::Addr("127.0.0.1:3478".parse().unwrap()),
                },
                Entry {
                    kind: Kind::Relay,
                    worker: 1,
                    place: Place::Addr("[::1]:50000".parse().unwrap()),
                },
                Entry {
                    kind: Kind::Named,
                    worker: 0,
                    place: Place::Name("admin".into()),
                },
            ],
            images: vec![vec![1, 2, 3], vec![]],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_every_cut_of_it_is_refused() {
        let m = manifest();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = bytes.clone();
        other[4] = 9;
        assert!(matches!(
            Manifest::decode(&other),
            Err(HandOverError::Version(9))
        ));
        let mut longer = bytes;
        longer.push(0);
        assert!(Manifest::decode(&longer).is_err());
    }

    #[test]
    fn descriptors_cross_in_batches_with_their_manifest() {
        let (a, b) = UnixStream::pair().unwrap();
        // More than a batch: 450 sockets, each bound, known by its address.
        let socks: Vec<std::net::UdpSocket> = (0..450)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let m = Manifest {
            workers: 1,
            entries: socks
                .iter()
                .map(|s| Entry {
                    kind: Kind::Relay,
                    worker: 0,
                    place: Place::Addr(s.local_addr().unwrap()),
                })
                .collect(),
            images: vec![vec![7; 10]],
        };
        let fds: Vec<BorrowedFd<'_>> = socks.iter().map(std::os::fd::AsFd::as_fd).collect();
        let sender = std::thread::scope(|s| {
            let t = s.spawn(|| send(&a, &m, &fds));
            let got = receive(&b);
            t.join().unwrap().unwrap();
            got
        });
        let (got, received) = sender.unwrap();
        assert_eq!(got, m);
        for (fd, e) in received.into_iter().zip(&m.entries) {
            let sock = std::net::UdpSocket::from(fd);
            assert_eq!(Place::Addr(sock.local_addr().unwrap()), e.place);
        }
    }

    #[test]
    fn answers_carry_where_the_new_process_is_or_why_not() {
        let (a, b) = UnixStream::pair().unwrap();
        refuse(&a, "configuration refused").unwrap();
        answer(&a, PREPARED).unwrap();
        answer(&a, READY).unwrap();
        answer(&a, READY).unwrap();
        assert!(
            matches!(read_answer(&b, PREPARED), Err(HandOverError::Refused(w)) if w == "configuration refused")
        );
        assert!(read_answer(&b, PREPARED).is_ok());
        assert!(read_answer(&b, READY).is_ok());
        assert!(read_answer(&b, PREPARED).is_err(), "out of turn");
        drop(a);
        assert!(
            read_answer(&b, READY).is_err(),
            "a closed socket is no answer"
        );
    }

    #[test]
    fn a_hello_names_its_version_and_workers() {
        let (a, b) = UnixStream::pair().unwrap();
        hello(&a, 4).unwrap();
        assert_eq!(read_hello(&b).unwrap(), 4);
        let mut w = &a;
        w.write_all(b"CWHI\x09\x00\x01\x00").unwrap();
        assert!(matches!(read_hello(&b), Err(HandOverError::Version(9))));
        w.write_all(b"CWHI\x01\x00\x00\x00").unwrap();
        assert!(read_hello(&b).is_err(), "no worker");
        w.write_all(b"GET / HT").unwrap();
        assert!(matches!(read_hello(&b), Err(HandOverError::Protocol(_))));
    }
}
