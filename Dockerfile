# syntax=docker/dockerfile:1
#
# chatgate: one binary (cmd/chatgate). Build and run a single node:
#   docker build -t chatgate .
#   docker run --rm -p 8080:8080 -v chatgate-data:/var/lib/chatgate chatgate
# compose.yaml runs three of them as a cluster (Consul, NATS, PostgreSQL).
# Configuration is by CHATGATE_* environment variables (one per flag).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so editing the source does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Pure Go (no cgo): a static binary that runs on any base image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/chatgate ./cmd/chatgate

FROM debian:bookworm-slim
# curl for the health checks (compose calls /readyz); ca-certificates for an
# https push webhook.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chatgate \
 && useradd --system --uid 10001 --gid chatgate --home-dir /var/lib/chatgate --no-create-home chatgate \
 && install -d -o chatgate -g chatgate -m 0750 /var/lib/chatgate
COPY --from=build /out/chatgate /usr/local/bin/chatgate
USER chatgate:chatgate
WORKDIR /var/lib/chatgate
# The embedded single node's data directory (unused with CHATGATE_STORE=postgres://…).
ENV CHATGATE_ADDR=:8080 \
    CHATGATE_DATA=/var/lib/chatgate
EXPOSE 8080
# Liveness only; compose checks readiness (/readyz) itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1
# chatgate stops gracefully on SIGTERM (docker stop); give it more than its
# -shutdown-timeout (15 s) with `docker stop -t 20` / compose stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chatgate"]
