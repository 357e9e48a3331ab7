# weir container image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t weir:dev .
#   docker run --rm -p 8080:8080 weir:dev
#
# Kubernetes: see deploy/kubernetes.yaml.

# ---- build ------------------------------------------------------------------------------------------
# Pinned to the Go release go.mod names; GOTOOLCHAIN=local makes a go.mod bump fail the build here
# instead of silently downloading another toolchain.
# BUILDPLATFORM/TARGETOS/TARGETARCH (set by BuildKit) cross-compile for `docker buildx --platform`;
# without BuildKit they are empty and the build targets the host.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=local
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when go.mod or go.sum change, not on
# every source edit.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# CGO_ENABLED=0: a static binary, so the runtime image needs no libc.
# -trimpath: no build paths in the binary (reproducible). -s -w: no symbol table or DWARF (smaller).
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/weir ./cmd/weir

# ---- runtime ----------------------------------------------------------------------------------------
# distroless/static: CA certificates, tzdata and /etc/passwd, no shell or package manager. The tag is
# pinned to Debian 12; pin it by digest too (static-debian12:nonroot@sha256:…) for reproducible builds.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/weir /usr/local/bin/weir
# A default config so the image starts on its own: the repo's demo config, whose upstreams are on
# 127.0.0.1 and whose admin listener is loopback-only. Deployments mount their own config over
# /etc/weir (a ConfigMap as a directory; see deploy/kubernetes.yaml).
COPY config.yaml /etc/weir/config.yaml

# The "nonroot" user of distroless (65532), given numerically: with a user name, Kubernetes'
# runAsNonRoot cannot verify the user and refuses to start the container.
USER 65532:65532

# 8080: server.listen (public). 8443: server.tls.listen's default, when the config has server.tls
# (mount the certificates as a directory too, so renewals are seen). 9901: admin.listen (health,
# readiness, metrics, pprof, reload).
EXPOSE 8080 8443 9901

# No Docker HEALTHCHECK: distroless has no shell or curl to run one, and weir has no self-check command.
# Use the orchestrator's HTTP probes on the admin listener instead: GET /healthz (liveness) and
# GET /readyz (readiness; 503 while shutting down). For that, admin.listen must bind beyond loopback
# inside the container, e.g. "0.0.0.0:9901". The admin endpoints have no authentication (/reload,
# /config, /debug/pprof): expose 9901 on the pod network only, never publish it or put it behind a
# Service or Ingress that clients reach.
HEALTHCHECK NONE

ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["-config", "/etc/weir/config.yaml"]
