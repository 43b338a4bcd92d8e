//! The web proxy's decisions (HTTP/1.1 request head, WebSocket upgrade, allow-list
//! rules, port 443 demultiplexing, redirects), sans-IO, `no_std`, heap-free.
#![no_std]
#![forbid(unsafe_code)]
