# The truesync image: the official Airflow image of the pinned version, plus the project,
# installed from the same requirements and lock file as `make test`.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt constraints.txt /opt/truesync/
RUN pip install --no-cache-dir -r /opt/truesync/requirements.txt -c /opt/truesync/constraints.txt

COPY --chown=airflow:root . /opt/truesync
RUN pip install --no-cache-dir --no-deps -e /opt/truesync \
    && mkdir -p /opt/airflow/state

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/truesync/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/truesync/plugins \
    TRUESYNC_CONFIG_DIR=/opt/truesync/include/config \
    TRUESYNC_STATE_DIR=/opt/airflow/state
