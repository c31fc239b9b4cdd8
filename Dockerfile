# Jibber: one image for every node. Build: docker build -t jibber .
# Stage 1 compiles the release binary; stage 2 is a small Debian with the binary, a non-root user
# and a health check. docs/operations.md explains how to run it (deploy/compose.yaml: two nodes,
# PostgreSQL, Redis and a proxy with sticky sessions).

FROM rust:1.95-bookworm AS build
# The web client is built by npm while cargo compiles crates/jibber-web: Node 20 from the official
# image (in /usr/local); JIBBER_WEB_REQUIRED=1 fails the build rather than embed a placeholder.
COPY --from=node:20-bookworm /usr/local/bin/node /usr/local/bin/node
COPY --from=node:20-bookworm /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ENV JIBBER_WEB_REQUIRED=1
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p jibber-cli \
 && install -D -m 0755 target/release/jibber /out/jibber

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 jibber \
 && useradd --system --uid 10001 --gid jibber --home-dir /var/lib/jibber --create-home jibber
COPY --from=build /out/jibber /usr/local/bin/jibber
USER jibber
WORKDIR /var/lib/jibber
ENV JIBBER_HOST=0.0.0.0 \
    JIBBER_PORT=8080 \
    JIBBER_DATA_DIR=/var/lib/jibber \
    JIBBER_LOG_FORMAT=json
VOLUME ["/var/lib/jibber"]
EXPOSE 8080
# /health answers 200 while the database answers (also when Redis is down: status "degraded").
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/api/v1/health >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["jibber"]
CMD ["serve"]
