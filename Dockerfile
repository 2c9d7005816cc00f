# One image for the Airflow services and the Spark master/worker: the executors need the same
# Python packages (TensorFlow, the numtaflow package) as the driver.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/java-17  # amd64 or arm64
# owned by the user tasks run as: KERAS_HOME's named volume takes its owner from this folder, so a
# downloaded weights file can be saved there for the workers
RUN install -d -o airflow -g root /opt/numtaflow /opt/numtaflow/jars /opt/numtaflow/keras
ENV JAVA_HOME=/usr/lib/jvm/java-17

USER airflow
COPY --chown=airflow:root requirements.txt constraints.txt /opt/numtaflow/
RUN grep -v '^apache-airflow==' /opt/numtaflow/requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt -c /opt/numtaflow/constraints.txt
# hadoop-aws + AWS SDK bundle for s3a (the same jars the embedded setup uses)
RUN mkdir -p /tmp/sdist \
 && pip download --no-deps --no-binary :all: sagemaker_pyspark==1.4.5 -d /tmp/sdist \
 && tar xzf /tmp/sdist/sagemaker_pyspark-1.4.5.tar.gz -C /opt/numtaflow/jars --strip-components=3 \
      sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar \
      sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar \
 && rm -rf /tmp/sdist
COPY --chown=airflow:root . /opt/numtaflow/src
# editable, as `make setup` installs it: the package finds spark_jobs/ beside it in the checkout
RUN pip install --no-cache-dir --no-deps -e /opt/numtaflow/src
ENV NUMTAFLOW_SPARK_JARS=/opt/numtaflow/jars \
    NUMTAFLOW_CLASS_ARCHIVE_DIR=/opt/numtaflow/jvm \
    SPARK_HOME=/home/airflow/.local/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/usr/local/bin/python
# the Spark driver's JVM class archive, as `make setup` makes it: every job's driver starts seconds sooner
# (without one, which this step reports rather than fails on, the jobs start as before)
RUN python -m numtaflow class-archive
WORKDIR /opt/numtaflow/src
