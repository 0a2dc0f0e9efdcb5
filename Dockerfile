# patd container: a release build on Debian 12 with the project's own
# dependency script (its build set: no test or benchmark tools), run as
# uid/gid 10001 with the data directory on a volume. Build with `make image`
# (docker where an engine answers, podman otherwise); see README.md.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build* \
 && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPATD_TESTS=OFF \
 && cmake --build build -j "$(nproc)" --target patd patctl patbench \
 && strip build/patd build/patctl build/patbench

FROM debian:12-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="patd" \
      org.opencontainers.image.description="Personal-access-token service: create, verify, revoke API tokens" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /tmp/install-deps.sh \
 && groupadd --gid 10001 patd \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin patd \
 && mkdir -p /data && chown 10001:10001 /data && chmod 700 /data
COPY --from=build /src/build/patd /src/build/patctl /src/build/patbench /usr/local/bin/
USER 10001:10001
VOLUME ["/data"]
EXPOSE 7700 7780
STOPSIGNAL SIGTERM
# Asks this container's patd on the address it wrote when it started
# listening (whatever --listen it was given), never a default port where
# another patd on a host network might answer.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=2 \
  CMD ["/usr/local/bin/patctl", "--addr-file", "/data/patd.addr", "health"]
# Inside the container patd listens on every interface of its own network
# namespace; publish on loopback (-p 127.0.0.1:7700:7700) until TLS is on,
# since bearer tokens cross these ports in clear. A later --listen or
# --http-listen given to `docker run` overrides these.
ENTRYPOINT ["/usr/local/bin/patd", "--data-dir", "/data", "--listen", "0.0.0.0:7700", "--http-listen", "0.0.0.0:7780"]
