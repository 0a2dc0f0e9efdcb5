# patd container: build on Debian 12 with the project's own dependency
# script, run as a non-root user with the data directory on a volume.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j "$(nproc)" --target patd patctl

FROM debian:12-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin patd \
 && mkdir -p /data && chown patd:patd /data && chmod 700 /data
COPY --from=build /src/build/patd /src/build/patctl /usr/local/bin/
USER patd
VOLUME ["/data"]
EXPOSE 7700
ENTRYPOINT ["/usr/local/bin/patd", "--listen", "0.0.0.0:7700", "--data-dir", "/data"]
