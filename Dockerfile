# edge-holistic container image: camera -> BlazePose/Holistic on LiteRT -> MQTT.
#
#   docker build -t edge-holistic .                         # x86_64
#   docker build --platform linux/arm64 -t edge-holistic .  # Raspberry Pi 4/5, Jetson (64-bit)
#   docker run -d --name edge-holistic --device /dev/video0 --group-add video \
#     -v /etc/edge-holistic/config.yaml:/etc/edge-holistic/config.yaml:ro edge-holistic
#
# The models are inside (package data of the wheel); user-added models (the heavy pose model:
# `edge-holistic models add`) go to the volume /var/lib/edge-holistic/models. Runs as the
# non-root user edge-holistic (uid 10001). docker/compose.yaml has an example with mosquitto.
# Behind a TLS-intercepting proxy, put its CA certificate (*.crt) into docker/certs/ before building.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY docker/certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml /src/
RUN python3 -m venv /opt/edge-holistic/.venv \
 && /opt/edge-holistic/.venv/bin/pip install -q --upgrade pip \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /src/requirements.txt \
 && /opt/edge-holistic/.venv/bin/pip install -q -r /src/requirements.txt "setuptools>=77"
# Then the wheel, built from only what it is made of: no tests, scripts or git history in the image.
COPY setup.py README.md /src/
COPY models /src/models
COPY edge_holistic /src/edge_holistic
RUN /opt/edge-holistic/.venv/bin/pip wheel -q --no-deps --no-build-isolation -w /dist /src \
 && /opt/edge-holistic/.venv/bin/pip install -q --no-deps /dist/edge_holistic-*.whl \
 && /opt/edge-holistic/.venv/bin/pip uninstall -q -y setuptools \
 && /opt/edge-holistic/.venv/bin/edge-holistic models verify

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin edge-holistic \
 && install -d -m 0755 -o edge-holistic -g edge-holistic /var/lib/edge-holistic /var/lib/edge-holistic/models
COPY --from=build /opt/edge-holistic/.venv /opt/edge-holistic/.venv
COPY config.yaml /etc/edge-holistic/config.yaml
ENV PATH=/opt/edge-holistic/.venv/bin:$PATH \
    EDGE_HOLISTIC_MODELS_DIR=/var/lib/edge-holistic/models \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
VOLUME /var/lib/edge-holistic/models
USER edge-holistic
# the daemon's web page and /healthz (same judgement as the systemd watchdog)
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["edge-holistic"]
CMD ["run", "--config", "/etc/edge-holistic/config.yaml"]
