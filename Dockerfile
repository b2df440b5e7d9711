# syntax=docker/dockerfile:1
#
# mseway gateway images (docs/DEPLOY.md). Two targets:
#
#   docker build --target static  -t mseway:static .   # CGO_ENABLED=0: no capture encoders
#   docker build --target capture -t mseway:capture .  # cgo: openh264 + Opus (+ TAGS)
#   docker build --target capture --build-arg TAGS="x264 vpx screen" -t mseway:capture-full .
#
# `docker build .` without --target builds the last stage, capture. Both run
# as an unprivileged user (uid 10001), expose 8080/tcp (HTTP, WHIP,
# WebSockets) and 8189/udp (all ICE media), and start with the config
# embedded in the binary (`gateway -print-config` shows it); mount your own
# and pass `-config /etc/mseway/gateway.yaml`. /data (owned by the user) is
# for state: the embedded NATS server's store_dir (/data/nats), certificates,
# recordings (the working directory: record.path is relative to it).
#
# The build stamps the VCS revision into the binary (`gateway -version`)
# when the context holds the .git directory; keep it out of .dockerignore.

ARG GO_VERSION=1.26

# ---- sources and modules, shared by both builds
FROM golang:${GO_VERSION}-bookworm AS source
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .

# ---- the static binary: pure Go, no capture encoders (local sources skipped)
FROM source AS build-static
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags="-s -w" -o /out/gateway ./cmd/gateway \
    && /out/gateway -version \
    && mkdir -p /out/data/nats

# ---- the cgo binary with the capture encoders (README, "Builds"): openh264
# and Opus are compiled from the module's sources by the image's C compiler;
# TAGS adds x264 (libx264-dev), vpx (libvpx-dev), screen (libx11-dev, libxext-dev).
FROM source AS build-capture
ARG TAGS=""
RUN set -eux; pkgs=""; \
    case " $TAGS " in *" x264 "*) pkgs="$pkgs libx264-dev";; esac; \
    case " $TAGS " in *" vpx "*) pkgs="$pkgs libvpx-dev";; esac; \
    case " $TAGS " in *" screen "*) pkgs="$pkgs libx11-dev libxext-dev";; esac; \
    if [ -n "$pkgs" ]; then \
        apt-get update; apt-get install -y --no-install-recommends pkg-config $pkgs; rm -rf /var/lib/apt/lists/*; \
    fi
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=auto -tags "$TAGS" -o /out/gateway ./cmd/gateway \
    && /out/gateway -version \
    && mkdir -p /out/data/nats

# ---- static image: no shell, no libc; CA certificates for JWKS, hooks, webhooks, ACME
FROM gcr.io/distroless/static-debian12 AS static
COPY --from=build-static /out/gateway /usr/local/bin/gateway
COPY --from=build-static --chown=10001:10001 /out/data /data
# Relative paths of the config (record.path: recordings/...) land in the volume.
WORKDIR /data
USER 10001:10001
EXPOSE 8080/tcp 8189/udp
ENTRYPOINT ["/usr/local/bin/gateway"]

# ---- capture image: glibc and the shared libraries the tags link; ALSA for
# the microphone driver (miniaudio loads it at run time)
FROM debian:bookworm-slim AS capture
ARG TAGS=""
RUN set -eux; pkgs="ca-certificates libasound2"; \
    case " $TAGS " in *" x264 "*) pkgs="$pkgs libx264-164";; esac; \
    case " $TAGS " in *" vpx "*) pkgs="$pkgs libvpx7";; esac; \
    case " $TAGS " in *" screen "*) pkgs="$pkgs libx11-6 libxext6";; esac; \
    apt-get update; apt-get install -y --no-install-recommends $pkgs; rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 mseway; \
    useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin mseway
COPY --from=build-capture /out/gateway /usr/local/bin/gateway
COPY --from=build-capture --chown=10001:10001 /out/data /data
WORKDIR /data
# Cameras: run with --device /dev/video0 --group-add video.
USER 10001:10001
EXPOSE 8080/tcp 8189/udp
ENTRYPOINT ["/usr/local/bin/gateway"]
