//! A child's output (or any stream), kept line by line as it arrives: a test
//! waits for the line it needs (never a fixed sleep), counts lines written since
//! a mark, and prints the tail when it fails, so a CI log alone says why.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines kept; older ones are dropped (marks still count them).
const KEEP: usize = 200_000;

#[derive(Default)]
struct State {
    lines: std::collections::VecDeque<String>,
    /// Lines dropped from the front.
    dropped: usize,
    /// Readers still open.
    open: usize,
}

/// Lines of one or more streams, shared by the reader threads and the test.
#[derive(Clone, Default)]
pub struct Output {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Output {
    /// An empty collection; [`Output::collect`] feeds it.
    pub fn new() -> Output {
        Output::default()
    }

    /// Collects the piped stdout and stderr of `child` (whichever are piped).
    pub fn of(child: &mut Child) -> Output {
        let out = Output::new();
        if let Some(s) = child.stdout.take() {
            out.collect(s);
        }
        if let Some(s) = child.stderr.take() {
            out.collect(s);
        }
        out
    }

    /// Reads `stream` on a thread of its own, line by line, into this collection.
    pub fn collect(&self, stream: impl Read + Send + 'static) {
        self.lock().open += 1;
        let me = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                me.push(line);
            }
            me.lock().open -= 1;
            me.inner.1.notify_all();
        });
    }

    /// Adds a line (what a reader thread does; tests may add notes).
    pub fn push(&self, line: String) {
        let mut s = self.lock();
        s.lines.push_back(line);
        if s.lines.len() > KEEP {
            s.lines.pop_front();
            s.dropped += 1;
        }
        drop(s);
        self.inner.1.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every line kept so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.iter().cloned().collect()
    }

    /// How many lines were written so far: a mark for [`Output::since`].
    pub fn mark(&self) -> usize {
        let s = self.lock();
        s.dropped + s.lines.len()
    }

    /// The lines written after `mark`.
    pub fn since(&self, mark: usize) -> Vec<String> {
        let s = self.lock();
        let skip = mark.saturating_sub(s.dropped);
        s.lines.iter().skip(skip).cloned().collect()
    }

    /// Whether a line kept so far contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lock().lines.iter().any(|l| l.contains(needle))
    }

    /// Whether every stream reached its end (the child closed them, or exited).
    pub fn closed(&self) -> bool {
        self.lock().open == 0
    }

    /// Waits up to `limit` for a line written after `mark` for which `pred`
    /// holds; that line, or `None` when the limit passed or every stream ended
    /// without one.
    pub fn wait_line_since(
        &self,
        mark: usize,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let until = Instant::now() + limit;
        let mut s = self.lock();
        loop {
            let skip = mark.saturating_sub(s.dropped);
            if let Some(l) = s.lines.iter().skip(skip).find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= until || s.open == 0 {
                return None;
            }
            s = self
                .inner
                .1
                .wait_timeout(s, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits up to `limit` for a line (any so far) for which `pred` holds.
    pub fn wait_line(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_since(0, limit, pred)
    }

    /// Waits up to `limit` for a line containing `needle`.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        self.wait_line(limit, |l| l.contains(needle)).is_some()
    }

    /// Waits up to `limit` until every stream ended.
    pub fn wait_closed(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut s = self.lock();
        while s.open > 0 {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            s = self
                .inner
                .1
                .wait_timeout(s, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The last `n` lines, one per line, for a failure message.
    pub fn tail(&self, n: usize) -> String {
        let s = self.lock();
        let skip = s.lines.len().saturating_sub(n);
        let mut text = String::new();
        if skip > 0 || s.dropped > 0 {
            text.push_str(&format!("[... {} earlier lines]\n", skip + s.dropped));
        }
        for l in s.lines.iter().skip(skip) {
            text.push_str(l);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_lines_and_marks_what_came_after() {
        let out = Output::new();
        let (r, mut w) = std::io::pipe().unwrap();
        out.collect(r);
        std::io::Write::write_all(&mut w, b"one\ntwo\n").unwrap();
        assert!(out.wait_for("two", Duration::from_secs(60)));
        let mark = out.mark();
        std::io::Write::write_all(&mut w, b"three\n").unwrap();
        assert_eq!(
            out.wait_line_since(mark, Duration::from_secs(60), |l| l.starts_with('t')),
            Some("three".to_string())
        );
        assert_eq!(out.since(mark), vec!["three".to_string()]);
        drop(w);
        assert!(out.wait_closed(Duration::from_secs(60)));
        assert!(
            !out.wait_for("four", Duration::from_secs(60)),
            "ended: no wait"
        );
        assert!(out.tail(2).ends_with("two\nthree\n"), "{}", out.tail(2));
    }
}
