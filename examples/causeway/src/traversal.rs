//! The edge's side of the traversal in `causeway serve`: the one pool of
//! connectors' connections (it outlives reloads, as join URLs served by
//! connectors keep their connections), the traversal port, and what `/metrics`
//! says of each join URL and connector.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use proxy_core::runtime::traversal::{TraversalListener, TunnelPool};

use crate::config::TraversalPlan;

/// The process's pool.
pub(crate) fn pool() -> Arc<TunnelPool> {
    static POOL: OnceLock<Arc<TunnelPool>> = OnceLock::new();
    POOL.get_or_init(Arc::default).clone()
}

/// Binds and serves the traversal port.
pub(crate) fn start(plan: &TraversalPlan) -> Result<TraversalListener, String> {
    let listener = TcpListener::bind(plan.listen).map_err(|e| {
        format!(
            "cannot listen on traversal {}: {e} (`traversal.listen`)",
            plan.listen
        )
    })?;
    TraversalListener::start(
        listener,
        &plan.cert,
        &plan.key,
        plan.connectors.clone(),
        pool(),
    )
    .map_err(|e| format!("the traversal port's TLS: {e}"))
}

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text for each join URL and connector seen.
pub(crate) fn metrics_text() -> String {
    let status = pool().status();
    if status.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "# HELP causeway_traversal_ready Connections a connector holds ready at this edge, per join URL.\n\
         # TYPE causeway_traversal_ready gauge\n",
    );
    for s in &status {
        let _ = writeln!(
            out,
            "causeway_traversal_ready{{join=\"{}\",connector=\"{}\"}} {}",
            label(&s.host),
            label(&s.connector),
            s.idle
        );
    }
    out.push_str(
        "# HELP causeway_traversal_used_total Connector connections handed to browsers.\n\
         # TYPE causeway_traversal_used_total counter\n",
    );
    for s in &status {
        let _ = writeln!(
            out,
            "causeway_traversal_used_total{{join=\"{}\",connector=\"{}\"}} {}",
            label(&s.host),
            label(&s.connector),
            s.used
        );
    }
    out.push_str(
        "# HELP causeway_traversal_bytes_total Bytes through connector connections, toward the web bridge (to_bridge) and back.\n\
         # TYPE causeway_traversal_bytes_total counter\n",
    );
    for s in &status {
        for (direction, n) in [
            ("to_bridge", s.bytes_to_bridge),
            ("from_bridge", s.bytes_from_bridge),
        ] {
            let _ = writeln!(
                out,
                "causeway_traversal_bytes_total{{join=\"{}\",connector=\"{}\",direction=\"{direction}\"}} {n}",
                label(&s.host),
                label(&s.connector),
            );
        }
    }
    out
}
