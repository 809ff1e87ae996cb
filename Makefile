# Two commands do everything: `make run` and `make test`. Both set up what they need on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
# sam build runs the functions' Python (3.12) to install their dependencies. pyenv's shim only answers when
# 3.12 is the active version, so prefer the real binary of an installed 3.12.
SAM_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
export SAM_CLI_TELEMETRY := 0

.PHONY: run test lint typecheck browser unit build validate deploy bench bench-cost bench-cold bench-overhead bench-expiry bench-import bench-local iam-report openapi clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed ## start the whole system locally (moto, API on 127.0.0.1:$${PORT:-3000}, consumer, schedules)
	$(BIN)/python -m infra.local

test: lint typecheck browser unit ## install, lint, type-check, run the tests

# The dashboard's test drives a real headless Chromium (Debian's): installed here when missing and we may (root, or
# sudo without a password); otherwise that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq chromium >/dev/null || \
	      { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	    elif sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then sudo apt-get install -y -qq chromium >/dev/null; \
	    else echo "no Chromium, and no way to install it here: the dashboard's browser test will be skipped"; fi; }

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml
	@mkdir -p .aws-sam
	$(BIN)/python -m infra.sam_transform > .aws-sam/transformed.json  # what CloudFormation gets after SAM
	$(BIN)/cfn-lint .aws-sam/transformed.json

# Each function's app.py is its own top-level module in Lambda, so mypy checks them one at a time.
typecheck: $(BIN)/.installed
	$(BIN)/mypy layers/loyalty infra tests bench
	for f in functions/*/app.py; do $(BIN)/mypy "$$f" || exit 1; done

unit: $(BIN)/.installed
	$(BIN)/pytest

bench: $(BIN)/.installed ## DynamoDB requests per business event, our path against the raw calls (~1 min)
	$(BIN)/python -m bench.requests_per_event

bench-overhead: $(BIN)/.installed ## each handler's warm invocation against the raw AWS calls it makes, AWS's replies canned (~2 min)
	$(BIN)/python -m bench.overhead

bench-cold: $(BIN)/.installed ## each function's cold import against a bare boto3 + DynamoDB client and Powertools alone, interleaved (~7 min)
	$(BIN)/python -m bench.cold_start

bench-cost: $(BIN)/.installed ## dollars per million order events on AWS, from the requests and item sizes observed (~2 min)
	$(BIN)/python -m bench.cost

iam-report: $(BIN)/.installed ## per function: the actions template.yaml grants and those the tests saw it make (~8 min)
	LOYALTY_IAM_REPORT=.iam-report.json $(BIN)/pytest -q tests/integration tests/unit
	$(BIN)/python -m infra.local.strict .iam-report.json

bench-import: $(BIN)/.installed ## `loyalty import` of a messy 10,000-row CSV: rows/s locally, DynamoDB per member, 1M rows on AWS (~5 min)
	$(BIN)/python -m bench.import_csv

bench-local: $(BIN)/.installed ## the local stack at 5,000 and 100,000 members: enrol/s, orders/s end to end, KB per order over a 10,000-order soak, against moto alone (~35 min)
	$(BIN)/python -m bench.local_stack


bench-expiry: $(BIN)/.installed ## expiry: reads against lots due at 10,000 and 100,000 members, lots/s per worker, a year-end night (~25 min)
	$(BIN)/python -m bench.expiry_reads

openapi: $(BIN)/.installed ## write the OpenAPI spec to openapi.json
	$(BIN)/python -m infra.local.openapi > openapi.json

# ---------------------------------------------------------------- SAM (its own venv: it pins boto3 and click)
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli
	touch $@

validate: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

deploy: build ## sam deploy --config-env $${STAGE:-dev} (OPERATOR_KEY_SHA256 must be set; see the README)
	@test -n "$$OPERATOR_KEY_SHA256" || { echo "set OPERATOR_KEY_SHA256 (printf %s \"\$$KEY\" | sha256sum)"; exit 1; }
	$(SAM_VENV)/bin/sam deploy --config-env $${STAGE:-dev} \
		--parameter-overrides Stage=$${STAGE:-dev} OperatorKeySha256=$$OPERATOR_KEY_SHA256 $${ALARM_TOPIC_ARN:+AlarmTopicArn=$$ALARM_TOPIC_ARN}

build: validate ## sam build (needs python3.12 on PATH for the python3.12 runtime)
	@test -n "$(SAM_PYTHON)" || { echo "sam build needs python3.12 on PATH"; exit 1; }
	PATH="$(dir $(SAM_PYTHON)):$$PATH" $(SAM_VENV)/bin/sam build --cached --parallel

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
