# The image the Kubernetes CronJob in the README runs: `docker build -t taskbox-sync .`
# Stage 1 builds the wheel (an sdist, then the wheel from it); stage 2 installs only that wheel
# into a fresh venv. .ci/run takes the same steps on every CI run (the image itself is not built
# there: the development machines have no container daemon).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN python -m pip install "build>=1.2" \
 && python -m build --outdir /dist .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/taskbox-sync/bin:$PATH
COPY --from=build /dist/*.whl /tmp/wheels/
RUN python -m venv /opt/taskbox-sync \
 && /opt/taskbox-sync/bin/pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && useradd --create-home --uid 10001 --user-group taskbox
# Not root. The embedded PostgreSQL (used only when DATABASE_URL is unset) keeps its data under
# $TASKBOX_DATA_DIR, by default in this user's home.
USER taskbox
WORKDIR /home/taskbox
ENTRYPOINT ["taskbox-sync"]
CMD ["--help"]
