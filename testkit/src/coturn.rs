//! coturn's `turnserver` (Debian's `coturn` package) for end-to-end tests:
//! started on loopback (in a network namespace if asked), its log kept, and
//! waited for on every port the test will use before the test goes on.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::output::Output;
use crate::tools::coturn_tool;
use crate::wait;

/// What a test will use of a coturn, and so waits for.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// STUN over UDP on this address.
    Udp(SocketAddr),
    /// STUN over TCP on this address.
    Tcp(SocketAddr),
    /// A TLS (or any TCP) listener on this address.
    Tls(SocketAddr),
}

/// A running `turnserver`, killed when dropped.
pub struct Coturn {
    child: Child,
    /// Its log (coturn writes it to stdout here).
    pub output: Output,
    /// Its database and pid file: its own, so coturns started side by side do
    /// not wait on each other's lock of the default SQLite database.
    _dir: crate::bridge::TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coturn {
    /// Starts `turnserver` with `args` (inside `netns` if given; its log goes to
    /// [`Coturn::output`]) and returns once every address of `ready` answers.
    pub fn start(netns: Option<&str>, args: &[&str], ready: &[Ready]) -> Coturn {
        let tool = coturn_tool("turnserver");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &tool]);
                c
            }
            None => Command::new(&tool),
        };
        let dir = crate::bridge::TempDir::new("coturn");
        let db = dir.path().join("turndb");
        let pid = dir.path().join("turnserver.pid");
        cmd.args(args)
            .args(["--log-file", "stdout", "--simple-log"])
            .arg("--db")
            .arg(&db)
            .arg("--pidfile")
            .arg(&pid);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start turnserver");
        let output = Output::of(&mut child);
        let mut coturn = Coturn {
            child,
            output,
            _dir: dir,
        };
        for r in ready {
            let result = match netns {
                None => wait::poll(wait::PATIENCE, || coturn.probe(*r)),
                Some(ns) => wait::poll(wait::PATIENCE, || coturn.listening_in(ns, *r)),
            };
            if let Err(e) = result {
                panic!("turnserver: {r:?} never answered: {e}\n{}", coturn.tail());
            }
        }
        coturn
    }

    /// Fails at once if the server exited, so a bad flag is named, not waited on.
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => panic!("turnserver exited: {status}\n{}", self.tail()),
            _ => Ok(()),
        }
    }

    fn probe(&mut self, r: Ready) -> Result<(), String> {
        self.alive()?;
        let short = Duration::from_secs(1);
        match r {
            Ready::Udp(a) => wait::try_stun_udp(a, short),
            Ready::Tcp(a) => wait::try_stun_tcp(a, short),
            Ready::Tls(a) => wait::try_tcp(a, short),
        }
    }

    /// Inside a namespace: a UDP Binding is answered (coturn's own
    /// `turnutils_stunclient`, run in the namespace: a bound socket is not
    /// enough, coturn may take seconds more to read it); a TCP port listening
    /// is (the kernel takes the connection and queues what arrives).
    fn listening_in(&mut self, ns: &str, r: Ready) -> Result<(), String> {
        self.alive()?;
        if let Ready::Udp(a) = r {
            let client = coturn_tool("turnutils_stunclient");
            let answered = Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "2", &client, "-p"])
                .arg(a.port().to_string())
                .arg(a.ip().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            return if answered {
                Ok(())
            } else {
                Err(format!("no STUN answer on UDP {a} in {ns} yet"))
            };
        }
        let (flags, addr) = match r {
            Ready::Udp(a) | Ready::Tcp(a) | Ready::Tls(a) => ("-Hltn", a),
        };
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", flags])
            .arg(format!("sport = :{}", addr.port()))
            .output()
            .map_err(|e| e.to_string())?;
        if out.stdout.is_empty() {
            Err(format!("{r:?}: not listening yet in {ns}"))
        } else {
            Ok(())
        }
    }

    /// The end of its log, for a failure message.
    pub fn tail(&self) -> String {
        format!("--- turnserver log ---\n{}", self.output.tail(60))
    }
}
