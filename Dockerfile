# Images of the pipeline's binaries (agent, collector, query, the Ballista scheduler and executor,
# traffic) for docker-compose.yml.
# Build stage: the workspace in release; librdkafka is built from source by rdkafka-sys.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p agent -p collector -p query -p cluster -p stack

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl openssl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/imds --create-home imds \
    && mkdir -p /data/warm && chown imds /data/warm
COPY --from=build /src/target/release/agent /src/target/release/collector \
    /src/target/release/query /src/target/release/query-scheduler \
    /src/target/release/query-executor /src/target/release/traffic /usr/local/bin/
COPY scripts/make-certs /usr/local/bin/make-certs
USER imds
WORKDIR /var/lib/imds
