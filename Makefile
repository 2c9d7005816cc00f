# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# The first of python3.11 / python3 that the pinned set installs on (scripts/check-prereqs.sh).
PYTHON ?= $(shell bash scripts/check-prereqs.sh --print-python)
VENV := .venv
ENV := source scripts/env.sh &&
DAG_ID := numtadb_transfer_learning
SCORING_DAG_ID := numtadb_batch_predict
JARS := .cache/jars/hadoop-aws-3.3.1.jar .cache/jars/aws-java-sdk-bundle-1.11.901.jar
# hadoop-aws and the AWS SDK bundle, taken from a PyPI source package (no Maven here).
JAR_SDIST := sagemaker_pyspark==1.4.5

.PHONY: help prereqs setup browser demo test test-fast s3-start s3-stop ui ui-stop cluster cluster-stop bench bench-scale bench-rerun bench-startup stop clean
help:
	@echo "make demo       set up, start the embedded S3 server, train on NumtaDB, score 500 new images, print the results"
	@echo "make test       the whole test suite (unit + integration with real S3, spark-submit, Airflow)"
	@echo "make test-fast  unit tests only (seconds)"
	@echo "make ui         start Airflow on http://127.0.0.1:8080 with the DAG unpaused (make ui-stop)"
	@echo "make cluster    start a Spark standalone master + worker on 127.0.0.1 (make cluster-stop)"
	@echo "make bench      featurization: plain Keras vs Spark local[*] vs a standalone cluster (bench/results/featurize.{json,md});"
	@echo "                then the saved pipeline, the Models page and predict's reads (pipeline, models_page, predict_read)"
	@echo "make bench-scale featurize + train, then batch scoring, on 500, 5,000 and all 44,000 images: time, images/s and"
	@echo "                peak memory (bench/results/scale.{json,md}, bench/results/scoring_scale.{json,md})"
	@echo "make bench-rerun four DAG runs on NumtaDB (cold, repeat, another seed, +1% new images): what each pays"
	@echo "                for, with reused steps (bench/results/rerun.{json,md})"
	@echo "make bench-startup a job's spark-submit with and without the driver's class archive (bench/results/startup.{json,md})"
	@echo "make stop       stop the embedded services"

# then the Spark driver's JVM class archive: made once (about a minute), every job starts seconds sooner
setup: prereqs $(VENV)/.installed $(JARS)
	@$(ENV) python -m numtaflow class-archive

# Java 17/21 (installed when root with apt-get) and Python 3.11, checked in seconds before installing.
prereqs:
	@PYTHON="$(PYTHON)" bash scripts/check-prereqs.sh

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml | prereqs
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt -c constraints.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(JARS): | prereqs
	mkdir -p .cache/downloads .cache/jars
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: $(JAR_SDIST) -d .cache/downloads
	tar xzf .cache/downloads/sagemaker_pyspark-1.4.5.tar.gz -C .cache/jars --strip-components=3 \
	    sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar
	rm -f .cache/downloads/sagemaker_pyspark-1.4.5.tar.gz
	touch $(JARS)

s3-start: setup
	$(ENV) python -m numtaflow s3 start

s3-stop:
	$(ENV) python -m numtaflow s3 stop

.local/airflow/.migrated: $(VENV)/.installed
	$(ENV) airflow db migrate > .local/airflow-migrate.log 2>&1 || { tail -20 .local/airflow-migrate.log; exit 1; }
	touch $@

demo: setup s3-start
	$(ENV) python -m numtaflow load-data
	$(MAKE) --no-print-directory .local/airflow/.migrated
	$(ENV) logical_date=$$(date -u +%Y-%m-%dT%H:%M:%S+00:00) && mkdir -p .local/logs && \
	  log=.local/logs/demo-$${logical_date//:/}.log && echo "running the DAG (log: $$log) ..." && \
	  start=$$(date +%s) && \
	  { airflow dags test $(DAG_ID) "$$logical_date" > "$$log" 2>&1 || { tail -60 "$$log"; echo "DAG run failed; full log: $$log"; exit 1; }; } && \
	  echo "DAG run finished in $$(( $$(date +%s) - start )) s" && \
	  python -m numtaflow report --logical-date "$$logical_date"
	@# the scoring half: 500 unlabelled training-c images (none of the evaluation set) land in the inbox;
	@# the scoring DAG classifies them with the champion; their withheld labels measure its accuracy
	$(ENV) stamp=$$(date -u +%Y%m%dT%H%M%S) && labels=.local/demo/labels-$$stamp.csv && \
	  python -m numtaflow inbox-batch --count 500 --exclude-run latest --labels-out "$$labels" --name "demo-$$stamp" && \
	  log=.local/logs/demo-scoring-$$stamp.log && echo "scoring the batch (log: $$log) ..." && start=$$(date +%s) && \
	  { airflow dags test $(SCORING_DAG_ID) "$$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" > "$$log" 2>&1 || \
	    { tail -60 "$$log"; echo "scoring run failed; full log: $$log"; exit 1; }; } && \
	  echo "scoring run finished in $$(( $$(date +%s) - start )) s" && \
	  python -m numtaflow scoring-report --labels "$$labels"

test: setup browser
	$(ENV) scripts/run-tests.sh tests

# Debian's Chromium and chromedriver, for the browser tests of the Airflow UI.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "install chromium and its chromedriver with your package manager"; exit 1; }; \
	  echo "installing chromium and chromium-driver (Debian packages) ..."; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test-fast: setup
	$(ENV) scripts/run-tests.sh tests/unit

ui: setup s3-start .local/airflow/.migrated
	$(ENV) python -m numtaflow ui start

ui-stop:
	$(ENV) python -m numtaflow ui stop

bench: setup s3-start
	$(ENV) python benchmarks/featurize_bench.py --out bench/results
	$(ENV) python benchmarks/pipeline_bench.py --out bench/results
	$(ENV) python benchmarks/models_page_bench.py --out bench/results
	$(ENV) python benchmarks/predict_read_bench.py --out bench/results

bench-scale: setup s3-start
	$(ENV) python -m numtaflow load-data
	$(ENV) python benchmarks/scale_bench.py --out bench/results
	$(ENV) python benchmarks/scoring_bench.py --sizes 500,5000,44000 --out bench/results

bench-rerun: setup s3-start
	$(ENV) python -m numtaflow load-data
	$(ENV) python benchmarks/rerun_bench.py --out bench/results

bench-startup: setup
	$(ENV) python benchmarks/startup_bench.py --out bench/results

cluster: setup
	$(ENV) python -m numtaflow cluster start

cluster-stop:
	$(ENV) python -m numtaflow cluster stop

stop: ui-stop cluster-stop s3-stop

clean: stop
	rm -rf .local reports
