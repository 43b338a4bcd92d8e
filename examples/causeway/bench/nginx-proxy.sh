# Sourced by the web proxy benchmarks: nginx configured as the same TLS reverse
# proxy causeway is (HTTPS and WSS to the stand-in web bridge, upstream TLS
# verified against the test CA, keep-alive to the bridge, tunnels idle 600 s).
#
# nginx_proxy_conf DIR PORT BRIDGE_PORT CONNECTIONS ERROR_LOG
#   writes DIR/nginx.conf: 2 workers listening on 127.0.0.1:PORT, the certificate
#   and CA in DIR (front.pem, front.key, ca.pem), CONNECTIONS per worker (and as
#   many open files).
nginx_proxy_conf() {
  local dir=$1 port=$2 bport=$3 conns=$4 errlog=$5
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
worker_rlimit_nofile $conns;
pid $dir/nginx.pid;
error_log $errlog warn;
events { worker_connections $conns; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream bridge { server localhost:$bport; keepalive 64; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:$port ssl;
    server_name join.example.test;
    ssl_certificate $dir/front.pem;
    ssl_certificate_key $dir/front.key;
    location / {
      proxy_pass https://bridge;
      proxy_http_version 1.1;
      proxy_ssl_trusted_certificate $dir/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
      proxy_set_header Host \$host;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_read_timeout 600s;
    }
  }
}
NGINX
}
