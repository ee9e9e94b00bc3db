# syntax=docker/dockerfile:1
# Build: docker build -t sqlcache .
# Run:   docker run -p 6033:6033 -v $PWD/proxy.toml:/etc/sqlcache/proxy.toml:ro sqlcache
# The config is read from /etc/sqlcache/proxy.toml (SQLCACHE_CONFIG); set
# [proxy] listen = "0.0.0.0:6033" in it so clients outside the container
# can connect.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    libssl-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY proxy.toml ./
RUN cargo build --release --locked --bin sqlcache

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin sqlcache
COPY --from=build /src/target/release/sqlcache /usr/local/bin/sqlcache
COPY proxy.toml /etc/sqlcache/proxy.toml
ENV SQLCACHE_CONFIG=/etc/sqlcache/proxy.toml
USER sqlcache
EXPOSE 6033
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sqlcache"]
