# syntax=docker/dockerfile:1
# The images of every service, for people with Docker or Podman: one build stage compiles the four
# binaries, one small stage per service (the --target) takes its own. Without an engine, the same
# filesystem, user and labels come from: cd tools && go run ./cmd/images build   (docs/deploy.md#images)
#
# Build from the repository root (the services need their sibling modules), one target per image:
#   docker build --target zonelabeler --build-arg VERSION=v0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/zonetoll/zonelabeler:v0.1.0 .
# The build stage is shared: building the four targets one after another compiles once.
ARG SERVICES="zonelabeler flowagent flowserver costcalc"

FROM golang:1.26 AS build
ARG SERVICES
ARG VERSION=dev
ARG REVISION=unknown
ARG TARGETARCH
WORKDIR /src
# Each module builds alone through its replace directives, so no go.work (which lists every module).
ENV GOWORK=off CGO_ENABLED=0
# Module files first: dependencies are downloaded once and cached apart from the sources.
COPY shared/go.mod shared/go.sum shared/
COPY testkit/go.mod testkit/go.sum testkit/
COPY bpf/go.mod bpf/go.sum bpf/
COPY services/zonelabeler/go.mod services/zonelabeler/go.sum services/zonelabeler/
COPY services/flowagent/go.mod services/flowagent/go.sum services/flowagent/
COPY services/flowserver/go.mod services/flowserver/go.sum services/flowserver/
COPY services/costcalc/go.mod services/costcalc/go.sum services/costcalc/
RUN for s in $SERVICES; do (cd services/$s && go mod download) || exit 1; done
COPY shared/ shared/
COPY bpf/ bpf/
COPY services/ services/
# The flags of `make build`.
RUN for s in $SERVICES; do (cd services/$s && GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/zonetoll/zonetoll/shared/buildinfo.Version=${VERSION} -X github.com/zonetoll/zonetoll/shared/buildinfo.Revision=${REVISION}" \
      -o /out/usr/local/bin/$s ./cmd/$s) || exit 1; done
RUN mkdir -p /out/etc \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group

# What every image has: the users, the port and the version labels. Each target sets its ENTRYPOINT
# and then CMD again, because a new ENTRYPOINT clears the CMD a stage inherits.
FROM scratch AS base
ARG VERSION=dev
ARG REVISION=unknown
COPY --from=build /out/etc/ /etc/
EXPOSE 8080
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/zonetoll/zonetoll"

# The services that run as nonroot; the agent needs root (below).
FROM base AS nonroot
USER 65532:65532

FROM nonroot AS zonelabeler
COPY --from=build /out/usr/local/bin/zonelabeler /usr/local/bin/zonelabeler
ENTRYPOINT ["/usr/local/bin/zonelabeler"]
CMD ["run"]
LABEL org.opencontainers.image.title="zonelabeler"

FROM nonroot AS flowserver
COPY --from=build /out/usr/local/bin/flowserver /usr/local/bin/flowserver
ENTRYPOINT ["/usr/local/bin/flowserver"]
CMD ["run"]
LABEL org.opencontainers.image.title="flowserver"

# Root, with every capability but BPF, NET_ADMIN and PERFMON dropped by the DaemonSet (docs/deploy.md).
FROM base AS flowagent
COPY --from=build /out/usr/local/bin/flowagent /usr/local/bin/flowagent
USER 0:0
ENTRYPOINT ["/usr/local/bin/flowagent"]
CMD ["run"]
LABEL org.opencontainers.image.title="flowagent"

FROM nonroot AS costcalc
COPY --from=build /out/usr/local/bin/costcalc /usr/local/bin/costcalc
ENTRYPOINT ["/usr/local/bin/costcalc"]
CMD ["run"]
LABEL org.opencontainers.image.title="costcalc"
